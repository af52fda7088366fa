"""Where new files go on a re-run, and which rewrites no longer fit their volume (pure; no I/O).

The earlier tool re-sorted the tree and cut it into contiguous ranges every run, so one new
file early in the order shifted every later drive's boundary.  Here a file that is on a
volume stays there, and each new entry (in index order) goes to the first of these with
room, by the volumes' recorded capacity:

1. the volume of the entry just before it in the sort order (its neighbour);
2. the volume of the entry just after it;
3. the volume of its folder;
4. the last volume;
5. the volume with the most room left (any that has room for it);

and otherwise to a new drive (target 0): a drive is bought only when the ones the job has are
full by their records.  When a drive turns out to hold less than its record says, what it
could not take is placed again the same way among the volumes not yet done in the run (never
back to a volume already done), and otherwise goes to a new drive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Optional

from . import jobfile as jf
from .catalog import FILE, NO_VOLUME, Catalog
from .changes import Changes
from .fsutil import round_up
from .reconcile import cost, record_cost

NEW_DRIVE = 0


def place_new(
    catalog: Catalog, new: Iterable[int], room: Mapping[int, int], block: Mapping[int, int]
) -> dict[int, int]:
    """A target volume for each new entry that fits on one: ``{index: volume}``.  An entry
    left out goes to a new drive (on a first backup that is every entry, and a map of a
    million of them would cost 80 MB).

    ``room`` is the space each volume has left for new data, ``block`` its block size.
    """
    return place_in(catalog, new, dict(room), block)


def place_in(
    catalog: Catalog, new: Iterable[int], left: dict[int, int], block: Mapping[int, int]
) -> dict[int, int]:
    """:func:`place_new`, taking the room from ``left``, which it updates (what is left after)."""
    todo = set(new)
    if not todo or not left:  # nothing new, or no volume to put it on (a first backup)
        return {}
    vols = catalog.volumes
    after: dict[int, int] = {}  # new index -> volume of the next placed entry
    nxt = NO_VOLUME
    for i in range(len(vols) - 1, -1, -1):
        if i in todo:
            after[i] = nxt
        elif vols[i] != NO_VOLUME:
            nxt = vols[i]
    last = max(left, default=NO_VOLUME)
    target: dict[int, int] = {}
    prev = NO_VOLUME
    for i in range(len(vols)):
        if i not in todo:
            if vols[i] != NO_VOLUME:
                prev = vols[i]
            continue
        parent = catalog.paths[i].rpartition("/")[0]
        p = catalog.index_of(parent) if parent else None
        folder = NO_VOLUME if p is None else (vols[p] or target.get(p, NO_VOLUME))
        chosen = NEW_DRIVE
        for v in (prev, after[i], folder, last):
            if v == NO_VOLUME or v not in left:
                continue
            need = cost(catalog, i, block.get(v, 4096)) + record_cost(catalog.paths[i], True)
            if left[v] >= need:
                left[v] -= need
                chosen = v
                break
        if chosen == NEW_DRIVE:  # its neighbours' volumes are full: any volume with room
            roomiest = max(left, key=lambda v: (left[v], -v))
            need = cost(catalog, i, block.get(roomiest, 4096)) + record_cost(catalog.paths[i], True)
            if left[roomiest] >= need:
                left[roomiest] -= need
                chosen = roomiest
        if chosen != NEW_DRIVE:
            target[i] = chosen
            prev = chosen
    return target


def room_by_record(
    job: jf.Job,
    old: Optional[Catalog],
    changes: Changes,
    padding: int,
    volume_size: Optional[int],
    reserve: int,
) -> tuple[dict[int, int], dict[int, int], list[int]]:
    """Each volume's room for new entries by its record, after what the run removes and
    rewrites there; and the rewrites that no longer fit (those that grew most first: a file
    that did not grow is not what overflowed).  Returns (room, block size, given up) by volume;
    the entries given up are to go elsewhere, their old copies removed when the volume is
    visited.  The volumes a run in progress has done, those being replaced and those never
    finished (filled as new drives) get nothing."""
    cat = job.catalog
    room: dict[int, int] = {}
    block: dict[int, int] = {}
    done = set(job.run.done_volumes) if job.run.in_progress else set()
    for v, rec in job.volumes.items():
        if rec.forgotten or rec.capacity == 0 or v in done or v in job.run.replace:
            continue
        room[v] = rec.capacity - rec.used - padding - reserve
        if volume_size is not None:
            room[v] = min(room[v], volume_size - rec.used)
        block[v] = rec.block_size
    if room:  # the records of what each volume keeps, as plan_volume counts them
        vols = cat.volumes
        for i, path in enumerate(cat.paths):
            v = vols[i]
            if v in room:
                room[v] -= record_cost(path, False)
    growth: dict[int, list[tuple[int, int]]] = {}  # volume -> (bytes grown, index) of its rewrites
    if old is not None:  # what the deletions free and the changes take, per volume
        moved_from = set(changes.moved.values())
        for j in changes.deleted:
            if old.volumes[j] in room and j not in moved_from:
                room[old.volumes[j]] += round_up(old.sizes[j], block[old.volumes[j]])
        for i in changes.changed:
            was = old.index_of(cat.paths[i])
            v = cat.volumes[i]
            if v in room and was is not None:
                grown = round_up(cat.sizes[i], block[v]) - round_up(old.sizes[was], block[v])
                room[v] -= grown
                growth.setdefault(v, []).append((grown, i))
        for i in changes.changed + list(changes.moved):  # journalled as they are written
            v = cat.volumes[i]
            if v in room:
                room[v] -= record_cost(cat.paths[i], True) - record_cost(cat.paths[i], False)
    given_up: list[int] = []
    file = ord(FILE)
    for v, rewrites in growth.items():
        for _grown, i in sorted(rewrites, reverse=True):
            if room[v] >= 0:
                break
            if cat.kinds[i] != file:
                continue
            room[v] += round_up(cat.sizes[i], block[v])  # its old copy goes, the new one is not written
            given_up.append(i)
    return room, block, given_up
