"""Restoring (``--restore --to DIR [PATTERN...]``): the drives back into a tree.

Directories and symlinks are recreated from the record (the jobfile, or a
drive's newer copy of it); regular files are read from the drives that hold
them, in whatever order the drives come, through the same swap mechanism as a
backup (prompt, ``--new-volume-script``, or stop and run again).

Every drive carries its own record.  When a drive's copy of the jobfile is
newer than the record in use (see :mod:`multivolumecopy.records`), the restore
switches to it and says so: a restore started from an early drive's copy learns
of the volumes written after it.  Which wanted files a drive can give is read
from its manifest (what that drive holds, exactly), not only from the record's
volume column.

Each file is written under a temporary name, its SHA-256 checked against the
one recorded when it was backed up, and only then given its owner, ACLs,
extended attributes, mode and times (from the record, whatever the drive could
hold: an exFAT drive holds none of them) and renamed into place: a damaged
file never sits under its final name.  Files already restored and intact are
skipped, so a stopped restore continues where it left off.  Nothing already in
``--to`` is overwritten: it is reported.

Nothing is ever written, chmod-ed, timed or renamed through a symlink: below
``--to`` every folder is entered by descriptor without following links (see
:mod:`multivolumecopy.nofollow`), and so is every folder on the drives.  An
entry blocked by a link, or anything else in its way, is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import events as ev
from . import jobfile as jf
from .catalog import DIR, FILE, LINK, ancestors, depth_first, mtimes_equal
from .destination import Destination, NotPlaced, Unreadable
from .drive import Drive
from .driveformat import LOCKFILE
from .errors import LockedError, OutputError, SwapNeeded
from .fsutil import path_inside
from .lock import reading_lock
from .metadata import UNKNOWN_ID, IdMap
from .nofollow import Blocked, Tree
from .patterns import Matcher
from .records import Head, head_of, load_record, newer, peek, standing
from .sizes import count, plural
from .swap import Swapper, SwapRequest


@dataclass
class RestoreOptions:
    """What ``--restore`` is given: the jobfile, the drives' mount points, ``--to``, the patterns."""

    jobfile: str
    outputs: list[str]
    to: str
    patterns: list[str] = field(default_factory=list)
    numeric_ids: bool = False  # owners by the recorded numbers, not by the recorded names


@dataclass
class RestoreSummary:
    """What a restore did: files restored and their bytes, those already intact, the volumes
    read, and each problem as (path, why)."""

    restored: int = 0
    restored_bytes: int = 0
    intact: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    volumes: list[int] = field(default_factory=list)
    not_kept: int = 0  # metadata.LOST_* flags: what --to (or this user) refused of the metadata


@dataclass(frozen=True)
class RecordInProgress:
    """The record in use was saved while its run was still going: files written after that
    may be missing from it."""

    source: str  # where it was read: "the jobfile job.json"
    run: int
    updated: Optional[str]


@dataclass(frozen=True)
class NewerRecord:
    """A drive's copy of the jobfile is newer than the record in use: the restore goes by it."""

    volume: int
    output: str
    record: str  # the newer record, for a person: "run 3, finished, saved ..."
    previous: str  # the record it replaces, alike


def render_event(event: object) -> Optional[str]:
    """The line a person is shown for a restore's own events; None for any other event."""
    if isinstance(event, NewerRecord):
        return (
            f"{event.output}: using the newer record on volume {event.volume} ({event.record}) "
            f"instead of the one in use ({event.previous})"
        )
    if isinstance(event, RecordInProgress):
        return (
            f"warning: the record in use ({event.source}: run {event.run}, saved {event.updated}) "
            "describes a run that did not finish: files written after it was saved may be missing "
            "from it; a drive written later carries a newer record"
        )
    return None


class _Refused(Exception):
    pass


Version = tuple[int, int]  # size, mtime_ns: which version of a file a problem was about


class Restore:
    """One ``--restore``: goes by the newest record it meets, and reads each drive as it comes."""

    def __init__(self, opts: RestoreOptions, emit: Callable[[object], None], swapper: Swapper):
        self.opts = opts
        self.emit = emit
        self.swapper = swapper
        self.summary = RestoreSummary()
        self.to = os.path.abspath(opts.to)
        self.job: jf.Job
        self.head: Head
        self.dest: Destination
        self.dirs: set[str] = set()
        self.wanted: set[int] = set()  # catalog indexes of the files still to restore
        self.problems: dict[str, str] = {}  # path -> why, in the order found
        self.failed: dict[str, Version] = {}  # files a drive could not give, in that version
        self.visited: set[int] = set()  # volumes read under the record in use

    def run(self) -> RestoreSummary:
        """Restore: make the folders and symlinks, read the wanted files from the drives as they come
        (asking for each next one), then give the folders their modes and times.  Returns the
        summary; raises :class:`SwapNeeded` when stopped at a drive swap."""
        job = jf.load(self.opts.jobfile)
        for out in self.opts.outputs:
            if not os.path.isdir(out):
                raise OutputError(f"output {out} is not a directory; give the mount point of a backup drive")
            if path_inside(self.to, out):
                raise OutputError(f"--to {self.opts.to} is on the backup drive {out}; restore somewhere else")
        self.dest = Destination(self.opts.to, lambda n: self.emit(ev.BytesCopied(n)))
        try:
            if job.run.in_progress:
                self.emit(RecordInProgress(f"the jobfile {self.opts.jobfile}", job.run.number, job.updated))
            self._use(job)
            self.emit(
                ev.RestoreStarted(
                    tuple(self._volumes_wanted()),
                    len(self.wanted),
                    sum(job.catalog.sizes[i] for i in self.wanted),
                    self.summary.intact,
                )
            )
            self._drive_loop()
            self._finish()
        finally:
            self.dest.close()
        return self.summary

    # -- the record --------------------------------------------------------------------

    def _use(self, job: jf.Job) -> None:
        """Go by ``job``: make its folders and symlinks, and find the files still to restore."""
        self.job = job
        self.head = head_of(job)
        self.visited = set()
        self.ids = IdMap(job.owners, self.opts.numeric_ids)
        cat = job.catalog
        dest = self.dest
        match = Matcher(self.opts.patterns)
        selected = [i for i, p in enumerate(cat.paths) if match(p)]
        # Problems of folders and symlinks are found again below; a file's stands while the
        # record wants the version that failed.
        shown, self.problems = self.problems, {p: why for p, why in self.problems.items() if p in self.failed}
        specials = [sp for sp in job.specials if match(sp.path)]
        self.dirs = {cat.paths[i] for i in selected if cat.kinds[i] == ord(DIR)}
        self.dirs |= ancestors(cat.paths[i] for i in selected)
        self.dirs |= ancestors(sp.path for sp in specials)
        for path in depth_first(self.dirs)[::-1]:
            try:
                dest.make_dir(path)
            except NotPlaced as why:
                self._problem(path, str(why), shown)
        intact = 0
        self.wanted = set()
        for i in selected:
            kind, path = cat.kinds[i], cat.paths[i]
            if kind == ord(LINK):
                try:
                    if dest.link(path, cat.targets.get(i) or "", cat.mtimes[i], i, self._meta(i)):
                        intact += path not in dest.mine
                    else:
                        self.summary.restored += 1
                except NotPlaced as why:
                    self._problem(path, str(why), shown)
            elif kind == ord(FILE):
                version = (cat.sizes[i], cat.mtimes[i])
                failed = self.failed.get(path)
                if failed == version:
                    continue
                if failed is not None:
                    del self.failed[path]
                    self.problems.pop(path, None)
                if dest.intact(path, *version):
                    intact += path not in dest.mine
                    continue
                try:
                    dest.check_free(path)  # known now, whichever drive holds it
                except NotPlaced as why:
                    self._fail(i, str(why))
                    continue
                self.wanted.add(i)
        for sp in specials:  # FIFOs, sockets, devices: from the record alone
            try:
                if dest.special(sp, self._ids(sp.uid, sp.gid, sp.xattrs)):
                    intact += 1
                else:
                    self.summary.restored += 1
            except NotPlaced as why:
                self._problem(sp.path, str(why), shown)
        self.summary.intact = intact

    def _volumes_wanted(self) -> list[int]:
        """The volumes the record places the wanted files on."""
        volumes = self.job.catalog.volumes
        return sorted({volumes[i] for i in self.wanted} - {0})

    def _later_volumes(self) -> list[int]:
        """For files a record saved mid-run places on no volume: the drives its run was still to
        write (updated ones, a new one), where they may be, unless already looked at."""
        run = self.job.run
        volumes = self.job.catalog.volumes
        if not run.in_progress or not any(volumes[i] == 0 for i in self.wanted):
            return []
        later = set(run.pending_volumes) - set(run.done_volumes)
        later |= set(run.replace) | {self.job.next_volume_number()}
        if run.open_volume:
            later.add(run.open_volume)
        return sorted(later - self.visited)

    # -- drives ------------------------------------------------------------------------

    def _drive_loop(self) -> None:
        queue = list(self.opts.outputs)
        last = queue[-1] if queue else ""
        finished: Optional[int] = None
        refusal: Optional[str] = None
        while True:
            wanted = self._volumes_wanted()
            later = not wanted
            if later:
                wanted = self._later_volumes()
            if not wanted:
                return
            if not queue:
                message = self._ask(wanted, later, last)
                self.emit(ev.WaitingForDrive(last, message, tuple(wanted), wanted[0]))
                request = SwapRequest(
                    last, message, finished, wanted[0], os.path.abspath(self.opts.jobfile), refusal
                )
                try:
                    self.swapper.request(request)
                except SwapNeeded:
                    if later:
                        return  # such a drive may not exist: finish, and say where those files are
                    raise
                queue = [last]
            out = queue.pop(0)
            last = out
            try:
                finished = self._from_drive(out)
                refusal = None
            except _Refused as why:
                refusal = str(why)
                self.emit(ev.DriveRefused(out, refusal))

    def _ask(self, wanted: list[int], later: bool, out: str) -> str:
        if len(wanted) == 1:
            which = f"volume {wanted[0]}"
        else:
            which = "volumes " + ", ".join(str(v) for v in wanted[:-1]) + f" or {wanted[-1]}"
        if later:
            return (
                f"the record in use ({self.head.describe()}) places {count(len(self.wanted), 'file')} on no "
                f"volume: insert a drive written after it ({which}) at {out}"
            )
        if len(wanted) == 1:
            return f"insert {which} at {out}"
        return f"{which} are still needed: insert any of them at {out}"

    def _from_drive(self, out: str) -> int:
        drive = Drive(out)
        lock_path = os.path.join(drive.root, LOCKFILE)
        try:
            lock = reading_lock(lock_path, f"the drive at {drive.root}")
        except (LockedError, OutputError) as err:
            raise _Refused(str(err)) from None
        try:
            return self._read_drive(drive, out)
        finally:
            if lock is not None:
                if drive.label is None:
                    lock.remove_if_made()  # a drive that is not ours keeps nothing of ours
                lock.release()

    def _read_drive(self, drive: Drive, out: str) -> int:
        try:
            drive.read_state()
        except OSError as err:
            raise _Refused(f"cannot read it ({err.strerror})") from None
        except OutputError as err:
            raise _Refused(str(err)) from None
        label = drive.label
        if label is None:
            raise _Refused("it is not a drive of this backup (no multivolumecopy label)")
        if label.job_id != self.job.job_id:
            raise _Refused(f"it is volume {label.volume} of another job ({label.job_id[:8]})")
        head = peek(drive.root)
        if head is not None and newer(head, self.head):
            record = load_record(drive.root)
            if record is not None and record.job_id == self.job.job_id:
                self.emit(NewerRecord(label.volume, out, head.describe(), self.head.describe()))
                self._use(record)
        why = standing(self.job, label)
        if why:
            raise _Refused(f"it is {why}; set it aside")
        number = label.volume
        self.visited.add(number)
        cat = self.job.catalog
        gives = self._givable(drive)
        if not gives and not any(cat.volumes[i] == number for i in self.wanted):
            raise _Refused(f"volume {number} holds nothing still to restore")
        st = os.statvfs(out)
        self.emit(ev.VolumeMounted(number, out, False, st.f_bavail * st.f_frsize, label.volume_uuid))
        try:
            source = Tree(drive.root)
        except OSError as err:
            raise _Refused(f"cannot read it ({err.strerror})") from None
        with source:
            for i in gives:
                why = self._restore_file(source, drive, number, i)
                if why is not None:
                    self._fail(i, why)
        for i in sorted(self.wanted):
            if cat.volumes[i] == number:  # the record says it is here, the drive does not
                path = cat.paths[i]
                if path in drive.dirty:
                    why = "its copy there was never confirmed complete (the backup writing it was cut short)"
                    self._fail(i, f"on volume {number}, {why}; run the backup again to rewrite it")
                elif path not in drive.contents:
                    self._fail(i, f"missing on volume {number}")
                else:
                    self._fail(i, f"volume {number} holds another version of it (size or time differ)")
        self.summary.volumes.append(number)
        return number

    def _givable(self, drive: Drive) -> list[int]:
        """The wanted files this drive holds, in the version the record wants (its manifest
        says exactly what it holds)."""
        cat = self.job.catalog
        gran = drive.caps.granularity_ns
        gives = []
        for i in sorted(self.wanted):
            held = drive.contents.get(cat.paths[i])
            if (
                held is not None
                and held.kind == FILE
                and held.size == cat.sizes[i]
                and mtimes_equal(held.mtime_ns, cat.mtimes[i], gran)
            ):
                gives.append(i)
        return gives

    def _restore_file(self, source: Tree, drive: Drive, volume: int, i: int) -> Optional[str]:
        """Restore file ``i`` from this drive; returns why it could not be, or None."""
        cat = self.job.catalog
        path = cat.paths[i]
        dest = self.dest
        try:
            dest.check_free(path)
            if self._link_to_leader(i):
                return None
            want = drive.contents[path]  # the manifest: the hash of what was written to this drive
            stored = drive.on_drive(path) or path
            try:
                fin = source.open_regular(stored)
            except Blocked as b:
                if b.where == stored:
                    return f"on volume {volume}, {b.what} is where this file should be{_unfollowed(b.what)}"
                return f"on volume {volume}, {b.where} is {b.what}, not a folder{_unfollowed(b.what)}"
            except FileNotFoundError:
                return f"missing on volume {volume}"
            except OSError as err:
                return f"cannot read it from volume {volume}: {err.strerror}"

            def check(digest: str, size: int) -> Optional[str]:
                if want.sha256 and digest != want.sha256:
                    return f"damaged on volume {volume}: its content differs from what was backed up"
                if size != want.size:
                    return (
                        f"damaged on volume {volume}: {count(size, 'byte')}, "
                        f"{want.size} {plural(want.size, 'was', 'were')} backed up"
                    )
                return None

            try:
                size = dest.put_file(path, fin, cat.modes[i], cat.mtimes[i], i, check, self._meta(i))
            finally:
                os.close(fin)
        except NotPlaced as why:
            return str(why)
        except Unreadable as err:
            return f"cannot read it from volume {volume}: {err}"
        self._placed(i, size)
        self.emit(ev.Copied(volume, 1, size, 0))
        return None

    def _link_to_leader(self, i: int) -> bool:
        """A hard-linked file whose first link is already restored, intact, is linked to it."""
        cat = self.job.catalog
        leader = cat.leader(i)
        if leader is None or not self.dest.intact(cat.paths[leader], cat.sizes[leader], cat.mtimes[leader]):
            return False
        if not self.dest.hard_link(cat.paths[i], cat.paths[leader], i):
            return False  # a target that cannot link: copy it instead
        self._placed(i, 0)
        return True

    def _finish(self) -> None:
        """Report what no drive gave, then give the folders their modes and times."""
        cat = self.job.catalog
        run = self.job.run
        for i in sorted(self.wanted):
            if cat.volumes[i]:
                why = f"volume {cat.volumes[i]} was not inserted"
            elif run.in_progress:
                why = (
                    f"on no drive the record in use knows of (run {run.number} had not finished when it "
                    "was saved); a drive written later may hold it: restore again with that drive"
                )
            else:
                why = "on no drive: it was never copied to a volume"
            self._problem(cat.paths[i], why, {})
        for path in depth_first(self.dirs):
            d = cat.index_of(path)
            if d is not None and path not in self.problems:
                self.dest.finish_dir(path, cat.modes[d], cat.mtimes[d], self._meta(d))
        top = self.job.top
        if top is not None and not self.opts.patterns and not self.problems:
            self.dest.finish_top(top["mode"], top["mtime_ns"])  # all of it restored, as rsync -a does
        self.summary.problems = list(self.problems.items())
        self.summary.not_kept = self.dest.lost

    # -- bookkeeping -------------------------------------------------------------------

    def _meta(self, i: int) -> tuple[int, int, Optional[str]]:
        """Entry ``i``'s owner, group (this machine's ids) and attributes, from the record."""
        cat = self.job.catalog
        return self._ids(cat.uids[i], cat.gids[i], cat.xattrs.get(i))

    def _ids(self, uid: int, gid: int, xattrs: Optional[str]) -> tuple[int, int, Optional[str]]:
        """A recorded owner and group as this machine's ids, with the attributes."""
        return (
            uid if uid == UNKNOWN_ID else self.ids.uid(uid),
            gid if gid == UNKNOWN_ID else self.ids.gid(gid),
            xattrs,
        )

    def _placed(self, i: int, size: int) -> None:
        self.wanted.discard(i)
        self.summary.restored += 1
        self.summary.restored_bytes += size

    def _fail(self, i: int, why: str) -> None:
        """File ``i`` cannot be restored in the version the record wants."""
        cat = self.job.catalog
        path = cat.paths[i]
        self.wanted.discard(i)
        self.failed[path] = (cat.sizes[i], cat.mtimes[i])
        self._problem(path, why, {})

    def _problem(self, path: str, why: str, shown: dict[str, str]) -> None:
        """Record a problem; shown once (``shown``: those already told under an earlier record)."""
        self.problems[path] = why
        if shown.get(path) != why:
            self.emit(ev.FileFailed(path, why))


def _unfollowed(what: str) -> str:
    return "; it was not followed" if what.startswith("a symlink") else ""
