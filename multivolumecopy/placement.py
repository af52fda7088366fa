"""Where new files go on a re-run (pure; no I/O).

The earlier tool re-sorted the tree and cut it into contiguous ranges every run, so one new
file early in the order shifted every later drive's boundary.  Here a file that is on a
volume stays there, and each new entry (in index order) goes to the first of these with
room, by the volumes' recorded capacity:

1. the volume of the entry just before it in the sort order (its neighbour);
2. the volume of the entry just after it;
3. the volume of its folder;
4. the last volume;

and otherwise to a new drive (target 0).  When a drive turns out to hold less than its
record says, the overflow goes to a new drive (never back to a volume already done).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .catalog import NO_VOLUME, Catalog
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
    left = dict(room)
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
        if chosen != NEW_DRIVE:
            target[i] = chosen
            prev = chosen
    return target
