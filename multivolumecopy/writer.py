"""Carrying out one volume's plan on its drive: the stage that changes a drive's content.

Order: files and symlinks that go are removed first (a file that became a folder leaves its
place), then moves are renamed (once the drive's copy is known to hold the source's bytes),
then emptied folders are removed (a folder that became a file leaves its place), then modes,
owners, ACLs and extended attributes that changed alone are set, then files with no recorded
hash are hashed; what is new or changed is then written
by :mod:`multivolumecopy.copysession`, which reports each outcome back to the writer.
Nothing is ever written, removed or changed through a symlink or a file that took a folder's
place (:class:`~.places.Places`), nor over something not ours.

The writer does not touch the record of what the volume holds: it lists what it put on the
drive (``written``), and the ledger settles the record from the drive's commit.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from typing import Optional

from . import events as ev
from . import faults, metadata
from . import jobfile as jf
from .catalog import DIR, FILE, LINK, Entry, ancestors, depth_first, mtimes_equal
from .context import RunContext
from .drive import Drive, drive_error
from .driveformat import RESERVED_PREFIX
from .ledger import current_on
from .placement import NEW_DRIVE
from .places import Places
from .reconcile import ADOPT, BLOCKED, IN_THE_WAY, RECORD, TOO_BIG, Place, VolumePlan, decide_write
from .sizes import format_size

KEEPS_NO_MODES = (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP)  # chmod on a drive without modes
FILE_CODE, DIR_CODE, LINK_CODE = ord(FILE), ord(DIR), ord(LINK)


class VolumeWriter:
    """Writes ``plan`` on ``drive`` (volume ``rec``).  ``bare``: a blank drive holding no file
    or symlink at all (folders at most), where nothing can be in the way of a new entry."""

    def __init__(self, ctx: RunContext, drive: Drive, rec: jf.VolumeRecord, plan: VolumePlan, bare: bool):
        self.ctx = ctx
        self.drive = drive
        self.rec = rec
        self.plan = plan
        self.bare = bare
        self.places = Places(drive.root, lambda err: drive_error(drive.root, err))
        self.actions = ctx.report.volume(rec.number)
        self.rewrites = set(plan.recopy)  # written over an older copy here: reported as rewritten
        self.written: list[int] = list(plan.keep)  # on this drive after the visit, as far as we did
        # What to do when the copy is cut short (commit or not), before the error is raised:
        # the run saves what it can (see Backup._save_progress).
        self.on_cut_short: Callable[[bool], None] = lambda commit: None

    def not_kept(self, lost: int) -> None:
        """The drive (or the user running us) refused some metadata (metadata.LOST_* flags): it
        is in the records, and said once at the end of the run."""
        lost_on = self.ctx.metadata_lost
        lost_on[self.rec.number] = lost_on.get(self.rec.number, 0) | lost

    def set_metadata(self, i: int, full: str) -> None:
        """Give the drive's copy at ``full`` (never followed) entry ``i``'s owner, group, ACLs,
        attributes and mode (a symlink: its own owner and attributes; no mode)."""
        cat = self.ctx.catalog
        is_link = cat.kinds[i] == LINK_CODE
        mode = None if is_link else cat.modes[i]
        try:
            lost = metadata.apply(
                full, cat.uids[i], cat.gids[i], cat.xattrs.get(i), mode, self.ctx.opts.keep, is_link
            )
        except FileNotFoundError:
            return  # not there after all: the next --verify says so
        except OSError as err:
            raise drive_error(self.drive.root, err) from None
        if lost:
            self.not_kept(lost)

    def prepare(self) -> list[int]:
        """Carry out the plan up to the copy: purge, rename, chmod, hash what is kept, survey
        the places the writes go to.  Returns what is to be copied (by
        :class:`~multivolumecopy.copysession.CopySession`), in index order, journalled as
        intended."""
        plan, drive = self.plan, self.drive
        folders = {p for p in plan.purge if _held_kind(drive, p) == DIR}
        self.purge([p for p in plan.purge if p not in folders])
        again = self.rename()
        self.purge(sorted(folders))
        self.chmod()
        again += self.hash_kept()
        self.ctx.ledger.unplace(plan.overflow)  # it no longer fits here: its old copy went with the purge
        for i in plan.overflow:
            self.ctx.destinations[i] = NEW_DRIVE
        to_copy = self.survey_and_record(sorted(plan.writes + again))
        drive.intent([self.ctx.catalog.paths[i] for i in to_copy])
        return to_copy

    # -- writing ------------------------------------------------------------------------

    def survey_and_record(self, indexes: list[int]) -> list[int]:
        """Look at each entry's place on the drive, let the plan decide (:func:`decide_write`),
        record what needs no copy (adopted, records only), tell what cannot be written; returns
        the entries to copy."""
        ctx, drive, places, number = self.ctx, self.drive, self.places, self.rec.number
        caps = drive.caps
        if self.bare and caps.max_file is None and caps.symlinks and not drive.stored.changes_names():
            # A blank drive that holds every entry under its own name: every place is free, and
            # decide_write copies to a free place; not surveyed one by one (a first backup's
            # every entry, before the first batch goes out: docs/performance.rst).
            return list(indexes)
        cat = ctx.catalog
        to_copy: list[int] = []
        recorded: list[Entry] = []
        told: set[str] = set()  # each blocker is told once
        for i in indexes:
            place, sha = self._survey(i)
            decision = decide_write(cat.kinds[i] == DIR_CODE, place)
            path = cat.paths[i]
            if decision == TOO_BIG:
                too_big = drive.caps.max_file or 0
                ctx.fail(
                    i,
                    f"larger than volume {number}'s filesystem can hold in one file ({format_size(too_big)})",
                )
            elif decision == RECORD:
                recorded.append(cat.entry(i))
            elif decision == BLOCKED:
                assert place.blocker is not None
                what = places.what_is(place.blocker)
                ctx.fail(
                    i,
                    f"a {what} not put there by multivolumecopy is in the way at "
                    f"{drive.path(place.blocker)} (volume {number}); "
                    "move it away and run the same command again",
                    tell=place.blocker not in told,
                )
                told.add(place.blocker)
                continue
            elif decision == ADOPT:
                self.set_metadata(i, drive.path(drive.on_drive(path) or path))
                recorded.append(cat.entry(i)._replace(sha256=sha))
                ctx.emit(ev.Adopted(number, path))
            elif decision == IN_THE_WAY:
                stored = drive.on_drive(path) or path
                ctx.fail(
                    i,
                    f"a {places.what_is(stored)} not put there by multivolumecopy is already at "
                    f"{drive.path(stored)} (volume {number}); move it away and run the same command again",
                )
            else:
                to_copy.append(i)
                continue
            if decision in (RECORD, ADOPT):
                self.written.append(i)
        if recorded:
            drive.put(recorded)
            drive.sync_point()
        return to_copy

    def _survey(self, i: int) -> tuple[Place, Optional[str]]:
        """What is at entry ``i``'s place on the drive (choosing its name there); and, for a copy
        of it already there, its SHA-256."""
        ctx, drive = self.ctx, self.drive
        cat = ctx.catalog
        path = cat.paths[i]
        too_big = drive.caps.max_file
        if too_big is not None and cat.sizes[i] > too_big:
            return Place(too_big=True), None
        stored = drive.name_for(path, cat.kind(i))
        if stored is None:
            return Place(storable=False), None
        if self.bare:  # (a folder in the way of a file makes its rename fail: told then)
            return Place(ours=True), None
        blocker = self.places.blocker(stored)
        if blocker is not None:
            return Place(blocker=blocker), None
        if path in drive.contents or path in drive.dirty:
            return Place(ours=True), None
        occ = self.places.occupant(stored)
        if occ is None:
            return Place(), None
        folder = stat.S_ISDIR(occ.st_mode)
        sha = copy_there(self.ctx, self.drive.path(stored), occ, i, self.rec.granularity_ns)
        return Place(occupied=True, folder_there=folder, a_copy=sha is not None), sha or None

    # -- before the copy ----------------------------------------------------------------

    def purge(self, paths: list[str]) -> None:
        """Remove entries of ours from the drive.  A folder is removed only once empty: what is
        left in it is not ours and stays (the folder with it).  Nothing is removed through a
        symlink or file that took a folder's place."""
        if not paths:
            return
        drive, places = self.drive, self.places
        # Ours of unknown content until recorded removed: after a crash in between, the drive's
        # records never list as held a path that is gone (its replay makes the path dirty).
        drive.intent(paths)
        removed: list[str] = []
        dirs: list[str] = []
        for path in paths:
            held = drive.contents.get(path)
            stored = drive.on_drive(path)
            if stored is None or places.blocker(stored) is not None:
                removed.append(path)  # held only in the records, or not reachable as ours
                continue
            if held is not None and held.kind == DIR:
                dirs.append(path)
                continue
            full = drive.path(stored)
            try:
                if stat.S_ISDIR(os.lstat(full).st_mode):
                    dirs.append(path)
                    continue
                os.unlink(full)
            except FileNotFoundError:
                pass
            except OSError as err:
                raise drive_error(drive.root, err) from None
            removed.append(path)
        for path in depth_first(dirs):
            try:
                os.rmdir(drive.path(drive.on_drive(path) or path))
            except OSError:
                pass  # gone already, not empty (something not ours lives there), or not a folder
            removed.append(path)
        faults.point("after-purge")
        self.actions["deleted"].extend(removed)
        drive.record_removed(removed)
        self._remove_empty_parents(removed)
        self.ctx.emit(ev.Purged(self.rec.number, len(removed), tuple(removed)))

    def _remove_empty_parents(self, removed: list[str]) -> None:
        """Folders left empty by a removal, that nothing of ours needs, go too."""
        drive = self.drive
        needed = ancestors(drive.contents) | set(drive.contents)
        for d in depth_first(ancestors(removed) - needed):
            try:
                os.rmdir(drive.path(drive.on_drive(d) or d))
            except OSError:
                pass

    def rename(self) -> list[int]:
        """Files moved in the sources are moved on the drive, once the drive's copy is known to
        hold the source file's bytes (its recorded SHA-256 against the source, read now: a new
        file can have a deleted one's inode, size and time).  Returns the entries to write
        after all; the old copies of those are removed."""
        plan, drive, places, ctx = self.plan, self.drive, self.places, self.ctx
        if not plan.rename:
            return []
        cat = ctx.catalog
        # Both ends are dirty until the rename is recorded: a crash in between must not leave
        # the old path listed as held once it is gone (see purge).
        drive.intent([cat.paths[k] for _, k in plan.rename] + [old for old, _ in plan.rename])
        moved: list[Entry] = []
        gone: list[str] = []
        again: list[int] = []
        unconfirmed: list[str] = []
        for old, k in plan.rename:
            held = drive.contents[old]
            src = drive.on_drive(old)
            dst = drive.name_for(cat.paths[k], cat.kind(k))
            if (
                src is None
                or dst is None
                or not held.sha256
                or held.sha256 != sha256_of(os.path.join(ctx.job.root, cat.paths[k]))
            ):
                again.append(k)
                unconfirmed.append(old)
                continue
            if places.blocker(src) is not None or places.blocker(dst) is not None:
                again.append(k)  # the writes tell what is in the way
                continue
            try:
                os.makedirs(os.path.dirname(drive.path(dst)), exist_ok=True)
                os.rename(drive.path(src), drive.path(dst))
            except FileNotFoundError:  # the drive no longer has it: its record goes, the file is copied
                again.append(k)
                unconfirmed.append(old)
                continue
            except OSError as err:
                raise drive_error(drive.root, err) from None
            if held.mode != cat.modes[k] or held.meta != cat.meta(k):  # moved and chmod-ed, chown-ed...
                self.set_metadata(k, drive.path(dst))
            moved.append(cat.entry(k)._replace(sha256=held.sha256))
            gone.append(old)
            self.written.append(k)
            self.actions["renamed"].append([old, cat.paths[k]])
        faults.point("after-rename")
        drive.put(moved)
        drive.record_removed(gone)
        self._remove_empty_parents(gone)
        if moved:
            ctx.emit(ev.Renamed(self.rec.number, tuple((o, e.path) for o, e in zip(gone, moved))))
        self.purge(unconfirmed)
        return again

    def chmod(self) -> None:
        """Entries whose metadata alone changed in the sources (a chmod, chown, chgrp, setfacl,
        setfattr) get it on the drive, their data left alone; the records follow.  A drive that
        keeps no modes, owners or attributes (exFAT) has them in the records only, for
        ``--restore``."""
        plan, drive, cat = self.plan, self.drive, self.ctx.catalog
        if not plan.chmod:
            return
        updated: list[Entry] = []
        for i in plan.chmod:
            path = cat.paths[i]
            held = drive.contents[path]
            stored = drive.on_drive(path)
            if stored is not None:
                if self.places.blocker(stored) is not None:
                    continue  # not reachable without going through something not ours: stays stale
                self.set_metadata(i, drive.path(stored))
            updated.append(held._replace(mode=cat.modes[i], meta=cat.meta(i)))
            self.actions["chmod"].append(path)
        drive.put(updated)

    def hash_kept(self) -> list[int]:
        """Every file on a visited drive gets its SHA-256: a kept file that has none (adopted by
        an older version, or copied with --no-hash) is read on the drive and in the sources, and
        its hash recorded when both agree; one that differs is written again (returned)."""
        ctx, drive = self.ctx, self.drive
        if not ctx.opts.hash:
            return []
        unhashed = drive.contents.unhashed_files()
        if not unhashed:
            return []
        cat = ctx.catalog
        hashed: list[Entry] = []
        again: list[int] = []
        for i in self.plan.keep:
            path = cat.paths[i]
            if path not in unhashed:
                continue
            stored = drive.on_drive(path)
            if stored is None or self.places.blocker(stored) is not None:
                continue
            there = sha256_of(drive.path(stored))
            if there is not None and there == sha256_of(os.path.join(ctx.job.root, path)):
                hashed.append(drive.contents[path]._replace(sha256=there))
            else:
                again.append(i)
                self.rewrites.add(i)
        if hashed:
            drive.put(hashed)
        return again

    # -- after the copy -----------------------------------------------------------------

    def give_up_unwritten(self, full: bool) -> None:
        """Before the commit: a rewrite the full drive could not take gives up its place here
        (its old copy is removed, it goes to another drive), and the old copy of a file that
        vanished from the sources goes.  A rewrite that failed for another reason (an
        unreadable source, something in the way) keeps its old copy, marked stale."""
        ctx, drive, number = self.ctx, self.drive, self.rec.number
        cat = ctx.catalog
        gone: list[str] = []
        given_up: list[int] = []
        for i in cat.stale_indexes():
            if cat.volumes[i] != number or (i in ctx.failed and i not in ctx.vanished):
                continue
            if i not in ctx.vanished and (not full or self.current(i)):
                continue
            if cat.paths[i] in drive.contents:
                gone.append(cat.paths[i])
            given_up.append(i)
            if i not in ctx.vanished:
                ctx.destinations[i] = NEW_DRIVE
        ctx.ledger.unplace(given_up)
        self.purge(gone)

    def current(self, i: int) -> bool:
        """Whether the drive holds entry ``i`` in its current version."""
        return current_on(self.ctx.catalog, self.drive.contents, i, self.rec.granularity_ns)

    def set_dir_metadata(self) -> None:
        """Folders get their source's owner, ACLs (a default ACL too), attributes, mode and time
        once their contents are written (never through a symlink or file that took a folder's
        place)."""
        drive, cat = self.drive, self.ctx.catalog
        dirs = ancestors(drive.contents)
        dirs.update(drive.contents.paths_of_kind(DIR))
        # Folders only: a map of every path would cost 100 bytes an entry of the catalog.
        index = {cat.paths[i]: i for i, k in enumerate(cat.kinds) if k == DIR_CODE}
        for path in depth_first(dirs):
            i = index.get(path)
            if i is None or path.startswith(RESERVED_PREFIX):
                continue
            stored = drive.on_drive(path) or path
            full = drive.path(stored)
            try:
                if self.places.blocker(stored) is not None or not stat.S_ISDIR(os.lstat(full).st_mode):
                    continue
                self.set_metadata(i, full)
                os.utime(full, ns=(cat.mtimes[i], cat.mtimes[i]))
            except FileNotFoundError:
                continue
            except OSError as err:
                if err.errno not in KEEPS_NO_MODES:
                    raise drive_error(drive.root, err) from None


def copy_there(ctx: RunContext, full: str, occ: os.stat_result, i: int, granularity: int) -> Optional[str]:
    """Whether what sits at ``full`` on a drive (seeded by ``cp -a``, or a copy a killed run
    finished and never recorded) is a copy of entry ``i``: the same kind, size and time, and
    for a file the same bytes as the source (both read, so the drive's record gets its SHA-256
    like any copy).  Returns the SHA-256 ("" for a folder or a symlink), or None."""
    cat = ctx.catalog
    kind = cat.kinds[i]
    if kind == DIR_CODE:
        return "" if stat.S_ISDIR(occ.st_mode) else None
    if not mtimes_equal(occ.st_mtime_ns, cat.mtimes[i], granularity):
        return None
    if kind == LINK_CODE:
        try:
            same = stat.S_ISLNK(occ.st_mode) and os.readlink(full) == cat.targets.get(i)
        except OSError:
            return None
        return "" if same else None
    if not stat.S_ISREG(occ.st_mode) or occ.st_size != cat.sizes[i]:
        return None
    there = sha256_of(full)
    if there is None or there != sha256_of(os.path.join(ctx.job.root, cat.paths[i])):
        return None
    return there


def _held_kind(drive: Drive, path: str) -> Optional[str]:
    held = drive.contents.get(path)
    return None if held is None else held.kind


def sha256_of(path: str) -> Optional[str]:
    """A file's SHA-256, read without following a symlink; None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "rb", buffering=0) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def files_on(root: str) -> dict[str, int]:
    """Files and symlinks on a drive, relative path to size, but for our records."""
    found: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if not d.startswith(RESERVED_PREFIX) and d != "lost+found"]
            filenames = [f for f in filenames if not f.startswith(RESERVED_PREFIX)]
        rel = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                found[name if rel == "." else f"{rel}/{name}"] = os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return found
