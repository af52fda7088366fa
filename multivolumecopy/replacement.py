"""A new drive for a lost volume with no source (``--restore --lost-volume N --replace-volume N
--to DRIVE``): volume N rebuilt from the parity drive and the other drives, as
:mod:`multivolumecopy.rebuild` does, onto the blank drive at ``--to``, which becomes volume N
(docs/TECHNICAL_DECISIONS.rst, "Parity").

Pipeline::

    the drive at --to        blank (or this replacement's own drive, cut short): locked
    the rebuild              the parity drive, then the other volumes (one drive at a time at -o);
                             the files in .mvcopy-rebuild on the new drive, each checked
    the jobfile              volume N's record names the new drive (a new volume id): saved
                             before the label, so the lost drive is refused from then on
    the new drive            label; journal; folders, files renamed into place, hard links,
                             symlinks, folders' metadata; commit (manifest and sums); the map's
                             copy, the jobfile (its copy on the drive first)

An interruption anywhere is finished by the same command: a drive labelled as the jobfile's
volume N is taken again, and what its commit holds is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from typing import Callable, Optional

from . import clock, faults, metadata
from . import events as ev
from . import jobfile as jf
from .catalog import DIR, FILE, LINK, ancestors, depth_first
from .drive import Drive, drive_error
from .driveformat import DATA, LOCKFILE, TMPDIR, Label, filesystem_id
from .errors import OutputError, UsageError
from .fsutil import block_size, is_mount_point, path_inside
from .identify import no_drive_at, probe_drive
from .ledger import Ledger
from .parity import NAME, copy_map
from .paritymap import Row
from .prepare import jobfile_lock
from .probe import Capabilities
from .rebuild import SCRATCH, Rebuild, _clear_scratch, _Target
from .restore import RestoreOptions, RestoreSummary
from .sizes import count, format_size
from .swap import Swapper
from .writer import KEEPS_NO_MODES


class Replacement(Rebuild):
    """One ``--restore --lost-volume N --replace-volume N``: the drive at ``--to`` becomes volume N."""

    def __init__(self, opts: RestoreOptions, lost: int, emit: Callable[[object], None], swapper: Swapper):
        super().__init__(opts, lost, emit, swapper)
        self.drive: Drive
        self.resumed = False  # --to holds this replacement's drive, labelled by a run cut short

    def run(self) -> RestoreSummary:
        """Rebuild volume N onto the drive at ``--to`` and make it volume N; raises
        :class:`SwapNeeded` when stopped at a drive swap (the same command goes on)."""
        jobfile = os.path.abspath(self.opts.jobfile)
        with jobfile_lock(jobfile, self.opts.jobfile):
            job = self.job = jf.load(jobfile)
            rec = job.volumes.get(self.lost)
            if rec is None or rec.forgotten:
                raise UsageError(f"--lost-volume {self.lost}: the job has no volume {self.lost}")
            to = os.path.abspath(self.opts.to)
            for out in self.opts.outputs:
                if not os.path.isdir(out):
                    raise OutputError(f"output {out} is not a directory; give the mount point of a drive")
                if path_inside(to, out) or path_inside(out, to):
                    raise OutputError(
                        f"--to {self.opts.to} and -o {out} are the same drive; mount the new drive for "
                        f"volume {self.lost} at --to and the others, in turn, at -o"
                    )
            if not os.path.isdir(to):
                raise OutputError(f"--to {self.opts.to} is not a directory; mount the new drive there")
            missing = no_drive_at(job, to)
            if missing:
                raise OutputError(f"--to: {missing}; mount the new drive for volume {self.lost} there")
            self.drive = Drive(to)
            try:
                self.drive.open()
            except OSError as err:
                raise drive_error(to, err) from None
            try:
                self._check_target(rec)
                self.scratch = os.path.join(to, SCRATCH)
                try:
                    _clear_scratch(self.scratch)
                    os.makedirs(self.scratch, exist_ok=True)
                    self._drive_loop()
                    self._write_volume(jobfile)
                finally:
                    _clear_scratch(self.scratch)
            finally:
                self.drive.close()
        return self.summary

    def _check_target(self, rec: jf.VolumeRecord) -> None:
        """The drive at ``--to`` is blank, or the job's volume N itself (a replacement cut
        short after its label); anything else is refused in one line."""
        drive, job, n = self.drive, self.job, self.lost
        label = drive.label
        where = f"the drive at --to {self.opts.to}"
        if label is None:
            names = sorted(
                name
                for name in os.listdir(drive.root)
                if name not in ("lost+found", LOCKFILE, SCRATCH, TMPDIR)
            )
            if names:
                raise OutputError(
                    f"{where} is not blank (it holds {names[0]!r}{' and more' if len(names) > 1 else ''}); "
                    f"--replace-volume {n} writes a whole new volume {n}: give it an empty drive"
                )
            need = rec.used
            st = os.statvfs(drive.root)
            if need > st.f_bavail * st.f_frsize:
                raise OutputError(
                    f"{where} is too small for volume {n}: its files take {format_size(need)}, the "
                    f"drive offers {format_size(st.f_bavail * st.f_frsize)}; use a bigger drive"
                )
        elif label.job_id != job.job_id:
            raise OutputError(f"{where} is a drive of another job ({label.job_id[:8]}); give a blank drive")
        elif label.volume != n or label.role != DATA:
            what = f"the parity drive {NAME}" if label.role != DATA else f"volume {label.volume}"
            raise OutputError(f"{where} is {what} of this job; give it a blank drive for volume {n}")
        elif label.volume_uuid != rec.uuid:
            raise OutputError(
                f"{where} is an old drive of volume {n} (another volume id than the job's); set it "
                "aside, or wipe it to use it as a blank one"
            )
        else:
            self.resumed = True

    def _intact(self, i: int, row: Optional[Row]) -> bool:
        """A file the new drive's commit already holds in the version the parity protects."""
        if not self.resumed or row is None:
            return False
        held = self.drive.contents.get(row.path)
        return (
            held is not None
            and held.kind == FILE
            and held.sha256 == row.sha256
            and held.size == row.size
            and row.path not in self.drive.dirty
        )

    # -- the new drive -----------------------------------------------------------------

    def _write_volume(self, jobfile: str) -> None:
        """The checked files into place on the drive, with the rest of volume N, committed."""
        job, drive, n = self.job, self.drive, self.lost
        cat = job.catalog
        if not self.resumed:
            self._label(jobfile)
        rec = job.volumes[n]
        if rec.capabilities is not None:
            drive.caps = Capabilities.from_json(rec.capabilities)
        drive.prepare()
        on = [i for i in range(len(cat)) if cat.volumes[i] == n]
        for t in self.targets:
            if t.failed is not None:
                self._problem(cat.paths[t.index], t.failed)
        good = [t for t in self.targets if t.failed is None and self._checked(t)]
        paths = [cat.paths[i] for i in on if cat.kinds[i] != ord(DIR)]
        drive.intent([p for p in paths if p not in drive.contents or p in drive.dirty])
        dirs = {cat.paths[i] for i in on if cat.kinds[i] == ord(DIR)} | ancestors(cat.paths[i] for i in on)
        for path in sorted(dirs, key=lambda p: p.count("/")):
            self._make_dir(path)
        drive.put([cat.entry(i) for i in on if cat.kinds[i] == ord(DIR)])
        for t in good:
            self._put_file(t.index, t.row, t.scratch)
        faults.point("replace:files")
        for i in self.links:
            self._put_link(i)
        for i in on:
            if cat.kinds[i] == ord(LINK):
                self._put_symlink(i)
        self._dir_metadata(dirs)
        drive.sync_point()
        drive.commit(job.run.number)
        self._settle(jobfile)

    def _label(self, jobfile: str) -> None:
        """Volume N's record names the new drive (saved first: the lost drive is refused from
        then on), then the drive gets its label."""
        job, drive, n = self.job, self.drive, self.lost
        caps = probe_drive(drive)
        old = job.volumes[n]
        rec = dataclasses.replace(
            old,
            uuid=clock.new_id(),
            created=clock.now_iso(),
            granularity_ns=caps.granularity_ns,
            block_size=block_size(drive.root),
            fs_id=filesystem_id(drive.root),
            capabilities=caps.to_json(),
            mounted=is_mount_point(drive.root),
            labelled=False,
            last_verified=None,
        )
        job.volumes[n] = rec
        jf.save(jobfile, job)
        faults.point("replace:recorded")
        drive.write_label(Label(job.job_id, n, rec.uuid, rec.created, job.root))
        rec.labelled = True
        jf.save(jobfile, job)

    def _checked(self, t: _Target) -> bool:
        """A rebuilt file's SHA-256 is the one its drive held; else it is reported, not placed."""
        os.truncate(t.scratch, t.row.size)
        digest = hashlib.sha256()
        with open(t.scratch, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != t.row.sha256:
            self._problem(t.row.path, "rebuilt from the parity, its content differs from what was backed up")
            os.unlink(t.scratch)
            return False
        return True

    def _stored(self, path: str, kind: str) -> Optional[str]:
        return self.drive.name_for(path, kind)

    def _make_dir(self, path: str) -> None:
        stored = self._stored(path, DIR)
        if stored is None:
            return
        full = self.drive.path(stored)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            self.drive._guard(os.mkdir, full, 0o700)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{full} is in the way of a folder of volume {self.lost}; move it away")

    def _meta(self, i: int, full: str, is_link: bool = False) -> None:
        cat = self.job.catalog
        opts = self.job.options
        keep = metadata.Keep(
            owner=opts.get("owner", True) is not False,
            acls=opts.get("acls", True) is not False,
            xattrs=opts.get("xattrs", True) is not False,
        )
        mode = None if is_link else cat.modes[i]
        try:
            metadata.apply(full, cat.uids[i], cat.gids[i], cat.xattrs.get(i), mode, keep, is_link)
        except OSError as err:
            if err.errno not in KEEPS_NO_MODES:
                raise drive_error(self.drive.root, err) from None

    def _put_file(self, i: int, row: Row, scratch: str) -> None:
        """The checked file, with its metadata and time, renamed into place and recorded."""
        cat, drive = self.job.catalog, self.drive
        stored = self._stored(row.path, FILE) or row.path
        final = drive.path(stored)
        self._meta(i, scratch)
        drive._guard(os.utime, scratch, ns=(cat.mtimes[i], cat.mtimes[i]))
        drive._guard(os.rename, scratch, final)
        drive.put([cat.entry(i)._replace(sha256=row.sha256)])
        self.summary.restored += 1
        self.summary.restored_bytes += row.size

    def _put_link(self, i: int) -> None:
        """A hard link after the first of its group: linked to the first, on the drive too."""
        cat, drive = self.job.catalog, self.drive
        leader = cat.leader(i)
        assert leader is not None
        path, first = cat.paths[i], cat.paths[leader]
        held = drive.contents.get(first)
        if held is None or first in self.problems:
            self._problem(path, f"a hard link of {first}, which could not be rebuilt")
            return
        tmp = os.path.join(self.scratch, f"link-{i}.part")
        final = drive.path(self._stored(path, FILE) or path)
        drive._guard(os.link, drive.path(drive.on_drive(first) or first), tmp)
        drive._guard(os.rename, tmp, final)
        drive.put([held._replace(path=path, target=first)])
        self.summary.restored += 1

    def _put_symlink(self, i: int) -> None:
        cat, drive = self.job.catalog, self.drive
        path, target = cat.paths[i], cat.targets.get(i) or ""
        held = drive.contents.get(path)
        if held is not None and held.kind == LINK and held.target == target and path not in drive.dirty:
            return
        stored = self._stored(path, LINK)
        if stored is not None:
            tmp = os.path.join(self.scratch, f"symlink-{i}.part")
            drive._guard(os.symlink, target, tmp)
            self._meta(i, tmp, is_link=True)
            drive._guard(os.utime, tmp, ns=(cat.mtimes[i], cat.mtimes[i]), follow_symlinks=False)
            drive._guard(os.rename, tmp, drive.path(stored))
        drive.put([cat.entry(i)])
        self.summary.restored += 1

    def _dir_metadata(self, dirs: set[str]) -> None:
        cat, drive = self.job.catalog, self.drive
        for path in depth_first(dirs):
            i = cat.index_of(path)
            stored = drive.on_drive(path) or path
            if i is None or path in self.problems:
                continue
            full = drive.path(stored)
            self._meta(i, full)
            drive._guard(os.utime, full, ns=(cat.mtimes[i], cat.mtimes[i]), follow_symlinks=False)

    def _settle(self, jobfile: str) -> None:
        """Volume N's record from what the new drive committed (what it could not be given is
        on no volume now: the next run with the sources copies it); the map's copy, then the
        jobfile (its copy on the drive first)."""
        job, drive, n = self.job, self.drive, self.lost
        rec = job.volumes[n]
        Ledger(job.catalog).settle(n, drive.contents, [], rec.granularity_ns)
        rec.used = drive.used_bytes(rec.block_size)
        rec.files = len(job.catalog.indexes_on(n))
        rec.unhashed = len(drive.contents.unhashed_files())
        rec.updated = clock.now_iso()
        st = os.statvfs(drive.root)
        rec.capacity = rec.used + st.f_bavail * st.f_frsize + drive.records_bytes(rec.block_size)
        copy_map(drive, jobfile)

        def copy_first(new: str) -> None:
            drive.write_jobcopy(new)

        jf.save(jobfile, job, copy_first)
        self.summary.problems = list(self.problems.items())
        done = count(self.summary.restored, "entry", "entries")
        self.emit(
            ev.Note(
                f"volume {n} written anew at {drive.root}: {done} "
                f"rebuilt from the parity drive {NAME} and {count(len(self.summary.volumes), 'other volume')}"
                + (f", {self.summary.intact} already there" if self.summary.intact else "")
            )
        )
