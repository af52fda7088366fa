"""The catalog: every file, directory and symlink of the job, in index order.

Held as parallel arrays rather than one object per entry: a fileserver has
millions of files, and a list of tuples costs nearly twice the memory an entry
of these arrays (see docs/TECHNICAL_DECISIONS.rst, "The catalog in memory").
An entry's *index* is its position; the order is the sort order of relative
paths with ``/`` sorting before every other character, so a folder's contents
stay together and index ranges map to contiguous slices of the tree.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, Optional

from .metadata import UNKNOWN_ID, digest

FILE = "f"
DIR = "d"
LINK = "l"
KINDS = (FILE, DIR, LINK)
NO_VOLUME = 0  # volumes are numbered from 1


def sort_key(path: str) -> str:
    """Sort key that keeps ``a/...`` together: ``/`` sorts before any other character."""
    return path.replace("/", "\x00")


class Entry(NamedTuple):
    """One file, folder or symlink as the catalog or a drive's manifest records it."""

    path: str
    kind: str
    size: int
    mtime_ns: int
    mode: int
    target: Optional[str] = None  # symlink target; a hard-linked file's: the first path of its group
    sha256: Optional[str] = None  # of what was written to the drive (manifests only)
    ino: int = 0  # source inode of a regular file: how a moved file is recognised (catalog only)
    uid: int = UNKNOWN_ID  # owner and group (UNKNOWN_ID: not recorded)
    gid: int = UNKNOWN_ID
    xattrs: Optional[str] = None  # extended attributes and ACLs (metadata.encode), catalog only
    meta: int = 0  # digest of owner, group and attributes (metadata.digest); 0: none, or not known


class Catalog:
    """Parallel arrays of entries.

    ``volumes[i]`` is the volume entry ``i`` lives on (0: none yet); ``stale[i]`` is 1 while
    that volume does not hold this version of it (changed, moved or re-moded in the source
    since, or a rewrite that failed): the volume must be updated before the entry counts as
    backed up.  An entry is *saved* when it has a volume and is not stale.

    ``uids`` and ``gids`` hold :data:`~.metadata.UNKNOWN_ID` where the owner is not recorded
    (``--no-owner``, a jobfile of version 2); ``xattrs`` (sparse, like ``targets``) holds the
    attributes of the entries that have any, and ``xattrs_known`` says whether they were read
    at all (False: from a jobfile of version 2, or ``--no-acls --no-xattrs``).
    """

    __slots__ = (
        "paths",
        "kinds",
        "sizes",
        "mtimes",
        "modes",
        "volumes",
        "stale",
        "inodes",
        "uids",
        "gids",
        "targets",
        "xattrs",
        "xattrs_known",
        "_index",
    )

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.kinds = bytearray()
        self.sizes = array("q")
        self.mtimes = array("q")
        self.modes = array("I")
        self.volumes = array("i")
        self.stale = bytearray()
        self.inodes = array("Q")
        self.uids = array("I")
        self.gids = array("I")
        self.targets: dict[int, str] = {}
        self.xattrs: dict[int, str] = {}
        self.xattrs_known = True
        self._index: Optional[dict[str, int]] = None

    def __len__(self) -> int:
        return len(self.paths)

    def append(self, entry: Entry, volume: int = NO_VOLUME) -> None:
        """Add ``entry`` as the last index, on ``volume`` and not stale; the caller keeps the order."""
        i = len(self.paths)
        self.paths.append(entry.path)
        self.kinds.append(ord(entry.kind))
        self.sizes.append(entry.size)
        self.mtimes.append(entry.mtime_ns)
        self.modes.append(entry.mode)
        self.volumes.append(volume)
        self.stale.append(0)
        self.inodes.append(entry.ino)
        self.uids.append(entry.uid)
        self.gids.append(entry.gid)
        if entry.target is not None:
            self.targets[i] = entry.target
        if entry.xattrs is not None:
            self.xattrs[i] = entry.xattrs
        self._index = None

    @classmethod
    def from_entries(cls, entries: Iterable[Entry]) -> Catalog:
        """Build a catalog in sort order from unsorted entries."""
        cat = cls()
        for entry in sorted(entries, key=lambda e: sort_key(e.path)):
            cat.append(entry)
        return cat

    def sort(self) -> None:
        """Put the entries in index order (a catalog from a jobfile edited by hand may not be)."""
        order = sorted(range(len(self.paths)), key=lambda i: sort_key(self.paths[i]))
        if all(i == k for k, i in enumerate(order)):
            return
        self.paths = [self.paths[i] for i in order]
        self.kinds = bytearray(self.kinds[i] for i in order)
        self.stale = bytearray(self.stale[i] for i in order)
        for name in ("sizes", "mtimes", "modes", "volumes", "inodes", "uids", "gids"):
            column = getattr(self, name)
            setattr(self, name, array(column.typecode, (column[i] for i in order)))
        where = {old: new for new, old in enumerate(order)}
        self.targets = {where[i]: t for i, t in self.targets.items()}
        self.xattrs = {where[i]: x for i, x in self.xattrs.items()}
        self._index = None

    def entry(self, i: int) -> Entry:
        """Entry ``i``, made from the columns (without ``sha256``, which only manifests hold, or
        ``ino``), with the digest of its metadata."""
        uid, gid, xattrs = self.uids[i], self.gids[i], self.xattrs.get(i)
        return Entry(
            self.paths[i],
            chr(self.kinds[i]),
            self.sizes[i],
            self.mtimes[i],
            self.modes[i],
            self.targets.get(i),
            None,
            0,
            uid,
            gid,
            xattrs,
            digest(uid, gid, xattrs),
        )

    def meta(self, i: int) -> int:
        """The digest of entry ``i``'s owner, group and attributes (0: none recorded)."""
        return digest(self.uids[i], self.gids[i], self.xattrs.get(i))

    def kind(self, i: int) -> str:
        """The kind of entry ``i``: :data:`FILE`, :data:`DIR` or :data:`LINK`."""
        return chr(self.kinds[i])

    def __iter__(self) -> Iterator[Entry]:
        return (self.entry(i) for i in range(len(self.paths)))

    def index_of(self, path: str) -> Optional[int]:
        """The index of ``path``, or None.  The first call maps every path to its index (about 100
        bytes an entry), kept until the catalog is appended to or sorted."""
        if self._index is None:
            self._index = {p: i for i, p in enumerate(self.paths)}
        return self._index.get(path)

    def leader(self, i: int) -> Optional[int]:
        """For a hard-linked file after the first of its group, the index of that first one."""
        if self.kinds[i] != ord(FILE) or i not in self.targets:
            return None
        return self.index_of(self.targets[i])

    def total_bytes(self) -> int:
        """What the entries' sizes add up to, in bytes."""
        return sum(self.sizes)

    def saved(self, i: int) -> bool:
        """Whether entry ``i`` is, in this version, on the volume it is recorded on."""
        return self.volumes[i] != NO_VOLUME and not self.stale[i]

    def unsaved(self) -> list[int]:
        """Entries that are on no volume, or not in this version on theirs."""
        if NO_VOLUME not in self.volumes and 1 not in self.stale:
            return []  # the common case, without a loop in Python
        return [i for i, v in enumerate(self.volumes) if v == NO_VOLUME or self.stale[i]]

    def stale_indexes(self) -> list[int]:
        """Entries whose volume holds an older version of them (or none yet)."""
        found = []
        at = self.stale.find(1)
        while at >= 0:
            found.append(at)
            at = self.stale.find(1, at + 1)
        return found

    def indexes_on(self, volume: int) -> array[int]:
        """Indexes of the entries on ``volume``, as an array: 8 bytes an index where a list
        takes 36 (a million files on one drive)."""
        return array("q", (i for i, v in enumerate(self.volumes) if v == volume))


def same_version(
    kind: str,
    size: int,
    mtime_ns: int,
    target: Optional[str],
    other_kind: str,
    other_size: int,
    other_mtime_ns: int,
    other_target: Optional[str],
    granularity: int,
) -> bool:
    """Whether two records describe the same version of an entry: a directory is always the
    same (its time is metadata, set on its drive without a copy), a symlink by its target and
    time (a re-made link is written again), a file by size and mtime (at the drive's
    granularity)."""
    if kind != other_kind:
        return False
    if kind == DIR:
        return True
    if kind == LINK:
        return target == other_target and mtimes_equal(mtime_ns, other_mtime_ns, granularity)
    return size == other_size and mtimes_equal(mtime_ns, other_mtime_ns, granularity)


def mtimes_equal(a: int, b: int, granularity: int) -> bool:
    """Whether two mtimes (ns) are the same once stored at ``granularity``.

    A drive that keeps 2 s truncates or rounds; either way the two differ by
    less than one unit.
    """
    return abs(a - b) < granularity if granularity > 1 else a == b


def same_content(held: Entry, want: Entry, granularity: int) -> bool:
    """Whether the drive's copy ``held`` is a current copy of source entry ``want``."""
    return same_version(
        held.kind,
        held.size,
        held.mtime_ns,
        held.target,
        want.kind,
        want.size,
        want.mtime_ns,
        want.target,
        granularity,
    )


def ancestors(paths: Iterable[str]) -> set[str]:
    """Every directory above any of ``paths`` (relative, ``/``-separated)."""
    found: set[str] = set()
    for path in paths:
        cut = path.rfind("/")
        while cut > 0:
            parent = path[:cut]
            if parent in found:
                break
            found.add(parent)
            cut = parent.rfind("/")
    return found


def depth_first(paths: Iterable[str]) -> list[str]:
    """Deepest first: the order to remove directories, or to set their times."""
    return sorted(paths, key=lambda p: p.count("/"), reverse=True)


def index_ranges(indexes: Sequence[int]) -> list[tuple[int, int]]:
    """``[0, 1, 2, 5, 6]`` -> ``[(0, 2), (5, 6)]`` (inclusive).  Indexes in order (as
    :meth:`Catalog.indexes_on` gives them) are not copied: a sorted list of a million would
    cost 36 MB at the end of a big volume."""
    ranges: list[tuple[int, int]] = []
    last = -1
    for i in indexes:
        if i <= last:
            return index_ranges(sorted(set(indexes)))
        if ranges and last == i - 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
        last = i
    return ranges


def format_ranges(ranges: list[tuple[int, int]]) -> str:
    """Index ranges for a person: ``[(0, 2), (5, 5)]`` -> ``"0-2, 5"`` (``"none"`` for no range)."""
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges) or "none"
