"""Rebuilding a lost volume (``--restore --to DIR --lost-volume N``) from the parity drive and the
other data drives, one drive at a time (docs/TECHNICAL_DECISIONS.rst, "Parity").

Pipeline::

    the parity drive P1      its record: volume N's files (rows) and the others' over them;
                             each file of N seeded with its parity blocks (a scratch file in DIR)
    each other volume        any order, through the swap; its manifest must still give each
                             row the parity holds the same SHA-256; its bytes XOR-ed in
    each file                its SHA-256 checked against the record, then put in place as a
                             restore puts a file (never under its final name before that)

Folders and symlinks of volume N come from the jobfile, as a restore makes them.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Callable, Optional, Union

from . import events as ev
from . import jobfile as jf
from .catalog import DIR, FILE, LINK, ancestors, depth_first, mtimes_equal
from .destination import Destination, NotPlaced, Unreadable
from .drive import Drive
from .driveformat import DATA, LOCKFILE
from .errors import LockedError, OutputError, UsageError
from .fsutil import path_inside
from .lock import reading_lock
from .nofollow import Blocked, Tree
from .parity import (
    DATA_FILE,
    NAME,
    NUMBER,
    RECORD,
    ParityRecord,
    load_map,
    parity_label,
    pread_exact,
    read_record,
    xor_into,
)
from .paritymap import BLOCK, Row, merge, overlaps
from .records import standing
from .restore import RestoreOptions, RestoreSummary
from .sizes import count
from .swap import Swapper, SwapRequest

SCRATCH = ".mvcopy-rebuild"  # in --to: the files being rebuilt, until each is checked
CHUNK_BLOCKS = 256  # 1 MiB at a time


class _Refused(Exception):
    pass


@dataclass
class _Target:
    """A file of the lost volume being rebuilt."""

    index: int  # in the catalog
    row: Row
    scratch: str
    failed: Optional[str] = None


class Rebuild:
    """One ``--restore --lost-volume N``: the parity drive first, then the other volumes."""

    def __init__(self, opts: RestoreOptions, lost: int, emit: Callable[[object], None], swapper: Swapper):
        self.opts = opts
        self.lost = lost
        self.emit = emit
        self.swapper = swapper
        self.summary = RestoreSummary()
        self.job: jf.Job
        self.dest: Destination
        self.record: Optional[ParityRecord] = None
        self.targets: list[_Target] = []  # sorted by start
        self.needed: set[int] = set()  # volumes still to XOR in
        self.problems: dict[str, str] = {}
        self.dirs: set[str] = set()
        self.links: list[int] = []  # hard links after the first of their group
        self.scratch = ""  # the folder of the files being rebuilt

    def run(self) -> RestoreSummary:
        """Rebuild the lost volume's entries into ``--to``; raises :class:`SwapNeeded` when stopped
        at a drive swap (what was rebuilt so far is thrown away by the next run)."""
        job = self.job = jf.load(self.opts.jobfile)
        if self.lost not in job.volumes or job.volumes[self.lost].forgotten:
            raise UsageError(f"--lost-volume {self.lost}: the job has no volume {self.lost}")
        for out in self.opts.outputs:
            if not os.path.isdir(out):
                raise OutputError(f"output {out} is not a directory; give the mount point of a backup drive")
            if path_inside(self.opts.to, out):
                raise OutputError(f"--to {self.opts.to} is on the backup drive {out}; restore somewhere else")
        self.dest = Destination(self.opts.to, lambda n: self.emit(ev.BytesCopied(n)))
        scratch = self.scratch = os.path.join(self.dest.to, SCRATCH)
        try:
            _clear_scratch(scratch)
            os.makedirs(scratch, exist_ok=True)
            self._folders_and_links()
            self._drive_loop()
            self._finish()
        finally:
            self.dest.close()
            _clear_scratch(scratch)
        return self.summary

    # -- what the jobfile gives --------------------------------------------------------

    def _folders_and_links(self) -> None:
        cat = self.job.catalog
        on = [i for i in range(len(cat)) if cat.volumes[i] == self.lost]
        self.dirs = {cat.paths[i] for i in on if cat.kinds[i] == ord(DIR)}
        self.dirs |= ancestors(cat.paths[i] for i in on)
        for path in depth_first(self.dirs)[::-1]:
            try:
                self.dest.make_dir(path)
            except NotPlaced as why:
                self._problem(path, str(why))
        for i in on:
            if cat.kinds[i] == ord(LINK):
                try:
                    if not self.dest.link(cat.paths[i], cat.targets.get(i) or "", cat.mtimes[i], i):
                        self.summary.restored += 1
                except NotPlaced as why:
                    self._problem(cat.paths[i], str(why))

    def _targets(self, rec: ParityRecord) -> None:
        """The lost volume's files the parity protects in the version the jobfile wants; the
        others are reported."""
        cat = self.job.catalog
        rows = {r.path: r for r in rec.volumes.get(self.lost, [])}
        scratch = self.scratch
        gran = self.job.volumes[self.lost].granularity_ns
        for i in range(len(cat)):
            if cat.volumes[i] != self.lost or cat.kinds[i] != ord(FILE):
                continue
            path = cat.paths[i]
            r = rows.get(path)
            leader = cat.leader(i)
            if self._intact(i, r):
                self.summary.intact += 1
            elif r is None and leader is not None and cat.volumes[leader] == self.lost:
                self.links.append(i)  # linked to the first of its group once that is rebuilt
            elif r is None:
                self._problem(path, f"the parity drive {NAME} does not protect it (not computed since)")
            elif r.size != cat.sizes[i] or not mtimes_equal(r.mtime_ns, cat.mtimes[i], gran):
                self._problem(path, f"the parity drive {NAME} protects another version of it")
            elif r.nblocks and overlaps(rec.invalid, r.start, r.stop):
                self._problem(path, f"its parity on {NAME} was never completed (an update was cut short)")
            else:
                self.targets.append(_Target(i, r, os.path.join(scratch, f"{i}.part")))
        self.targets.sort(key=lambda t: (t.row.start, t.row.nblocks))
        runs = merge((t.row.start, t.row.stop) for t in self.targets)
        self.needed = {
            v
            for v, vrows in rec.volumes.items()
            if v != self.lost and any(r.nblocks and overlaps(runs, r.start, r.stop) for r in vrows)
        }

    def _intact(self, i: int, row: Optional[Row]) -> bool:
        """Whether entry ``i`` (a file, protected by ``row`` if not None) is already rebuilt."""
        cat = self.job.catalog
        return self.dest.intact(cat.paths[i], cat.sizes[i], cat.mtimes[i])

    # -- the drives --------------------------------------------------------------------

    def _drive_loop(self) -> None:
        queue = list(self.opts.outputs)
        last = queue[-1]
        refusal: Optional[str] = None
        while self.record is None or self.needed:
            if not queue:
                nxt: Union[int, str]
                if self.record is None:
                    message, nxt = f"insert the parity drive {NAME} at {last}", NAME
                else:
                    wanted = sorted(self.needed)
                    which = ", ".join(str(v) for v in wanted)
                    message = (
                        f"volumes {which} are needed to rebuild volume {self.lost}: insert any at {last}"
                    )
                    if len(wanted) == 1:
                        message = f"insert volume {wanted[0]} (to rebuild volume {self.lost}) at {last}"
                    nxt = wanted[0]
                self.emit(ev.WaitingForDrive(last, message, tuple(sorted(self.needed)), nxt))
                self.swapper.request(
                    SwapRequest(last, message, None, nxt, os.path.abspath(self.opts.jobfile), refusal)
                )
                queue = [last]
            out = queue.pop(0)
            last = out
            try:
                self._from_drive(out)
                refusal = None
            except _Refused as why:
                refusal = str(why)
                self.emit(ev.DriveRefused(out, refusal))

    def _from_drive(self, out: str) -> None:
        drive = Drive(out)
        try:
            lock = reading_lock(os.path.join(drive.root, LOCKFILE), f"the drive at {drive.root}")
        except (LockedError, OutputError) as err:
            raise _Refused(str(err)) from None
        try:
            try:
                drive.read_state()
            except (OSError, OutputError) as err:
                raise _Refused(f"cannot read it ({err})") from None
            label = drive.label
            if label is None or label.job_id != self.job.job_id:
                raise _Refused("it is not a drive of this backup")
            if self.record is None:
                if not parity_label(label):
                    raise _Refused(f"it is volume {label.volume}; the parity drive {NAME} comes first")
                self._seed(drive)
            elif label.role != DATA:
                raise _Refused(f"the parity drive {NAME} was read already")
            else:
                why = standing(self.job, label)
                if why:
                    raise _Refused(f"it is {why}; set it aside")
                if label.volume not in self.needed:
                    raise _Refused(f"volume {label.volume} is not needed (now) to rebuild volume {self.lost}")
                self._xor_volume(drive, label.volume)
        finally:
            if lock is not None:
                if drive.label is None:
                    lock.remove_if_made()
                lock.release()

    def _seed(self, drive: Drive) -> None:
        """Each file's scratch copy starts as its parity blocks."""
        rec = read_record(drive.path(RECORD))
        label = drive.label
        if rec is None or label is None or (rec.job_id, rec.uuid) != (self.job.job_id, label.volume_uuid):
            raise _Refused(f"the parity drive {NAME} holds no parity record of this job")
        pmap = load_map(self.opts.jobfile, self.job.job_id)
        if pmap is not None and pmap.drive_uuid not in (None, label.volume_uuid):
            raise _Refused(
                f"it is a replaced parity drive of this job (another volume id than {NAME}'s); insert {NAME}"
            )
        self.record = rec
        self._targets(rec)
        self.emit(
            ev.RestoreStarted(
                tuple(sorted(self.needed)),
                len(self.targets),
                sum(t.row.size for t in self.targets),
                self.summary.intact,
            )
        )
        try:
            fd = os.open(drive.path(DATA_FILE.format(n=NUMBER)), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            raise _Refused(f"cannot read its parity ({err.strerror})") from None
        try:
            for t in self.targets:
                with open(t.scratch, "wb") as out:
                    for a in range(t.row.start, t.row.stop, CHUNK_BLOCKS):
                        b = min(t.row.stop, a + CHUNK_BLOCKS)
                        out.write(pread_exact(fd, (b - a) * BLOCK, a * BLOCK))
        finally:
            os.close(fd)

    def _xor_volume(self, drive: Drive, number: int) -> None:
        """XOR in the blocks volume ``number`` shares with the files being rebuilt."""
        assert self.record is not None
        rows = [t.row for t in self.targets]
        stops = [r.stop for r in rows]
        try:
            tree = Tree(drive.root)
        except OSError as err:
            raise _Refused(f"cannot read it ({err.strerror})") from None
        with tree:
            for g in self.record.volumes.get(number, []):
                if not g.nblocks:
                    continue
                k = bisect.bisect_right(stops, g.start)
                hit = []
                while k < len(rows) and rows[k].start < g.stop:
                    if rows[k].nblocks and self.targets[k].failed is None:
                        hit.append(self.targets[k])
                    k += 1
                if hit:
                    why = self._xor_file(tree, drive, number, g, hit)
                    if why is not None:
                        for t in hit:
                            t.failed = t.failed or why
        self.needed.discard(number)
        self.summary.volumes.append(number)

    def _xor_file(self, tree: Tree, drive: Drive, number: int, g: Row, hit: list[_Target]) -> Optional[str]:
        held = drive.contents.get(g.path)
        if held is None or held.kind != FILE or held.sha256 != g.sha256 or held.size != g.size:
            return (
                f"volume {number} no longer holds {g.path} as the parity has it (changed since the parity "
                "was last updated)"
            )
        try:
            fd = tree.open_regular(drive.on_drive(g.path) or g.path)
        except (Blocked, OSError) as err:
            return f"cannot read {g.path} on volume {number} ({err})"
        try:
            for t in hit:
                lo, hi = max(g.start, t.row.start), min(g.stop, t.row.stop)
                with open(t.scratch, "r+b") as out:
                    for a in range(lo, hi, CHUNK_BLOCKS):
                        b = min(hi, a + CHUNK_BLOCKS)
                        data = pread_exact(fd, (b - a) * BLOCK, (a - g.start) * BLOCK)
                        at = (a - t.row.start) * BLOCK
                        out.seek(at)
                        mixed = bytearray(out.read(len(data)))
                        mixed.extend(bytes(len(data) - len(mixed)))
                        xor_into(mixed, 0, data)
                        out.seek(at)
                        out.write(mixed)
        except OSError as err:
            return f"cannot read {g.path} on volume {number} ({err.strerror})"
        finally:
            os.close(fd)
        return None

    # -- the end -----------------------------------------------------------------------

    def _finish(self) -> None:
        cat = self.job.catalog
        for t in self.targets:
            path = cat.paths[t.index]
            if t.failed is not None:
                self._problem(path, t.failed)
                continue
            os.truncate(t.scratch, t.row.size)
            fd = os.open(t.scratch, os.O_RDONLY | os.O_CLOEXEC)

            def check(digest: str, size: int, want: Row = t.row) -> Optional[str]:
                if digest != want.sha256 or size != want.size:
                    return "rebuilt from the parity, its content differs from what was backed up"
                return None

            try:
                size = self.dest.put_file(path, fd, cat.modes[t.index], cat.mtimes[t.index], t.index, check)
            except NotPlaced as why:
                self._problem(path, str(why))
                continue
            except Unreadable as err:
                self._problem(path, f"cannot read its rebuilt copy: {err}")
                continue
            finally:
                os.close(fd)
                os.unlink(t.scratch)
            self.summary.restored += 1
            self.summary.restored_bytes += size
            self.emit(ev.Copied(self.lost, 1, size, 0))
        for i in self.links:
            leader = cat.leader(i)
            assert leader is not None
            path, first = cat.paths[i], cat.paths[leader]
            if first in self.problems:
                self._problem(path, f"a hard link of {first}, which could not be rebuilt")
            elif self.dest.hard_link(path, first, i):
                self.summary.restored += 1
            else:
                self._problem(path, f"could not be linked to {first} (rebuilt) in --to")
        for path in depth_first(self.dirs):
            d = cat.index_of(path)
            if d is not None and path not in self.problems:
                self.dest.finish_dir(path, cat.modes[d], cat.mtimes[d])
        self.summary.problems = list(self.problems.items())
        if self.record is not None:
            self.emit(
                ev.Note(
                    f"volume {self.lost}: {count(self.summary.restored, 'entry', 'entries')} rebuilt from "
                    f"the parity drive {NAME} and {count(len(self.summary.volumes), 'other volume')}"
                )
            )

    def _problem(self, path: str, why: str) -> None:
        self.problems[path] = why
        self.emit(ev.FileFailed(path, why))


def _clear_scratch(scratch: str) -> None:
    """Remove what a rebuild left in its scratch folder (its ``.part`` files only), then the
    folder if it is empty."""
    try:
        names = os.listdir(scratch)
    except OSError:
        return
    for name in names:
        if name.endswith(".part"):
            try:
                os.unlink(os.path.join(scratch, name))
            except OSError:
                pass
    try:
        os.rmdir(scratch)
    except OSError:
        pass
