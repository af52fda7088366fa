"""What changed since the last run: the first step of a re-run (pure; no I/O).

Every entry of the fresh scan is compared with the jobfile's catalog by path:

* unchanged: same kind, size and mtime (at the granularity of the drive it is on), or the
  same symlink target and time: it stays where it is, untouched; if only its metadata changed
  (a chmod, a chown or chgrp, an ACL or extended attribute, or a folder's time), its volume is
  visited and the metadata set there, the data left alone;
* changed: rewritten on its own volume;
* new: placed by :mod:`multivolumecopy.placement`;
* deleted: purged from its volume;
* moved: a new path whose size, mtime and source inode are those of a deleted file on a
  volume: renamed there instead of copied (a renamed folder moves all its files this way),
  once the volume's copy is confirmed by content (see ``VolumeWriter.rename`` in writer.py).

Changed, re-moded and moved entries keep their volume and are marked *stale* (the volume
holds an older version); an entry already stale stays so.  A volume is visited in a run when
it holds a stale entry or a deleted one.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from .catalog import DIR, FILE, LINK, NO_VOLUME, Catalog, same_version, sort_key
from .metadata import UNKNOWN_ID


@dataclass
class Changes:
    """What a re-run's scan changed against the jobfile's catalog (lists of indexes), and each
    entry's volume and stale mark, carried over from the old catalog to the new."""

    unchanged: int = 0
    changed: list[int] = field(default_factory=list)  # indexes in the new catalog
    new: list[int] = field(default_factory=list)
    moved: dict[int, int] = field(default_factory=dict)  # new index -> old index
    modes: list[int] = field(default_factory=list)  # unchanged but for metadata (new indexes)
    deleted: list[int] = field(default_factory=list)  # indexes in the old catalog
    # The new catalog's record, carried over from the old (the ledger installs it): each entry's
    # volume, and whether that volume holds an older version of it.
    volumes: array[int] = field(default_factory=lambda: array("i"))
    stale: bytearray = field(default_factory=bytearray)

    def volumes_touched(self, old: Catalog) -> set[int]:
        """Volumes that hold a change, or an entry a past run could not update (stale): they
        must be inserted in this run."""
        volumes, stale = self.volumes, self.stale
        touched = {volumes[i] for i in range(len(stale)) if stale[i]} if 1 in stale else set()
        touched |= {old.volumes[j] for j in self.deleted}  # moved entries are among the deleted
        touched.discard(NO_VOLUME)
        return touched


def classify(old: Catalog, new: Catalog, granularity: Callable[[int], int]) -> Changes:
    """Compare, and carry each surviving entry's volume and stale mark over (into the result's
    ``volumes`` and ``stale``, for the ledger to install in ``new``).

    Both catalogs are in index order, so they are walked side by side like a merge: no map of
    every path (it would cost about 100 bytes an entry), and a tree without changes costs one
    string comparison and three number comparisons an entry.
    """
    if (old.paths, old.kinds, old.sizes, old.mtimes, old.modes, old.targets) == (
        new.paths,
        new.kinds,
        new.sizes,
        new.mtimes,
        new.modes,
        new.targets,
    ) and not _metadata_differs(old, new):
        placed = sum(1 for v in old.volumes if v != NO_VOLUME)  # nothing changed at all
        unplaced = list(old.indexes_on(NO_VOLUME))
        return Changes(
            unchanged=placed, new=unplaced, volumes=array("i", old.volumes), stale=bytearray(old.stale)
        )
    ch, matched = _walk_together(old, new, granularity)
    gone = [j for j, m in enumerate(matched) if not m and old.volumes[j] != NO_VOLUME]
    if gone and ch.new and not {old.paths[j] for j in gone}.isdisjoint(new.paths[i] for i in ch.new):
        # A path both gone and new: the old catalog was not in index order (edited by hand?).
        old.sort()
        return classify(old, new, granularity)
    _match_moves(old, new, gone, ch)
    ch.deleted = gone
    return ch


def _walk_together(
    old: Catalog, new: Catalog, granularity: Callable[[int], int]
) -> tuple[Changes, bytearray]:
    """The merge: fills in new, changed and unchanged; returns them and which old entries were
    matched by path (the others are gone)."""
    ch = Changes(volumes=array("i", bytes(4 * len(new))), stale=bytearray(len(new)))
    matched = bytearray(len(old))
    op, np_ = old.paths, new.paths
    ok, nk, osz, nsz, om, nm = old.kinds, new.kinds, old.sizes, new.sizes, old.mtimes, new.mtimes
    ovol, nvol = old.volumes, ch.volumes
    ostale, nstale = old.stale, ch.stale
    omode, nmode = old.modes, new.modes
    ouid, nuid, ogid, ngid = old.uids, new.uids, old.gids, new.gids
    # Attributes are compared where both catalogs read them (a jobfile of version 2 did not).
    oxa, nxa = old.xattrs, new.xattrs
    attributes = old.xattrs_known and new.xattrs_known and bool(oxa or nxa)
    link, folder = ord(LINK), ord(DIR)
    i = j = 0
    n_new, n_old = len(np_), len(op)
    while i < n_new and j < n_old:
        path = np_[i]
        if path != op[j]:
            if sort_key(path) < sort_key(op[j]):
                ch.new.append(i)
                i += 1
            else:
                j += 1
            continue
        matched[j] = 1
        vol = ovol[j]
        nvol[i] = vol
        nstale[i] = ostale[j]
        if vol == NO_VOLUME:
            ch.new.append(i)
        elif ok[j] == nk[i] and osz[j] == nsz[i] and om[j] == nm[i] and nk[i] != link:
            ch.unchanged += 1  # the common case, without a call
            if (
                omode[j] != nmode[i]
                or (ouid[j] != nuid[i] and _known(ouid[j], nuid[i]))
                or (ogid[j] != ngid[i] and _known(ogid[j], ngid[i]))
                or (attributes and oxa.get(j) != nxa.get(i))
            ):
                ch.modes.append(i)  # a chmod, chown, chgrp, setfacl or setfattr
                nstale[i] = 1
        elif _same(old, j, new, i, granularity(vol)):
            ch.unchanged += 1
            if (
                (omode[j] != nmode[i] and nk[i] != link)
                or (nk[i] == folder and om[j] != nm[i])
                or (ouid[j] != nuid[i] and _known(ouid[j], nuid[i]))
                or (ogid[j] != ngid[i] and _known(ogid[j], ngid[i]))
                or (attributes and oxa.get(j) != nxa.get(i))
            ):
                ch.modes.append(i)  # a chmod, a chown..., or a folder's new time: metadata only
                nstale[i] = 1
        else:
            ch.changed.append(i)
            nstale[i] = 1
        i += 1
        j += 1
    ch.new.extend(range(i, n_new))
    return ch, matched


def _known(a: int, b: int) -> bool:
    """Whether both ids were recorded (an unknown one, from a jobfile of version 2 or
    ``--no-owner``, is no change)."""
    return a != UNKNOWN_ID and b != UNKNOWN_ID


def _metadata_differs(old: Catalog, new: Catalog) -> bool:
    """Whether any owner, group or attribute differs between two catalogs of the same entries
    (the fast path's check; the merge tells which)."""
    if old.uids != new.uids or old.gids != new.gids:
        return True
    return old.xattrs_known and new.xattrs_known and old.xattrs != new.xattrs


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
            ch.volumes[i] = old.volumes[j]
            ch.stale[i] = 1  # on its volume under the old path, until it is renamed there
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
