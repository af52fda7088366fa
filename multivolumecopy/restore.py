"""Restoring (``--restore --to DIR [PATTERN...]``): the drives back into a tree.

Directories and symlinks are recreated from the jobfile; regular files are
read from the volume that holds them, in whatever order the drives come,
through the same swap mechanism as a backup (prompt, ``--new-volume-script``,
or stop and run again).  Each file is written under a temporary name, its
SHA-256 checked against the one recorded when it was backed up, and only then
given its mode and times and renamed into place: a damaged file never sits
under its final name.  Files already restored and intact are skipped, so a
stopped restore continues where it left off.  An existing file that differs is
never overwritten: it is reported.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

from . import events as ev
from . import jobfile as jf
from .catalog import DIR, FILE, LINK, Catalog, Entry, ancestors, depth_first
from .errors import DriveError, OutputError
from .fsutil import mtimes_equal, probe_mtime_granularity
from .locate import Matcher
from .scan import path_inside
from .swap import Swapper, SwapRequest
from .volume import Drive

CHUNK = 1024 * 1024


@dataclass
class RestoreOptions:
    jobfile: str
    outputs: list[str]
    to: str
    patterns: list[str] = field(default_factory=list)


@dataclass
class RestoreSummary:
    restored: int = 0
    restored_bytes: int = 0
    intact: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    volumes: list[int] = field(default_factory=list)


class _Refused(Exception):
    pass


class Restore:
    def __init__(self, opts: RestoreOptions, emit: ev.Emit, swapper: Swapper):
        self.opts = opts
        self.emit = emit
        self.swapper = swapper
        self.summary = RestoreSummary()
        self.to = os.path.abspath(opts.to)
        self.granularity = 1

    def run(self) -> RestoreSummary:
        job = jf.load(self.opts.jobfile)
        for out in self.opts.outputs:
            if not os.path.isdir(out):
                raise OutputError(f"output {out} is not a directory; give the mount point of a backup drive")
            if path_inside(self.to, out):
                raise OutputError(f"--to {self.opts.to} is on the backup drive {out}; restore somewhere else")
        try:
            os.makedirs(self.to, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create --to {self.opts.to}: {err.strerror}") from None
        self.granularity = probe_mtime_granularity(self.to)
        cat = job.catalog
        match = Matcher(self.opts.patterns)
        selected = [i for i, p in enumerate(cat.paths) if match(p)]
        todo: dict[int, list[int]] = defaultdict(list)
        dirs = {cat.paths[i] for i in selected if cat.kinds[i] == ord(DIR)}
        dirs |= ancestors(cat.paths[i] for i in selected)
        for path in depth_first(dirs)[::-1]:
            self._make_dir(path)
        for i in selected:
            kind = cat.kinds[i]
            if kind == ord(LINK):
                self._restore_link(cat, i)
            elif kind == ord(FILE):
                if self._intact(cat.entry(i)):
                    self.summary.intact += 1
                elif cat.volumes[i] == 0:
                    self._problem(cat.paths[i], "it was never copied to a volume")
                else:
                    todo[cat.volumes[i]].append(i)
        files = sum(len(v) for v in todo.values())
        nbytes = sum(cat.sizes[i] for v in todo.values() for i in v)
        self.emit(ev.RestoreStarted(tuple(sorted(todo)), files, nbytes, self.summary.intact))
        self._drive_loop(job, todo)
        self._dir_metadata(cat, dirs)
        return self.summary

    # -- drives ------------------------------------------------------------------------

    def _drive_loop(self, job: jf.Job, todo: dict[int, list[int]]) -> None:
        queue = list(self.opts.outputs)
        last = queue[-1] if queue else ""
        finished: Optional[int] = None
        refusal: Optional[str] = None
        while todo:
            if not queue:
                wanted = sorted(todo)
                if len(wanted) == 1:
                    message = f"insert volume {wanted[0]} at {last}"
                else:
                    names = ", ".join(str(v) for v in wanted[:-1]) + f" or {wanted[-1]}"
                    message = f"volumes {names} are still needed: insert any of them at {last}"
                self.emit(ev.WaitingForDrive(last, message, tuple(wanted), wanted[0]))
                self.swapper.request(
                    SwapRequest(
                        last, message, finished, wanted[0], os.path.abspath(self.opts.jobfile), refusal
                    )
                )
                queue = [last]
            out = queue.pop(0)
            last = out
            try:
                finished = self._from_drive(job, out, todo)
                refusal = None
            except _Refused as why:
                refusal = str(why)
                self.emit(ev.DriveRefused(out, refusal))

    def _from_drive(self, job: jf.Job, out: str, todo: dict[int, list[int]]) -> int:
        drive = Drive(out)
        try:
            drive.read_state()
        except OSError as err:
            raise _Refused(f"cannot read it ({err.strerror})") from None
        label = drive.label
        if label is None:
            raise _Refused("it is not a drive of this backup (no multivolumecopy label)")
        if label.job_id != job.job_id:
            raise _Refused(f"it is volume {label.volume} of another job ({label.job_id[:8]})")
        number = label.volume
        if number not in todo:
            raise _Refused(f"volume {number} holds nothing still to restore")
        st = os.statvfs(out)
        self.emit(ev.VolumeMounted(number, out, False, st.f_bavail * st.f_frsize, label.volume_uuid))
        cat = job.catalog
        for i in todo.pop(number):
            self._restore_file(drive, number, cat, i)
        self.summary.volumes.append(number)
        return number

    # -- entries -----------------------------------------------------------------------

    def _restore_file(self, drive: Drive, volume: int, cat: Catalog, i: int) -> None:
        path = cat.paths[i]
        want = drive.held.get(path) or cat.entry(i)  # the manifest says what was written there
        src = drive.path(drive.on_drive(path) or path)
        final = os.path.join(self.to, path)
        if os.path.lexists(final):
            self._problem(path, "a different file is already at that place; move it away to restore it")
            return
        tmp = os.path.join(os.path.dirname(final), f".mvcopy-restore-{i}.tmp")
        if self._link_to_leader(cat, i, tmp, final, want):
            return
        try:
            with open(src, "rb", buffering=0) as fin:
                digest, size = self._copy_out(fin, tmp, want.mode)
        except FileNotFoundError:
            self._problem(path, f"missing on volume {volume}")
            return
        except OSError as err:
            _unlink(tmp)
            if err.filename == tmp or err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutputError(f"cannot write {final}: {err.strerror}; free space or check --to") from None
            self._problem(path, f"cannot read it from volume {volume}: {err.strerror}")
            return
        except BaseException:
            _unlink(tmp)
            raise
        if want.sha256 and digest != want.sha256:
            _unlink(tmp)
            self._problem(path, f"damaged on volume {volume}: its content differs from what was backed up")
            return
        if size != want.size:
            _unlink(tmp)
            self._problem(path, f"damaged on volume {volume}: {size} bytes, {want.size} were backed up")
            return
        os.utime(tmp, ns=(want.mtime_ns, want.mtime_ns))
        os.rename(tmp, final)
        self.summary.restored += 1
        self.summary.restored_bytes += size
        self.emit(ev.Copied(volume, 1, size, 0))

    def _link_to_leader(self, cat: Catalog, i: int, tmp: str, final: str, want: Entry) -> bool:
        """A hard-linked file whose first link is already restored, intact, is linked to it."""
        leader = cat.leader(i)
        if leader is None or not self._intact(cat.entry(leader)):
            return False
        _unlink(tmp)
        try:
            os.link(os.path.join(self.to, cat.paths[leader]), tmp)
            os.rename(tmp, final)
        except OSError:
            _unlink(tmp)
            return False  # a target that cannot link: copy it instead
        self.summary.restored += 1
        return True

    def _copy_out(self, fin, tmp: str, mode: int) -> tuple[str, int]:
        digest = hashlib.sha256()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        size = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while True:
                n = fin.readinto(view)
                if not n:
                    break
                digest.update(view[:n])
                done = 0
                while done < n:
                    done += os.write(fd, view[done:n])
                size += n
                self.emit(ev.BytesCopied(n))
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return digest.hexdigest(), size

    def _restore_link(self, cat: Catalog, i: int) -> None:
        path = cat.paths[i]
        final = os.path.join(self.to, path)
        target = cat.targets.get(i) or ""
        try:
            if os.readlink(final) == target:
                self.summary.intact += 1
                return
            self._problem(path, "a different file is already at that place; move it away to restore it")
            return
        except FileNotFoundError:
            pass
        except OSError:
            self._problem(path, "a different file is already at that place; move it away to restore it")
            return
        tmp = os.path.join(os.path.dirname(final), f".mvcopy-restore-{i}.tmp")
        _unlink(tmp)
        try:
            os.symlink(target, tmp)
            os.utime(tmp, ns=(cat.mtimes[i], cat.mtimes[i]), follow_symlinks=False)
            os.rename(tmp, final)
        except OSError as err:
            _unlink(tmp)
            self._problem(path, f"cannot make the symlink: {err.strerror}")
            return
        self.summary.restored += 1

    def _make_dir(self, path: str) -> None:
        full = os.path.join(self.to, path)
        try:
            os.mkdir(full, 0o700)
        except FileExistsError:
            if not os.path.isdir(full) or os.path.islink(full):
                self._problem(path, "a file is in the way of this folder")
        except OSError as err:
            raise DriveError(f"cannot create {full}: {err.strerror}; check --to") from None

    def _dir_metadata(self, cat: Catalog, dirs: set[str]) -> None:
        for path in depth_first(dirs):
            i = cat.index_of(path)
            full = os.path.join(self.to, path)
            if i is None or not os.path.isdir(full) or os.path.islink(full):
                continue
            os.chmod(full, cat.modes[i])
            os.utime(full, ns=(cat.mtimes[i], cat.mtimes[i]))

    def _intact(self, e: Entry) -> bool:
        try:
            st = os.lstat(os.path.join(self.to, e.path))
        except OSError:
            return False
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_size == e.size
            and mtimes_equal(st.st_mtime_ns, e.mtime_ns, self.granularity)
        )

    def _problem(self, path: str, why: str) -> None:
        self.summary.problems.append((path, why))
        self.emit(ev.FileFailed(path, why))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
