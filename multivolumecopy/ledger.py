"""The one owner of the record of what each volume holds: the catalog's ``volumes`` and
``stale`` columns.  Nothing else in the package assigns them.

* :meth:`Ledger.carry`: the merge of a fresh scan with the jobfile carries each surviving
  entry's volume and stale mark over (from :func:`multivolumecopy.changes.classify`);
* :meth:`Ledger.unplace`: a volume gives an entry up (it no longer fits there, or the volume
  was forgotten): the entry is on no volume until another takes it;
* :meth:`Ledger.settle`: after a drive's commit, what the drive committed is what the record
  says it holds: an entry is on it and current, on it in an older version (stale), or not on
  it at all.

A run exits 0 only when every entry is on a volume and not stale (see docs/faults.rst, "Exit 0
means"); since only :meth:`settle` marks an entry current, and only from a committed manifest,
the record never claims more than a drive holds.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from .catalog import NO_VOLUME, Catalog
from .contents import DriveContents


class Ledger:
    """The record of ``catalog``: which volume holds each entry, and whether in this version."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def carry(self, volumes: array[int], stale: bytearray) -> None:
        """The merge's columns (from ``classify``): each entry's volume and mark, carried over."""
        assert len(volumes) == len(stale) == len(self.catalog)
        self.catalog.volumes = volumes
        self.catalog.stale = stale

    def unplace(self, indexes: Iterable[int]) -> None:
        """Entries a volume gives up: on no volume, until another one takes them."""
        volumes, stale = self.catalog.volumes, self.catalog.stale
        for i in indexes:
            volumes[i] = NO_VOLUME
            stale[i] = 0

    def settle(
        self, volume: int, contents: DriveContents, written: Iterable[int], granularity: int
    ) -> list[int]:
        """After ``volume``'s drive committed ``contents``: every entry recorded on it, and every
        one ``written`` there in this visit (copied, adopted, kept), is on it, current or stale
        by what it holds.  Returns those recorded on it that it does not hold at all (a drive
        that holds less than its record said): they are on no volume now."""
        cat = self.catalog
        volumes, stale = cat.volumes, cat.stale
        for i in written:
            volumes[i] = volume
        missing = []
        for i in cat.indexes_on(volume):
            if cat.paths[i] in contents:
                stale[i] = 0 if current_on(cat, contents, i, granularity) else 1
            else:
                missing.append(i)
        self.unplace(missing)
        return missing


def current_on(cat: Catalog, contents: DriveContents, i: int, granularity: int) -> bool:
    """Whether ``contents`` (a drive's) holds entry ``i`` of ``cat`` in its current version,
    mode and metadata included (a folder's time is set on its drive at each visit, not
    recorded)."""
    return contents.current(
        cat.paths[i],
        chr(cat.kinds[i]),
        cat.sizes[i],
        cat.mtimes[i],
        cat.modes[i],
        cat.targets.get(i),  # compared for a symlink only (a hard-linked file's is its group's)
        granularity,
        cat.meta(i),
    )
