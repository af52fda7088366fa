"""What changed since the last run: the first step of a re-run (pure; no I/O).

Every entry of the fresh scan is compared with the jobfile's catalog by path:

* unchanged: same kind, size and mtime (at the granularity of the drive it is on) or the
  same symlink target: it stays where it is, untouched;
* changed: rewritten on its own volume;
* new: placed by :mod:`multivolumecopy.placement`;
* deleted: purged from its volume;
* moved: a new path whose size, mtime and source inode are those of a deleted file on a
  volume: renamed there instead of copied (a renamed folder moves all its files this way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .catalog import FILE, NO_VOLUME, Catalog, same_version


@dataclass
class Changes:
    unchanged: int = 0
    changed: list[int] = field(default_factory=list)  # indexes in the new catalog
    new: list[int] = field(default_factory=list)
    moved: dict[int, int] = field(default_factory=dict)  # new index -> old index
    deleted: list[int] = field(default_factory=list)  # indexes in the old catalog

    def volumes_touched(self, old: Catalog, new: Catalog) -> set[int]:
        """Volumes that hold a change: they must be inserted in this run."""
        touched = {new.volumes[i] for i in self.changed}
        touched |= {old.volumes[j] for j in self.moved.values()}
        touched |= {old.volumes[j] for j in self.deleted if j not in self.moved.values()}
        touched.discard(NO_VOLUME)
        return touched


def classify(old: Catalog, new: Catalog, granularity: Callable[[int], int]) -> Changes:
    """Compare, and carry each surviving entry's volume over into ``new``."""
    ch = Changes()
    seen = bytearray(len(old))
    for i, path in enumerate(new.paths):
        j = old.index_of(path)
        if j is None:
            ch.new.append(i)
            continue
        seen[j] = 1
        vol = old.volumes[j]
        new.volumes[i] = vol
        if vol == NO_VOLUME:
            ch.new.append(i)
        elif _same(old, j, new, i, granularity(vol)):
            ch.unchanged += 1
        else:
            ch.changed.append(i)
    gone = [j for j, flag in enumerate(seen) if not flag and old.volumes[j] != NO_VOLUME]
    _match_moves(old, new, gone, ch)
    ch.deleted = gone
    return ch


def _match_moves(old: Catalog, new: Catalog, gone: list[int], ch: Changes) -> None:
    """A new file with the size, mtime and inode of a deleted one moved: keep it on its volume."""
    by_key: dict[tuple[int, int, int], int] = {}
    for g in gone:
        if old.kinds[g] == ord(FILE) and old.inodes[g]:
            by_key.setdefault((old.inodes[g], old.sizes[g], old.mtimes[g]), g)
    if not by_key:
        return
    still_new: list[int] = []
    for i in ch.new:
        j = (
            by_key.pop((new.inodes[i], new.sizes[i], new.mtimes[i]), None)
            if new.kinds[i] == ord(FILE)
            else None
        )
        if j is None:
            still_new.append(i)
        else:
            ch.moved[i] = j
            new.volumes[i] = old.volumes[j]
    ch.new = still_new


def _same(a: Catalog, i: int, b: Catalog, j: int, granularity: int) -> bool:
    return same_version(
        chr(a.kinds[i]),
        a.sizes[i],
        a.mtimes[i],
        a.targets.get(i),
        chr(b.kinds[j]),
        b.sizes[j],
        b.mtimes[j],
        b.targets.get(j),
        granularity,
    )
