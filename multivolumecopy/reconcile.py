"""The Reconciler: decide what one mounted volume keeps, purges and receives.

:func:`plan_volume` is pure: a function of the catalog, what the drive holds,
and the space it reports, with no I/O, so it is tested with tables.  Applying
the plan (unlinking, copying) happens in :mod:`multivolumecopy.writer`.

Usable space is the free space, plus what the purge will free, minus the
``--device-padding``, capped by ``--volume-size``; every file is rounded up to
the filesystem's block size.  New files are taken in index order and the
estimate stops at the first one that does not fit, so each volume holds a
contiguous run of indexes (the earlier tool's "last index that fits").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Optional

from .catalog import DIR, FILE, LINK, NO_VOLUME, Catalog, same_content
from .catalog import Entry as Entry
from .fsutil import round_up


@dataclass(frozen=True)
class Space:
    """What a drive offers a volume's plan: its free bytes, inodes and block size, and what the
    options and our records hold back."""

    free: int  # bytes the filesystem says we may still write
    block: int  # filesystem block size
    padding: int = 0  # --device-padding: leave this much free
    volume_size: Optional[int] = None  # --volume-size: cap on what the job keeps here
    reserve: int = 0  # room for our own records that do not grow with this volume (jobfile copy)
    inodes: Optional[int] = None  # free inodes, where the filesystem counts them


# Our records per entry on a volume: a manifest row (old and new copy side by side while it is
# replaced), plus an intent and a put row in the journal: about 80 bytes of JSON besides the path.
RECORD_BYTES = 80
INODE_RESERVE = 16


def record_cost(path: str, writing: bool) -> int:
    """Bytes of our own records that one entry costs on its drive."""
    return (4 if writing else 2) * (len(path) + RECORD_BYTES)


@dataclass
class VolumePlan:
    """What one volume keeps, removes, rewrites, renames and re-modes, and which new entries it
    takes: catalog indexes (drive paths for ``purge``)."""

    volume: int
    keep: list[int] = field(default_factory=list)  # catalog indexes current on the drive
    purge: list[str] = field(default_factory=list)  # drive paths of ours to remove
    recopy: list[int] = field(default_factory=list)  # belong here but missing or out of date
    rename: list[tuple[str, int]] = field(default_factory=list)  # (old path, new index): moved here
    chmod: list[int] = field(default_factory=list)  # of those kept, ones whose metadata alone changed
    fill: list[int] = field(default_factory=list)  # unplaced entries estimated to fit
    overflow: list[int] = field(default_factory=list)  # rewrites that no longer fit: go elsewhere
    more: bool = False  # candidates were left when the room ran out: the volume is full

    @property
    def last_index(self) -> Optional[int]:
        """The last new entry the volume takes, or None when it takes none."""
        return self.fill[-1] if self.fill else None

    @property
    def writes(self) -> list[int]:
        """Every entry to write: the rewrites, then the new entries."""
        return self.recopy + self.fill


def cost(catalog: Catalog, i: int, block: int) -> int:
    """Bytes entry ``i`` takes on a drive: files by blocks, a directory one block."""
    kind = catalog.kinds[i]
    if kind == ord(FILE):
        return round_up(catalog.sizes[i], block)
    if kind == ord(DIR):
        return block
    return 0


def metadata_changed(catalog: Catalog, i: int, have: Entry) -> bool:
    """Whether the drive's copy ``have`` of entry ``i`` lacks the entry's owner, group or
    attributes.  A copy whose record has no digest (written before owners were kept) is left
    as it is unless the entry is stale (its metadata changed since: a chown, a setfacl), so that
    upgrading does not visit every drive; see docs/TECHNICAL_DECISIONS.rst."""
    want = catalog.meta(i)
    if have.meta == want:
        return False
    return have.meta != 0 or (want != 0 and bool(catalog.stale[i]))


def metadata_reserve(catalog: Catalog) -> int:
    """Room for the jobfile copy on a drive, twice (old and new side by side while replaced)."""
    return 2 * (sum(len(p) for p in catalog.paths) + 90 * len(catalog) + 8192)


def plan_volume(
    catalog: Catalog,
    volume: int,
    held: Mapping[str, Entry],
    dirty: Iterable[str],
    space: Space,
    granularity: int = 1,
    unplaced: Optional[Iterable[int]] = None,
    moves: Optional[Mapping[str, str]] = None,
    comes_here: Optional[Callable[[int], bool]] = None,
) -> VolumePlan:
    """Plan one volume.

    ``held`` is what the drive's manifest says it holds, ``dirty`` paths that
    are ours but of unknown content (a mapping to their size on the drive, when known, so
    the space they take counts as coming back).  ``unplaced`` are the candidates for new
    files in index order (None: take none).  ``comes_here(i)`` says whether an entry on no
    volume yet is meant for this one (its old copy here is then rewritten, else removed);
    None: every one is.

    An entry whose kind changed (a folder that became a file...) is removed and written
    again, never written over.  Rewrites that do not fit the space left give up their place
    here (``overflow``): their old copy is removed and they go to another volume.
    """
    plan = VolumePlan(volume)
    block = space.block
    freed = 0
    kept_bytes = 0
    moved_from = {old: new for new, old in (moves or {}).items()}
    renamed: set[int] = set()
    moved_records = 0
    for path, have in held.items():
        new_path = moved_from.get(path)
        if new_path is not None:
            k = catalog.index_of(new_path)
            if (
                k is not None
                and catalog.volumes[k] == volume
                and new_path not in held
                and same_content(have._replace(path=new_path), catalog.entry(k), granularity)
            ):
                plan.rename.append((path, k))  # moved in the source: renamed here, not copied
                renamed.add(k)
                kept_bytes += cost(catalog, k, block)
                moved_records += record_cost(new_path, True)
                continue
        i = catalog.index_of(path)
        home = NO_VOLUME if i is None else catalog.volumes[i]
        if i is None or home not in (NO_VOLUME, volume):
            plan.purge.append(path)  # gone from the source, or it lives on another volume
            freed += round_up(have.size, block) if have.kind == FILE else 0
            continue
        if same_content(have, catalog.entry(i), granularity):
            plan.keep.append(i)
            if (have.kind != LINK and have.mode != catalog.modes[i]) or metadata_changed(catalog, i, have):
                plan.chmod.append(i)
            kept_bytes += cost(catalog, i, block)  # (one on no volume yet is adopted: kept)
            continue
        freed += round_up(have.size, block) if have.kind == FILE else 0
        if home == NO_VOLUME and comes_here is not None and not comes_here(i):
            plan.purge.append(path)  # an old copy of an entry that now goes elsewhere
            continue
        if have.kind != catalog.kind(i):
            plan.purge.append(path)  # another kind now: removed first, then written anew
        plan.recopy.append(i)  # rewritten in place (tmp + rename); old blocks freed then
    held_paths = set(held)
    for i in catalog.indexes_on(volume):
        if catalog.paths[i] not in held_paths and i not in renamed:
            plan.recopy.append(i)  # recorded here but the drive lacks it
    plan.recopy.sort()
    plan.keep.sort()
    plan.chmod.sort()

    # Dirty paths hold copies of ours that will be overwritten or removed: their space comes back.
    if isinstance(dirty, Mapping):
        freed += sum(round_up(size, block) for path, size in dirty.items() if path not in held)
    # Two budgets: what the disk can take (our records included), and what --volume-size
    # allows of job data.  The rewrites come first, in index order; one that does not fit
    # overflows to another volume.
    records = sum(record_cost(catalog.paths[i], False) for i in plan.keep) + moved_records
    disk_left = space.free + freed - space.padding - space.reserve - records
    size_left = disk_left if space.volume_size is None else space.volume_size - kept_bytes
    rewrites, plan.recopy = plan.recopy, []
    for i in rewrites:
        need = cost(catalog, i, block)
        extra = record_cost(catalog.paths[i], True)
        if need + extra > disk_left or need > size_left:
            plan.overflow.append(i)
            path = catalog.paths[i]
            if path in held and path not in plan.purge:
                plan.purge.append(path)
            continue
        disk_left -= need + extra
        size_left -= need
        plan.recopy.append(i)
    # Every new entry takes an inode; keep a few for our own records and temporary files.
    inodes_left = None if space.inodes is None else space.inodes + len(plan.purge) - INODE_RESERVE
    here = set(plan.keep) if catalog.targets else set()  # hard-link leaders on this volume
    # A candidate the drive already holds (its copy kept, or rewritten, or given up above) is
    # decided: not copied a second time (a crash can commit a new volume's copies on its drive
    # before the jobfile records them).
    decided = set(plan.keep) | set(plan.recopy) | set(plan.overflow) | renamed if held else set()
    if unplaced is not None:
        for i in unplaced:
            if i in decided:
                continue
            need = cost(catalog, i, block)
            leader = catalog.leader(i) if catalog.targets else None
            if leader is not None and leader in here:
                need = 0  # linked to its leader, not stored again
            extra = record_cost(catalog.paths[i], True)
            if need + extra > disk_left or need > size_left or (inodes_left is not None and inodes_left <= 0):
                plan.more = True
                break
            disk_left -= need + extra
            size_left -= need
            if inodes_left is not None:
                inodes_left -= 1
            plan.fill.append(i)
            if catalog.targets:
                here.add(i)
    # Dirty paths are ours with unknown content, of unknown kind even (a file where a folder
    # goes now): removed first, then written anew if they belong here.
    plan.purge.extend(p for p in dirty if p not in held)
    plan.purge.sort()
    return plan


# What to do about one entry to write, from what the drive shows at its place (surveyed by the
# writer): the decision is the plan's, the looking is I/O.
COPY = "copy"  # nothing of anyone's there (or ours, or a folder for a folder): write it
ADOPT = "adopt"  # a copy of it is there already (same kind, size, time and bytes): record it
RECORD = "record"  # the drive cannot hold it (a symlink on exFAT): kept in the drive's records
TOO_BIG = "too-big"  # larger than the drive's filesystem allows in one file
BLOCKED = "blocked"  # a folder above it is a symlink or file not ours: never written through
IN_THE_WAY = "in-the-way"  # something not ours is at its place: never written over


@dataclass(frozen=True)
class Place:
    """What the writer saw at an entry's place on the drive."""

    storable: bool = True  # the drive can hold it (False: a symlink on exFAT)
    too_big: bool = False
    blocker: Optional[str] = None  # the folder above it that is not a real one
    ours: bool = False  # the drive's records name it (held, or ours of unknown content)
    occupied: bool = False  # something sits there
    folder_there: bool = False  # ... and it is a real folder
    a_copy: bool = False  # ... and it is a copy of the entry (kind, size, time, bytes)


def decide_write(is_folder: bool, place: Place) -> str:
    """What to do about writing one entry, given what is at its place."""
    if place.too_big:
        return TOO_BIG
    if not place.storable:
        return RECORD
    if place.blocker is not None:
        return BLOCKED
    if place.ours or not place.occupied or (is_folder and place.folder_there):
        return COPY
    return ADOPT if place.a_copy else IN_THE_WAY
