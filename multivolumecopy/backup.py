"""A backup run: scan, then update each drive in turn, swapping when one is full.

Pipeline::

    scan.scan() -> Catalog --merge with jobfile--> Job
        for each drive (given with -o, or swapped in):
            drive.Drive.open()         lock, label, recover from the journal
            reconcile.plan_volume()    keep / purge / recopy / fill (pure)
            _apply()                   purge, adopt, intent, copier.CopyPool.run()
            Drive.commit(); jobfile.save()
        swap.Swapper.request() when work remains and no drive is left

Only this module changes the catalog's volume assignments, the jobfile and
the drives' records; workers just copy.  Every change to a drive is
journalled before it can be seen (see :mod:`multivolumecopy.volume`), so an
interrupted run leaves each drive as it was or consistently updated, and the
same command finishes the job.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Optional

from . import clock, faults
from . import events as ev
from . import jobfile as jf
from .catalog import (
    DIR,
    FILE,
    LINK,
    NO_VOLUME,
    Catalog,
    Entry,
    ancestors,
    depth_first,
    index_ranges,
    mtimes_equal,
)
from .changes import Changes, classify
from .drive import Drive, drive_error
from .driveformat import CHANGES, JOBCOPY, RESERVED_PREFIX, Label, filesystem_id, read_label
from .errors import (
    DriveError,
    Interrupted,
    JobfileError,
    MvcError,
    OutputError,
    SourceError,
    TooLargeError,
    UsageError,
)
from .fsutil import (
    Writeback,
    atomic_write,
    block_size,
    is_mount_point,
    is_no_space,
    path_inside,
    read_chunks,
    remove_stale_temporaries,
    round_up,
)
from .jsonstream import stream
from .lock import FileLock
from .placement import NEW_DRIVE, place_new
from .places import Places
from .probe import Capabilities, probe
from .reconcile import Space, VolumePlan, metadata_reserve, plan_volume, record_cost
from .scan import Scan, Sources, resolve_sources, usable_cpus
from .sizes import format_size
from .swap import Swapper, SwapRequest

if TYPE_CHECKING:
    from .copier import BatchDone, CopyPool
    from .dryrun import DryRun

SYNC_EVERY_SECONDS = 30.0
KEEPS_NO_MODES = (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP)  # chmod on a drive without modes
SYNC_EVERY_BYTES = 1 << 30


@dataclass
class Options:
    sources: list[str]
    outputs: list[str]
    jobfile: str = jf.DEFAULT_NAME
    exclude: list[str] = field(default_factory=list)
    device_padding: int = 0
    volume_size: Optional[int] = None
    workers: int = 2
    new_volume_script: Optional[str] = None
    hash: bool = True
    one_file_system: bool = False
    replace_volumes: list[int] = field(default_factory=list)
    forget_volumes: list[int] = field(default_factory=list)
    bwlimit: float = 0.0  # bytes per second read from the sources; 0: no limit
    idle_io: bool = True


@dataclass
class Summary:
    copied_files: int = 0
    copied_bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # not saved: (path, why)
    volumes: list[ev.VolumeDone] = field(default_factory=list)
    nothing_to_do: bool = False
    skipped: int = 0


class _Refused(Exception):
    """This drive cannot be used now; the message says why."""


def check_outputs(opts: Options, sources: Sources) -> None:
    """Everything about the output paths that can be checked before writing anything."""
    if not opts.outputs:
        raise OutputError("no output given; name the mounted drive with -o/--output")
    seen: dict[str, str] = {}
    devices: dict[int, str] = {}
    for out in opts.outputs:
        if not os.path.exists(out):
            raise OutputError(f"output {out} does not exist; mount the drive there or create the directory")
        if not os.path.isdir(out):
            raise OutputError(f"output {out} is not a directory; give the drive's mount point")
        real = os.path.realpath(out)
        if real in seen:
            raise OutputError(f"output {out} is given twice (as {seen[real]}); give each drive once")
        seen[real] = out
        flags = os.statvfs(out).f_flag
        if flags & os.ST_RDONLY or not os.access(out, os.W_OK | os.X_OK):
            why = "mounted read-only" if flags & os.ST_RDONLY else "permission denied"
            raise OutputError(
                f"output {out} is not writable ({why}); mount the drive read-write or run as its owner"
            )
        for src in sources.paths:
            if path_inside(out, src):
                raise OutputError(
                    f"output {out} is inside source {src}; the backup would copy itself: "
                    "use a drive outside the sources, or --exclude it"
                )
            if path_inside(src, out):
                raise OutputError(f"source {src} is inside output {out}; back up to another drive")
        dev = os.stat(out).st_dev
        if dev in devices and opts.volume_size is None:
            raise OutputError(
                f"outputs {devices[dev]} and {out} are on the same filesystem; use separate "
                "drives, or give --volume-size to split one filesystem into volumes"
            )
        devices[dev] = out
        if path_inside(os.path.abspath(opts.jobfile), out):
            raise OutputError(
                f"the jobfile {opts.jobfile} is on the backup drive {out}; keep it elsewhere "
                "with -f (each drive gets its own copy)"
            )


class Backup:
    def __init__(self, opts: Options, emit: ev.Emit, swapper: Swapper, clock=time.monotonic):
        self.opts = opts
        self._emit = emit
        self.swapper = swapper
        self.clock = clock
        self.summary = Summary()
        self.job: Optional[jf.Job] = None
        self.failed: dict[int, str] = {}  # index -> why it failed in this run: not offered again
        self.vanished: set[int] = set()  # gone from the sources since the scan: nothing to save
        self.overflowed: dict[int, int] = {}  # index -> volume its old copy is on: it goes elsewhere
        self._adopted_sha: Optional[str] = None
        self.pool: Optional[CopyPool] = None
        self._reserve = 0
        self.jobfile = os.path.abspath(opts.jobfile)
        self.changes = Changes()
        self.old_catalog: Optional[Catalog] = None
        self.targets: dict[int, int] = {}  # unplaced index -> volume it should go to (absent: a new drive)
        self.actions: dict[int, dict[str, list]] = {}  # what each volume had done to it in this run
        self._recopy: set[int] = set()
        self.written: dict[int, int] = {}  # bytes copied to each volume in this run
        self._run_recorded = False  # the jobfile holds this run's state (see _record_run)

    def emit(self, event: ev.Event) -> None:
        if isinstance(event, ev.Skipped):
            self.summary.skipped += 1
        self._emit(event)

    # -- the run -----------------------------------------------------------------------

    def run(self) -> Summary:
        opts = self.opts
        sources = resolve_sources(opts.sources)
        check_outputs(opts, sources)
        jobfile = self.jobfile
        self._jobfile_folder()
        with _jobfile_lock(jobfile, opts.jobfile):
            remove_stale_temporaries(jobfile)
            remove_stale_temporaries(jobfile + jf.CACHE_SUFFIX)
            if not os.path.exists(jobfile):
                self._pick_up_job(sources)
            old, job, pending = self._load_and_merge(sources)
            self._check_sizes(job.catalog)
            if not job.run.in_progress and not pending and not self._unplaced_exist():
                # ``old`` is ``job`` by now, its catalog the fresh one: compare with the one read.
                read = self.old_catalog
                if old is None or read is None or _catalog_changed(read, job.catalog) or job.failed:
                    job.failed = []  # all saved: what the last run could not save is gone or done
                    jf.save(jobfile, job)  # folders' times, inodes: the record must follow
                elif not old.cached:
                    jf.write_cache(jobfile, read)  # the next run reads the catalog from it
                self.summary.nothing_to_do = True
                self.emit(ev.NothingToDo(len(job.catalog), len(job.volumes)))
                return self.summary
            resumed = job.run.in_progress
            self._plan_run(job, pending)
            files, nbytes = self._work_left()
            self.emit(ev.RunStarted(job.run.number, resumed, files, nbytes))
            try:
                self._drive_loop()
            finally:
                if self.pool is not None:
                    self.pool.close()
                self._write_report()
            if job.run.in_progress:  # the last volume's save finished it, unless none was written
                self._finish_run()
                self._save()
        return self.summary

    def _save(self, copy_first: Optional[Callable[[str], None]] = None) -> None:
        assert self.job is not None
        jf.save(self.jobfile, self.job, copy_first)
        self._run_recorded = True

    def _record_run(self) -> None:
        """Save this run's state (in progress, volumes pending, moves) before the run changes a
        drive or asks for one: done once, by the first save of the run.  A run stopped before
        that leaves the jobfile as it was, and every drive too."""
        if not self._run_recorded:
            self._save()

    def _finish_run(self) -> None:
        """The run is over: whatever is not, in its current version, on the volume its record
        names is listed as not saved (and so the run does not exit 0)."""
        assert self.job is not None
        run = self.job.run
        run.state = "done"
        run.finished = clock.now_iso()
        run.open_volume = None
        run.moves = {}
        cat = self.job.catalog
        self.summary.failed = [
            (cat.paths[i], self._why_unsaved(i)) for i in cat.unsaved() if i not in self.vanished
        ]
        self.job.failed = [[path, why] for path, why in self.summary.failed]

    def _why_unsaved(self, i: int) -> str:
        assert self.job is not None
        cat = self.job.catalog
        if i in self.failed:
            return self.failed[i]
        if cat.volumes[i] != NO_VOLUME:
            return f"volume {cat.volumes[i]} holds an older version; it was not updated"
        return "on no drive: it was not copied in this run"

    def _jobfile_folder(self) -> None:
        """The jobfile's folder: made if missing (and said), refused in one line if unusable."""
        folder = os.path.dirname(self.jobfile)
        if not os.path.isdir(folder):
            if os.path.lexists(folder):
                raise JobfileError(
                    f"the jobfile {self.opts.jobfile} cannot be kept in {folder}: it is not a folder; "
                    "give -f a path in a folder"
                )
            try:
                os.makedirs(folder)
            except OSError as err:
                raise JobfileError(
                    f"cannot make the jobfile's folder {folder} ({err.strerror}); create it, or "
                    "give -f a path in a writable folder"
                ) from None
            self.emit(ev.Note(f"made the folder {folder} for the jobfile"))

    def _plan_run(self, job: jf.Job, pending: set[int]) -> None:
        """The run's state and plan (the same for ``--dry-run``): a new run unless one is in
        progress, the volumes it must visit, the moves, where unplaced entries go."""
        if not job.run.in_progress:
            job.run = jf.RunState(
                number=job.run.number + 1,
                id=clock.new_id(),
                state="in-progress",
                started=clock.now_iso(),
            )
        job.run.pending_volumes = sorted(set(job.run.pending_volumes) | pending)
        if self.old_catalog is not None:
            old = self.old_catalog
            job.run.moves.update({job.catalog.paths[i]: old.paths[j] for i, j in self.changes.moved.items()})
        job.run.replace = sorted(set(job.run.replace) | set(self.opts.replace_volumes))
        self.targets = self._place()

    def dry_run(self) -> DryRun:
        """What a run would do, volume by volume; touches no drive and writes nothing.

        The same plan as the run's (placement, then :func:`plan_volume` for each volume to
        visit), fed with what each volume holds and offers by its record instead of by the
        drive: the run differs only where a drive differs from its record."""
        from .dryrun import dry_run_report

        sources = resolve_sources(self.opts.sources)
        _, job, pending = self._load_and_merge(sources)
        number = job.run.number if job.run.in_progress else job.run.number + 1
        plans: dict[int, VolumePlan] = {}
        if job.run.in_progress or pending or self._unplaced_exist():
            self._plan_run(job, pending)
            visit = set(self._pending_volumes()) | ({job.run.open_volume} if job.run.open_volume else set())
            for v in sorted(visit):
                rec = job.volumes[v]
                if rec.capacity == 0:
                    continue  # never finished: it is filled like a new drive
                plan = plans[v] = self._recorded_plan(rec)
                for i in plan.fill:
                    job.catalog.volumes[i] = v
                for i in plan.overflow:
                    job.catalog.volumes[i] = NO_VOLUME
        return dry_run_report(job, number, plans, list(self._unplaced()))

    def _recorded_plan(self, rec: jf.VolumeRecord) -> VolumePlan:
        """A volume's plan from its record: what the jobfile says it holds (an entry marked
        stale there in some other version), and the room the record gives it."""
        assert self.job is not None
        old = self.old_catalog
        held: dict[str, Entry] = {}
        if old is not None:
            for j in old.indexes_on(rec.number):
                e = old.entry(j)
                held[e.path] = e._replace(mtime_ns=-1) if old.stale[j] else e
        space = Space(
            free=rec.capacity - rec.used,
            block=rec.block_size,
            padding=self.opts.device_padding,
            volume_size=self.opts.volume_size,
            reserve=self._reserve,
        )
        return plan_volume(
            self.job.catalog,
            rec.number,
            held,
            {},
            space,
            rec.granularity_ns,
            self._candidates(rec.number, False),
            self.job.run.moves,
            comes_here=lambda i: i not in self.failed and self.targets.get(i, NEW_DRIVE) == rec.number,
        )

    def _pick_up_job(self, sources: Sources) -> None:
        """No jobfile: if a drive of a job of these very sources is at an output, carry on with
        that job from the drive's copy of its jobfile (the newest, if several drives are), so
        a lost jobfile or a command run from another folder does not start a second job that
        then refuses its own drives."""
        best: Optional[tuple[tuple, str, int]] = None
        for out in self.opts.outputs:
            copy = os.path.join(out, JOBCOPY)
            try:
                label = read_label(out)
                if label is None or not os.path.isfile(copy):
                    continue
                found = jf.load(copy)
            except MvcError:
                continue  # a damaged record is no job to carry on
            if found.job_id != label.job_id or found.root != sources.root:
                continue
            if sorted(found.sources) != sorted(sources.paths):
                continue
            age = (found.run.number, found.updated or "", len(found.run.done_volumes))
            if best is None or age > best[0]:
                best = (age, out, label.volume)
        if best is None:
            return
        _, out, volume = best
        try:
            atomic_write(self.jobfile, read_chunks(os.path.join(out, JOBCOPY)))
        except OSError as err:
            raise JobfileError(
                f"cannot write the jobfile {self.opts.jobfile} ({err.strerror}); give -f a writable place"
            ) from None
        self.emit(
            ev.Note(
                f"the jobfile {self.opts.jobfile} was missing: continuing the job from the copy on "
                f"volume {volume} at {out}"
            )
        )

    def _load_and_merge(self, sources: Sources) -> tuple[Optional[jf.Job], jf.Job, set[int]]:
        # The scan's helpers walk the tree while this process reads the jobfile, then it joins them.
        with Scan(
            sources,
            self.opts.exclude,
            lambda p, why: self.emit(ev.Skipped(p, why)),
            self.opts.one_file_system,
            min(self.opts.workers, usable_cpus()),
        ) as scanning:
            old = jf.load(self.jobfile) if os.path.exists(self.jobfile) else None
            if old is not None:
                self._check_same_job(old, sources)
                self.old_catalog = old.catalog
            catalog = scanning.result()
        self._emit_scan(catalog)
        job, pending = self._merge(old, sources, catalog)
        if self.opts.hash:  # every file on a drive gets its hash: visit those that lack some
            pending |= {v for v, rec in job.volumes.items() if rec.unhashed and not rec.forgotten}
        self.job = job
        self._reserve = metadata_reserve(catalog)
        pending |= self._forget_and_replace(job)
        if self.old_catalog is not None:
            ch = self.changes
            self.emit(
                ev.ChangesFound(
                    len(ch.new),
                    len(ch.changed),
                    len(ch.moved),
                    len(ch.deleted) - len(ch.moved),
                    sum(catalog.sizes[i] for i in ch.new) + sum(catalog.sizes[i] for i in ch.changed),
                    len(ch.modes),
                )
            )
        return old, job, pending

    def _forget_and_replace(self, job: jf.Job) -> set[int]:
        """``--forget-volume``: its files are placed again; ``--replace-volume``: a blank drive
        takes its place and receives its files.  Returns the volumes this makes pending."""
        for n in self.opts.forget_volumes + self.opts.replace_volumes:
            rec = job.volumes.get(n)
            if rec is None or rec.forgotten:
                known = ", ".join(str(v) for v, r in sorted(job.volumes.items()) if not r.forgotten) or "none"
                raise UsageError(f"there is no volume {n} in this job (volumes: {known})")
        for n in self.opts.forget_volumes:
            job.volumes[n].forgotten = True
            cat = job.catalog
            for i in cat.indexes_on(n):
                cat.volumes[i] = NO_VOLUME
        return set(self.opts.replace_volumes)

    def _drive_loop(self) -> None:
        assert self.job is not None
        queue = list(self.opts.outputs)
        last_output = queue[-1]
        finished: Optional[int] = None
        refusal: Optional[str] = None
        while self._work_remains():
            if not queue:
                wanted, next_volume, message = self._wanted(last_output)
                self.emit(ev.WaitingForDrive(last_output, message, tuple(wanted), next_volume))
                self._record_run()  # a --new-volume-script may read it
                self.swapper.request(
                    SwapRequest(last_output, message, finished, next_volume, self.jobfile, refusal)
                )
                queue = [last_output]
            out = queue.pop(0)
            last_output = out
            try:
                finished, new, progressed = self._update_drive(out)
                refusal = None
            except _Refused as why:
                refusal = str(why)
                self.emit(ev.DriveRefused(out, refusal))
                continue
            if new and not progressed and self._new_drive_needed():
                i = next(self._candidates(0, True))
                cat = self.job.catalog
                raise TooLargeError(
                    f"{cat.paths[i]} ({format_size(cat.sizes[i])}) does not fit on an empty volume "
                    f"(volume {finished} at {out} took nothing); leave it out with --exclude, "
                    "or use a bigger drive"
                )

    # -- merging the scan with the jobfile ----------------------------------------------

    def _check_same_job(self, old: jf.Job, sources: Sources) -> None:
        if old.root != sources.root or sorted(old.sources) != sorted(sources.paths):
            raise JobfileError(
                f"the jobfile {self.opts.jobfile} belongs to another job (sources {' '.join(old.sources)}); "
                "give the same sources, or use -f to name a new jobfile for this backup"
            )

    def _merge(self, old: Optional[jf.Job], sources: Sources, catalog: Catalog) -> tuple[jf.Job, set[int]]:
        """The new job: the fresh catalog, with each file's volume carried over from the jobfile.

        Returns the volumes that hold changed or deleted files.
        """
        opts = {
            "exclude": self.opts.exclude,
            "device_padding": self.opts.device_padding,
            "volume_size": self.opts.volume_size,
            "one_file_system": self.opts.one_file_system,
        }
        if old is None:
            job = jf.Job(
                job_id=clock.new_id(),
                root=sources.root,
                sources=list(sources.paths),
                options=opts,
                created=clock.now_iso(),
                catalog=catalog,
            )
            return job, set()

        def granularity(v: int) -> int:
            rec = old.volumes.get(v)
            return rec.granularity_ns if rec else 1

        self.changes = classify(old.catalog, catalog, granularity)
        pending = self.changes.volumes_touched(old.catalog, catalog)
        old.catalog = catalog
        old.options = opts
        return old, pending

    def _check_sizes(self, catalog: Catalog) -> None:
        """A file that no drive like the ones attached could hold stops the run before it starts."""
        limit = 0
        for out in self.opts.outputs:
            st = os.statvfs(out)
            total = st.f_blocks * st.f_frsize - self.opts.device_padding - self._reserve
            if self.opts.volume_size is not None:
                total = min(total, self.opts.volume_size)
            limit = max(limit, total)
        block = block_size(self.opts.outputs[0])
        if not catalog.sizes or round_up(max(catalog.sizes), block) <= limit:
            return  # the common case, without a loop in Python
        for i, size in enumerate(catalog.sizes):
            on_drive = round_up(size, block)
            if catalog.volumes[i] == NO_VOLUME and on_drive > limit:
                what = (
                    format_size(size)
                    if on_drive == size
                    else f"{format_size(size)}, {format_size(on_drive)} on the drive"
                )
                raise TooLargeError(
                    f"{catalog.paths[i]} ({what}) is larger than a whole volume "
                    f"({format_size(max(limit, 0))}); leave it out with --exclude, or use a bigger drive"
                )

    # -- what is left to do --------------------------------------------------------------

    def _place(self) -> dict[int, int]:
        """Where the unplaced entries go, from each volume's recorded room: the run's plan, and
        the one ``--dry-run`` shows.  A volume whose rewrites no longer fit it (a file that
        grew past the room left) gives some of them up first: they become unplaced and go
        elsewhere, their old copies are removed when the volume is visited."""
        assert self.job is not None
        job = self.job
        cat = job.catalog
        room: dict[int, int] = {}
        block: dict[int, int] = {}
        done = set(job.run.done_volumes) if job.run.in_progress else set()  # (a dry run sees the last run)
        for v, rec in job.volumes.items():
            if rec.forgotten or rec.capacity == 0 or v in done or v in job.run.replace:
                continue
            room[v] = rec.capacity - rec.used - self.opts.device_padding - self._reserve
            if self.opts.volume_size is not None:
                room[v] = min(room[v], self.opts.volume_size - rec.used)
            block[v] = rec.block_size
        if room:  # the records of what each volume keeps, as plan_volume counts them
            vols = cat.volumes
            for i, path in enumerate(cat.paths):
                v = vols[i]
                if v in room:
                    room[v] -= record_cost(path, False)
        old = self.old_catalog
        growth: dict[int, list[tuple[int, int]]] = {}  # volume -> (bytes grown, index) of its rewrites
        if old is not None:  # what the deletions free and the changes take, per volume
            moved_from = set(self.changes.moved.values())
            for j in self.changes.deleted:
                if old.volumes[j] in room and j not in moved_from:
                    room[old.volumes[j]] += round_up(old.sizes[j], block[old.volumes[j]])
            for i in self.changes.changed:
                was = old.index_of(cat.paths[i])
                v = cat.volumes[i]
                if v in room and was is not None:
                    grown = round_up(cat.sizes[i], block[v]) - round_up(old.sizes[was], block[v])
                    room[v] -= grown
                    growth.setdefault(v, []).append((grown, i))
            for i in self.changes.changed + list(self.changes.moved):  # journalled as they are written
                v = cat.volumes[i]
                if v in room:
                    room[v] -= record_cost(cat.paths[i], True) - record_cost(cat.paths[i], False)
        for v, rewrites in growth.items():
            # Those that grew most go first (a file that did not grow is not what overflowed).
            for _grown, i in sorted(rewrites, reverse=True):
                if room[v] >= 0:
                    break
                if cat.kinds[i] != FILE_CODE:
                    continue
                room[v] += round_up(cat.sizes[i], block[v])  # its old copy goes, the new one is not written
                cat.volumes[i] = NO_VOLUME
                cat.stale[i] = 0
                self.overflowed[i] = v
        return place_new(cat, self._unplaced(), room, block)

    def _unplaced(self) -> Iterator[int]:
        assert self.job is not None
        vols = self.job.catalog.volumes
        if NO_VOLUME not in vols:  # the common case after a volume, without a loop in Python
            return iter(())
        return (
            i
            for i in range(len(vols))
            if vols[i] == NO_VOLUME and i not in self.failed and i not in self.vanished
        )

    def _unplaced_exist(self) -> bool:
        return next(self._unplaced(), None) is not None

    def _candidates(self, volume: int, fresh: bool) -> Iterator[int]:
        """Unplaced entries this volume should take, in index order: those placed on it, or for a
        fresh volume (a blank drive, or one never finished) those that need a new drive."""
        want = NEW_DRIVE if fresh else volume
        return (i for i in self._unplaced() if self.targets.get(i, NEW_DRIVE) == want)

    def _new_drive_needed(self) -> bool:
        return next(self._candidates(0, True), None) is not None

    def _work_left(self) -> tuple[int, int]:
        assert self.job is not None
        sizes = self.job.catalog.sizes
        files = 0
        nbytes = 0
        for i in self._unplaced():
            files += 1
            nbytes += sizes[i]
        return files, nbytes

    def _pending_volumes(self) -> list[int]:
        assert self.job is not None
        run = self.job.run
        targeted = {self.targets.get(i, NEW_DRIVE) for i in self._unplaced()} - {NEW_DRIVE}
        return sorted((set(run.pending_volumes) | targeted) - set(run.done_volumes) - set(run.replace))

    def _work_remains(self) -> bool:
        assert self.job is not None
        run = self.job.run
        return bool(run.open_volume or run.replace or self._pending_volumes() or self._new_drive_needed())

    def _wanted(self, output: str) -> tuple[list[int], int, str]:
        assert self.job is not None
        run = self.job.run
        if run.open_volume:
            n = run.open_volume
            return [n], n, f"insert volume {n} (not finished yet) at {output}"
        wanted = self._pending_volumes()
        parts = []
        if wanted:
            parts.append(_volumes_text(wanted, "still "))
        blanks = [f"volume {v} (replacing the old drive)" for v in run.replace]
        if self._new_drive_needed():
            blanks.append(f"volume {self.job.next_volume_number()}")
        if blanks:
            parts.append(f"a blank drive is needed for {' and '.join(blanks)}")
        either = "either" if len(wanted) + len(blanks) > 1 else "it"
        message = "; ".join(parts) + f": insert {either} at {output}"
        if wanted:
            next_volume = wanted[0]
        elif run.replace:
            next_volume = run.replace[0]
        else:
            next_volume = self.job.next_volume_number()
        return wanted, next_volume, message

    # -- one drive -------------------------------------------------------------------

    def _update_drive(self, output: str) -> tuple[int, bool, bool]:
        """Bring one drive up to date; returns (volume number, was blank, wrote anything)."""
        assert self.job is not None
        job = self.job
        missing = self._no_drive_at(output)
        if missing:
            raise _Refused(missing)
        drive = Drive(output)
        try:
            drive.open()
        except OSError as err:
            raise drive_error(output, err) from None
        try:
            number, new = self._identify(drive)
            self._record_run()
            rec = job.volumes[number]
            st = os.statvfs(output)
            self.emit(ev.VolumeMounted(number, output, new, st.f_bavail * st.f_frsize, rec.uuid))
            drive.prepare()
            # Files already on a drive being labelled, listed while it holds nothing of ours
            # (walking it after a million were copied would cost seconds and a set of them).
            there_before = _files_on(output) if new else {}
            job.run.open_volume = number
            fresh = new or rec.capacity == 0  # a blank drive, or one never finished
            plan = self._plan(drive, rec, fresh)
            self.actions.setdefault(
                number, {"copied": [], "rewritten": [], "renamed": [], "deleted": [], "chmod": []}
            )
            self._recopy = set(plan.recopy)
            self.emit(
                ev.VolumePlanned(
                    number,
                    len(plan.keep),
                    len(plan.purge),
                    len(plan.writes),
                    sum(job.catalog.sizes[i] for i in plan.writes),
                    plan.last_index,
                )
            )
            before = (self.summary.copied_files, self.summary.copied_bytes)
            failed_before = len(self.failed) + len(self.vanished)
            filled = self._apply(drive, rec, plan, bare=new and not there_before)
            # It could not take all it was meant to: new entries left, rewrites given up.
            full = filled or bool(plan.overflow) or next(self._candidates(number, fresh), None) is not None
            if full:
                self.emit(ev.VolumeFull(number))
            if there_before:
                escaped = {stored: path for path, stored in drive.stored.names.items() if stored}
                # Not ours: what was there and did not turn out to be a copy of ours (adopted).
                foreign = [
                    size for p, size in there_before.items() if escaped.get(p, p) not in drive.contents
                ]
                if foreign:
                    self.emit(ev.ForeignData(number, len(foreign), sum(foreign)))
            self._close_volume(drive, rec, full, before)
            progressed = (
                bool(plan.keep)
                or self.summary.copied_files > before[0]
                or len(self.failed) + len(self.vanished) > failed_before
            )
            return number, new, progressed
        finally:
            drive.close()

    def _no_drive_at(self, output: str) -> Optional[str]:
        """A job whose volumes are drives never takes a bare mount point (a plain folder on the
        filesystem of its parent) for one: that is a bay with no drive in it, and writing
        there would fill the server's own disk."""
        assert self.job is not None
        if is_mount_point(output) or not any(
            rec.mounted and not rec.forgotten for rec in self.job.volumes.values()
        ):
            return None
        return f"no drive is mounted at {output} (it is a plain folder on the filesystem of its parent)"

    def _identify(self, drive: Drive) -> tuple[int, bool]:
        """Which volume the drive is, from its label; label a blank drive.  Raises _Refused."""
        job = self.job
        assert job is not None
        run = job.run
        label = drive.label
        if label is None:
            ident = filesystem_id(drive.root)
            for v in run.done_volumes:
                if job.volumes[v].fs_id == ident:
                    raise _Refused(f"it looks like volume {v} (finished in this run) with its label removed")
            if run.open_volume:
                # A crash between recording a new volume and labelling its drive leaves a volume
                # with nothing on record: a blank drive may take its place (under a new id, so a
                # drive labelled in that window is later refused as an old copy).  Once its
                # drive is labelled (and so may hold files no record names yet), only that
                # drive finishes it.
                opened = job.volumes[run.open_volume]
                if opened.labelled or job.catalog.volumes.count(run.open_volume):
                    raise _Refused(f"it is a blank drive, but volume {run.open_volume} is not finished")
                number = run.open_volume
            elif run.replace:
                number = run.replace[0]  # --replace-volume: the blank drive becomes that volume
            elif not self._new_drive_needed():
                wanted = self._pending_volumes()
                if wanted:
                    raise _Refused(f"it is a blank drive, but {_volumes_text(wanted)}, not a new one")
                raise _Refused("it is a blank drive, but no new volume is needed")
            else:
                number = job.next_volume_number()
            caps = self._probe(drive)
            rec = jf.VolumeRecord(
                number=number,
                uuid=clock.new_id(),
                created=clock.now_iso(),
                granularity_ns=caps.granularity_ns,
                block_size=block_size(drive.root),
                fs_id=ident,
                capabilities=caps.to_json(),
                mounted=is_mount_point(drive.root),
            )
            job.volumes[number] = rec
            if not rec.mounted:
                self.emit(
                    ev.Note(
                        f"{drive.root} is a folder, not a mounted drive: volume {number} is that folder "
                        "(a job whose volumes are drives refuses a bare mount point)"
                    )
                )
            run.open_volume = number
            if number in run.replace:
                run.replace.remove(number)
                run.pending_volumes = sorted(set(run.pending_volumes) | {number})
            self._save()  # before the label: a crash in between leaves a volume with no files
            drive.write_label(Label(job.job_id, number, rec.uuid, rec.created, job.root))
            rec.labelled = True
            self._save()  # after it: from now on only this drive may finish the volume
            return number, True
        if label.job_id != job.job_id:
            raise _Refused(
                f"it is volume {label.volume} of another job (job {label.job_id[:8]}, backing up "
                f"{label.job_root or 'unknown sources'}); insert a drive of this job or a blank one"
            )
        number = label.volume
        known = job.volumes.get(number)
        if known is not None and known.forgotten and known.uuid == label.volume_uuid:
            raise _Refused(
                f"volume {number} was given up (--forget-volume) and its files placed elsewhere; "
                "set this drive aside, or wipe it to use it as a blank one"
            )
        if number in run.replace and known is not None and known.uuid == label.volume_uuid:
            raise _Refused(f"volume {number} is being replaced (--replace-volume): insert a blank drive")
        if known is not None and known.uuid != label.volume_uuid:
            raise _Refused(
                f"it says it is volume {number}, but the jobfile knows volume {number} as another "
                "drive (different volume id); it may be an old copy: set it aside"
            )
        if number in run.done_volumes:
            raise _Refused(f"volume {number} was already updated in this run")
        if run.open_volume and run.open_volume != number:
            raise _Refused(f"it is volume {number}, but volume {run.open_volume} is not finished")
        if known is None:
            # The jobfile lags behind the drive (a crash right after labelling): learn it back.
            caps = self._probe(drive)
            known = job.volumes[number] = jf.VolumeRecord(
                number=number,
                uuid=label.volume_uuid,
                created=label.created,
                granularity_ns=caps.granularity_ns,
                block_size=block_size(drive.root),
                fs_id=filesystem_id(drive.root),
                capabilities=caps.to_json(),
                mounted=is_mount_point(drive.root),
                labelled=True,
            )
        elif known.capabilities is None:
            known.capabilities = self._probe(drive).to_json()
        if known.mounted is None:  # a volume labelled before this was recorded
            known.mounted = is_mount_point(drive.root)
        drive.caps = Capabilities.from_json(known.capabilities)
        return number, False

    def _probe(self, drive: Drive) -> Capabilities:
        """What the drive can hold; it stays the drive's answer for as long as the volume lives."""
        try:
            os.makedirs(drive.tmpdir, exist_ok=True)
            caps = probe(drive.root, drive.tmpdir)
        except OSError as err:
            raise drive_error(drive.root, err) from None
        drive.caps = caps
        return caps

    def _plan(self, drive: Drive, rec: jf.VolumeRecord, fresh: bool) -> VolumePlan:
        assert self.job is not None
        st = os.statvfs(drive.root)
        free = st.f_bavail * st.f_frsize
        if not fresh:
            # One capacity model with --dry-run: what the record says the volume offers (our
            # files and records, see _close_volume), unless the drive now has less.
            free = min(rec.capacity - rec.used, free + drive.records_bytes(rec.block_size))
        space = Space(
            free=free,
            block=rec.block_size,
            padding=self.opts.device_padding,
            volume_size=self.opts.volume_size,
            reserve=self._reserve,
            inodes=st.f_favail if st.f_files else None,
        )
        dirty: dict[str, int] = {}
        for path in drive.dirty:
            stored = drive.on_drive(path)
            try:
                dirty[path] = os.lstat(drive.path(stored)).st_size if stored else 0
            except OSError:
                dirty[path] = 0  # never written, or already gone
        want = NEW_DRIVE if fresh else rec.number
        return plan_volume(
            self.job.catalog,
            rec.number,
            drive.contents,
            dirty,
            space,
            rec.granularity_ns,
            self._candidates(rec.number, fresh),
            self.job.run.moves,
            comes_here=lambda i: i not in self.failed and self.targets.get(i, NEW_DRIVE) == want,
        )

    def _apply(self, drive: Drive, rec: jf.VolumeRecord, plan: VolumePlan, bare: bool = False) -> bool:
        """Carry out ``plan`` on the drive.  ``bare``: a blank drive with no files or symlinks
        at all (folders at most), where nothing can be in the way of a new entry.

        Order: files and symlinks that go are removed first (a file that became a folder
        leaves its place), then moves are renamed, then emptied folders removed (a folder that
        became a file leaves its place), then modes set, then everything new or changed is
        written.  Nothing is written, removed or changed through a symlink or file that is not
        ours (``safe`` caches which folders on the drive are real ones).  Returns whether the
        drive filled up during the copy."""
        job = self.job
        assert job is not None
        cat = job.catalog
        number = rec.number
        for i in plan.keep:
            cat.volumes[i] = number
        places = Places(drive.root, lambda err: drive_error(drive.root, err))
        folders = {p for p in plan.purge if _held_kind(drive, p) == DIR}
        self._purge(drive, plan.volume, [p for p in plan.purge if p not in folders], places)
        again = self._rename(drive, plan, places)
        self._purge(drive, plan.volume, sorted(folders), places)
        self._chmod(drive, plan, places)
        again += self._hash_kept(drive, rec, plan, places)
        for i in plan.overflow:  # it no longer fits here: its old copy went with the purge
            cat.volumes[i] = NO_VOLUME
            cat.stale[i] = 0
            self.targets[i] = NEW_DRIVE
        to_copy: list[int] = []
        adopted: list[Entry] = []
        too_big = drive.caps.max_file
        recorded: list[Entry] = []
        blocked: set[str] = set()  # told once each
        for i in sorted(plan.writes + again):
            path = cat.paths[i]
            if too_big is not None and cat.sizes[i] > too_big:
                self._fail(
                    i,
                    f"larger than volume {number}'s filesystem can hold in one file ({format_size(too_big)})",
                )
                continue
            stored = drive.name_for(path, cat.kind(i))
            if stored is None:  # the drive cannot hold it (a symlink on exFAT): kept in the records
                recorded.append(cat.entry(i))
                cat.volumes[i] = number
                cat.stale[i] = 1  # until the drive's commit settles it
                continue
            if not bare:
                blocker = places.blocker(stored)
                if blocker is not None:
                    what = places.what_is(blocker)
                    self._fail(
                        i,
                        f"a {what} not put there by multivolumecopy is in the way at "
                        f"{drive.path(blocker)} (volume {number}); move it away and run the same "
                        "command again",
                        tell=blocker not in blocked,
                    )
                    blocked.add(blocker)
                    continue
            if bare or path in drive.contents or path in drive.dirty:
                # (on a bare drive, a folder in the way of a file makes its rename fail: told then)
                to_copy.append(i)
                continue
            occ = places.occupant(stored)
            if occ is None or (cat.kinds[i] == DIR_CODE and stat.S_ISDIR(occ.st_mode)):
                to_copy.append(i)  # (a folder there already, made by a move a moment ago: kept)
            elif self._adopt(drive, occ, i, rec.granularity_ns):
                adopted.append(cat.entry(i)._replace(sha256=self._adopted_sha))
                cat.volumes[i] = number
                cat.stale[i] = 1  # until the drive's commit settles it
                self.emit(ev.Adopted(number, path))
            else:
                self._fail(
                    i,
                    f"a {places.what_is(stored)} not put there by multivolumecopy is already at "
                    f"{drive.path(stored)} (volume {number}); move it away and run the same command again",
                )
        if adopted or recorded:
            drive.put(adopted + recorded)
            drive.sync_point()
        drive.intent([cat.paths[i] for i in to_copy])
        return bool(to_copy) and self._copy(drive, rec, to_copy)

    def _hash_kept(self, drive: Drive, rec: jf.VolumeRecord, plan: VolumePlan, places: Places) -> list[int]:
        """Every file on a visited drive gets its SHA-256: a kept file that has none (adopted by
        an older version, or copied with --no-hash) is read on the drive and in the sources, and
        its hash recorded when both agree; one that differs is written again (returned)."""
        if not self.opts.hash:
            return []
        unhashed = drive.contents.unhashed_files()
        if not unhashed:
            return []
        assert self.job is not None
        cat = self.job.catalog
        hashed: list[Entry] = []
        again: list[int] = []
        for i in plan.keep:
            path = cat.paths[i]
            if path not in unhashed:
                continue
            stored = drive.on_drive(path)
            if stored is None or places.blocker(stored) is not None:
                continue
            there = _sha256_of(drive.path(stored))
            if there is not None and there == _sha256_of(os.path.join(self.job.root, path)):
                hashed.append(drive.contents[path]._replace(sha256=there))
            else:
                again.append(i)
                self._recopy.add(i)
        if hashed:
            drive.put(hashed)
        return again

    def _adopt(self, drive: Drive, occ: os.stat_result, i: int, granularity: int) -> bool:
        """Whether what is already at entry ``i``'s place on the drive (a drive seeded by
        ``cp -a``, or a copy a killed run finished and never recorded) is a copy of it: the
        same kind, size and time, and for a file the same bytes as the source (both read and
        hashed, so the drive's record gets its SHA-256 like any copy)."""
        assert self.job is not None
        cat = self.job.catalog
        self._adopted_sha = None
        if not _adoptable(occ, cat, i, drive, granularity):
            return False
        if cat.kinds[i] != FILE_CODE:
            return True
        there = _sha256_of(drive.path(drive.on_drive(cat.paths[i]) or cat.paths[i]))
        if there is None or there != _sha256_of(os.path.join(self.job.root, cat.paths[i])):
            return False
        self._adopted_sha = there
        return True

    def _fail(self, i: int, why: str, tell: bool = True) -> None:
        """An entry that cannot be saved in this run: not offered again, summed up, told."""
        assert self.job is not None
        self.failed[i] = why
        if tell:
            self.emit(ev.FileFailed(self.job.catalog.paths[i], why))

    def _chmod(self, drive: Drive, plan: VolumePlan, places: Places) -> None:
        """Entries whose mode alone changed in the source (a chmod) get the new mode on the
        drive, their data left alone; the records follow.  A drive that keeps no modes (exFAT)
        has it in its records only, for ``--restore``."""
        if not plan.chmod:
            return
        assert self.job is not None
        cat = self.job.catalog
        updated: list[Entry] = []
        for i in plan.chmod:
            path = cat.paths[i]
            held = drive.contents[path]
            stored = drive.on_drive(path)
            if stored is not None:
                if places.blocker(stored) is not None:
                    continue  # not reachable without going through something not ours: stays stale
                _set_mode(drive, drive.path(stored), cat.modes[i])
            updated.append(held._replace(mode=cat.modes[i]))
            self.actions[plan.volume]["chmod"].append(path)
        drive.put(updated)

    def _rename(self, drive: Drive, plan: VolumePlan, places: Places) -> list[int]:
        """Files moved in the source are moved on the drive, once the drive's copy is known to
        hold the source file's bytes (its recorded SHA-256 against the source, read now: a
        new file can have a deleted one's inode, size and time).  Returns the entries to write
        after all; the old copies of those are removed."""
        if not plan.rename:
            return []
        assert self.job is not None
        cat = self.job.catalog
        drive.intent([cat.paths[k] for _, k in plan.rename])
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
                or held.sha256 != _sha256_of(os.path.join(self.job.root, cat.paths[k]))
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
            except FileNotFoundError:
                again.append(k)
                continue
            except OSError as err:
                raise drive_error(drive.root, err) from None
            if held.mode != cat.modes[k]:  # moved and chmod-ed
                _set_mode(drive, drive.path(dst), cat.modes[k])
            moved.append(cat.entry(k)._replace(sha256=held.sha256))
            gone.append(old)
            cat.volumes[k] = plan.volume
            self.actions[plan.volume]["renamed"].append([old, cat.paths[k]])
        drive.put(moved)
        drive.record_removed(gone)
        self._remove_empty_parents(drive, gone)
        if moved:
            self.emit(ev.Renamed(plan.volume, tuple((o, e.path) for o, e in zip(gone, moved))))
        self._purge(drive, plan.volume, unconfirmed, places)
        return again

    def _purge(self, drive: Drive, volume: int, paths: list[str], places: Places) -> None:
        """Remove entries of ours from the drive.  A folder is removed only once empty: what
        is left in it is not ours and stays (the folder with it).  Nothing is removed through
        a symlink or file that took a folder's place."""
        if not paths:
            return
        removed: list[str] = []
        dirs: list[str] = []
        for path in paths:
            held = drive.contents.get(path)
            stored = drive.on_drive(path)
            if stored is None or places.blocker(stored) is not None:
                removed.append(path)  # held only in the records, or not reachable as ours
                continue
            full = drive.path(stored)
            if held is not None and held.kind == DIR:
                dirs.append(path)
                continue
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                removed.append(path)
                continue
            except OSError as err:
                raise drive_error(drive.root, err) from None
            try:
                if stat.S_ISDIR(st.st_mode):
                    dirs.append(path)
                    continue
                os.unlink(full)
            except OSError as err:
                raise drive_error(drive.root, err) from None
            removed.append(path)
        for path in depth_first(dirs):
            try:
                os.rmdir(drive.path(drive.on_drive(path) or path))
            except FileNotFoundError:
                pass
            except OSError:
                pass  # not empty (something not ours lives there), or not a folder: left alone
            removed.append(path)
        faults.point("after-purge")
        self.actions[volume]["deleted"].extend(removed)
        drive.record_removed(removed)
        self._remove_empty_parents(drive, removed)
        self.emit(ev.Purged(volume, len(removed), tuple(removed)))

    def _remove_empty_parents(self, drive: Drive, removed: list[str]) -> None:
        """Directories left empty by the purge, that nothing of ours needs, go too."""
        needed = ancestors(drive.contents) | set(drive.contents)
        for d in depth_first(ancestors(removed) - needed):
            try:
                os.rmdir(drive.path(drive.on_drive(d) or d))
            except OSError:
                pass

    def _copy(self, drive: Drive, rec: jf.VolumeRecord, to_copy: list[int]) -> bool:
        """Copy through the pool; returns whether the drive ran out of space."""
        # Imported here: a run with nothing to copy starts faster without multiprocessing.
        from .copier import CopyItem, Status, WorkerDied, make_batches
        from .copier import CopyPool as Pool

        job = self.job
        assert job is not None
        cat = job.catalog
        number = rec.number
        if self.pool is None:
            self.pool = Pool(self.opts.workers, self.opts.bwlimit, self.opts.idle_io)
        followers = self._linkable(drive, to_copy)
        paths, kinds, sizes, mtimes, modes, targets = (
            cat.paths,
            cat.kinds,
            cat.sizes,
            cat.mtimes,
            cat.modes,
            cat.targets,
        )
        renamed = drive.stored or drive.caps.forbidden or not drive.caps.trailing_dot_space
        item = partial(tuple.__new__, CopyItem)
        items: Iterator[CopyItem] = (
            item(
                (
                    i,
                    paths[i],
                    chr(kinds[i]),
                    sizes[i],
                    mtimes[i],
                    modes[i],
                    targets.get(i),
                    (drive.on_drive(paths[i]) or paths[i]) if renamed else None,
                )
            )
            for i in to_copy
            if i not in followers
        )
        batches = make_batches(
            items,
            job.root,
            drive.root,
            drive.tmpdir,
            f"{rec.uuid}:{time.time_ns()}",
            self.opts.hash,
            drive.root_id,
        )
        state = {"full": False, "drive_error": "", "since_sync": 0, "last_sync": self.clock()}
        copied, rewritten = self.actions[number]["copied"], self.actions[number]["rewritten"]

        def handle(done: BatchDone) -> bool:
            puts: list[Entry] = []
            nbytes = 0
            told = 0
            for i, status, size, mtime_ns, detail, reported, sha256 in done.outcomes:
                if status == Status.OK:
                    if kinds[i] == FILE_CODE:  # as copied: the source may have changed since the scan
                        sizes[i] = size
                        mtimes[i] = mtime_ns
                        puts.append(Entry(paths[i], FILE, size, mtime_ns, modes[i], targets.get(i), sha256))
                    else:
                        puts.append(cat.entry(i))
                    cat.volumes[i] = number
                    cat.stale[i] = 1  # until the drive's commit settles it
                    nbytes += size
                    (rewritten if i in self._recopy else copied).append(cat.paths[i])
                    told += reported
                elif status == Status.NO_SPACE:
                    state["full"] = True
                elif status == Status.DRIVE_ERROR:
                    state["drive_error"] = detail
                elif status == Status.FAILED:
                    self._fail(i, detail)
                elif status == Status.VANISHED:
                    self.vanished.add(i)
                    self.emit(ev.Skipped(cat.paths[i], detail))
                elif status == Status.CONFLICT:
                    where = drive.path(drive.on_drive(paths[i]) or paths[i])
                    self._fail(
                        i,
                        f"something not put there by multivolumecopy is in its way at {where} "
                        f"(volume {number}); move it away and run the same command again",
                    )
                else:
                    assert status == Status.NOT_DONE, status
            if puts:
                drive.put(puts)
                self.summary.copied_files += len(puts)
                self.summary.copied_bytes += nbytes
                self.written[number] = self.written.get(number, 0) + nbytes
                self.emit(
                    ev.Copied(number, len(puts), nbytes, max(nbytes - told, 0), tuple(e.path for e in puts))
                )
                state["since_sync"] += nbytes
                now = self.clock()
                if state["since_sync"] >= SYNC_EVERY_BYTES or now - state["last_sync"] >= SYNC_EVERY_SECONDS:
                    drive.sync_point()
                    state["since_sync"] = 0
                    state["last_sync"] = now
            return not state["full"] and not state["drive_error"]

        try:
            with Writeback(drive.root):
                self.pool.run(batches, handle, lambda n: self.emit(ev.BytesCopied(n)))
        except KeyboardInterrupt:
            self._save_progress(drive)
            raise Interrupted(
                "interrupted; everything copied so far is kept: run the same command again to continue"
            ) from None
        except WorkerDied as err:
            self._save_progress(drive)
            raise DriveError(
                f"{err}; what was copied is kept: run the same command again to continue"
            ) from None
        if followers and not state["drive_error"]:
            self._link_followers(drive, number, followers)
        if state["drive_error"]:
            self._save_progress(drive, commit=False)
            raise DriveError(
                f"the drive at {drive.root} failed ({state['drive_error']}); what was committed is kept: "
                "check or reconnect the drive and run the same command again"
            )
        return bool(state["full"])

    def _linkable(self, drive: Drive, to_copy: list[int]) -> dict[int, int]:
        """Hard-link followers whose leader is, or is about to be, on this drive: follower -> leader."""
        assert self.job is not None
        cat = self.job.catalog
        if not cat.targets:
            return {}
        copying = set(to_copy)
        found = {}
        for i in to_copy:
            leader = cat.leader(i)
            if leader is not None and (leader in copying or cat.paths[leader] in drive.contents):
                found[i] = leader
        return found

    def _link_followers(self, drive: Drive, number: int, followers: dict[int, int]) -> None:
        """Link each follower to its leader on the drive (temp name, then rename, as for copies)."""
        assert self.job is not None
        cat = self.job.catalog
        puts: list[Entry] = []
        rec = self.job.volumes[number]
        linked: list[int] = []
        for i, leader in followers.items():
            held = drive.contents.get(cat.paths[leader])
            if held is None or cat.volumes[leader] != number or not self._current_on(drive, rec, leader):
                continue  # the leader did not make it onto this drive: the follower waits too
            tmp = os.path.join(drive.tmpdir, f"link-{i}")
            final = drive.path(drive.on_drive(cat.paths[i]) or cat.paths[i])
            try:
                os.link(drive.path(drive.on_drive(held.path) or held.path), tmp)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.rename(tmp, final)
            except OSError as err:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                if is_no_space(err) or err.errno in (errno.EMLINK, errno.EPERM, errno.EOPNOTSUPP):
                    continue  # a drive that cannot link (or is full): the next volume copies it
                if err.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    self._fail(
                        i,
                        f"something not put there by multivolumecopy is in its way at {final} "
                        f"(volume {number}); move it away and run the same command again",
                    )
                    continue
                raise drive_error(drive.root, err) from None
            puts.append(held._replace(path=cat.paths[i], target=cat.paths[leader]))
            linked.append(i)
            cat.volumes[i] = number
            cat.stale[i] = 1  # until the drive's commit settles it
        if puts:
            drive.put(puts)
            self.summary.copied_files += len(puts)
            for i in linked:
                self.actions[number]["rewritten" if i in self._recopy else "copied"].append(cat.paths[i])
            self.emit(ev.Copied(number, len(puts), 0, 0, tuple(e.path for e in puts)))

    def _save_progress(self, drive: Drive, commit: bool = True) -> None:
        """On the way out of an interrupted volume: commit the drive, then the jobfile."""
        assert self.job is not None
        if commit:
            try:
                drive.mark_unfinished()
                drive.commit(self.job.run.number)
            except (DriveError, OutputError):
                pass  # the journal still holds what a re-run needs
            else:
                rec = self.job.volumes[drive.label.volume] if drive.label else None
                if rec is not None:
                    self._settle(drive, rec)
        self._save()

    def _close_volume(self, drive: Drive, rec: jf.VolumeRecord, full: bool, before: tuple[int, int]) -> None:
        job = self.job
        assert job is not None
        cat = job.catalog
        self._give_up_unwritten(drive, rec, full)
        self._set_dir_metadata(drive)
        drive.commit(job.run.number, (p for p, v in zip(cat.paths, cat.volumes) if v == rec.number))
        self._settle(drive, rec)
        for i, v in self.targets.items():
            if v == rec.number and cat.volumes[i] == NO_VOLUME:
                self.targets[i] = NEW_DRIVE
        indexes = cat.indexes_on(rec.number)
        rec.unhashed = len(drive.contents.unhashed_files())
        rec.used = drive.used_bytes(rec.block_size)
        rec.files = len(indexes)
        rec.last_run = job.run.number
        rec.updated = clock.now_iso()
        st = os.statvfs(drive.root)
        # What the volume offers to our files and our records: free space plus both (the sum
        # stays when the records are rewritten below, larger or smaller).
        rec.capacity = rec.used + st.f_bavail * st.f_frsize + drive.records_bytes(rec.block_size)
        job.run.done_volumes.append(rec.number)
        job.run.open_volume = None
        if not self._work_remains():
            self._finish_run()  # in the same save (and so in the drive's copy of the jobfile)
        copied = [True]

        def copy_to_drive(new_jobfile: str) -> None:
            copied[0] = drive.write_jobcopy(new_jobfile)

        # The drive's copy first: a crash between the two leaves the jobfile saying the volume
        # is open (so it is visited again), never a drive whose copy is older than its state.
        self._save(copy_to_drive)
        if not copied[0]:
            why = f"no room for the jobfile copy on volume {rec.number} (its older copy was removed)"
            self.emit(ev.Skipped(".mvcopy-jobdata.json", why))
        try:
            drive.write_record(CHANGES, stream(self._report(only=rec.number)))
        except OSError as err:
            if not is_no_space(err):
                raise drive_error(drive.root, err) from None
        done = ev.VolumeDone(
            volume=rec.number,
            output=drive.root,
            files=len(indexes),
            bytes=sum(cat.sizes[i] for i in indexes),
            copied_files=self.summary.copied_files - before[0],
            copied_bytes=self.summary.copied_bytes - before[1],
            ranges=tuple(index_ranges(indexes)),
            full=full,
        )
        self.summary.volumes.append(done)
        self.emit(done)
        limits = drive.caps.limits()
        if limits:
            renamed = sum(1 for p, n in drive.stored.names.items() if n and p in drive.contents)
            recorded = sum(1 for p, n in drive.stored.names.items() if n == "" and p in drive.contents)
            self.emit(ev.Adapted(rec.number, tuple(limits), renamed, recorded))

    def _give_up_unwritten(self, drive: Drive, rec: jf.VolumeRecord, full: bool) -> None:
        """Before the commit: a rewrite the full drive could not take gives up its place here
        (its old copy is removed, it goes to another drive), and the old copy of a file that
        vanished from the sources goes.  A rewrite that failed for another reason (an
        unreadable source, something in the way) keeps its old copy, marked stale."""
        assert self.job is not None
        cat = self.job.catalog
        gone: list[str] = []
        for i in cat.stale_indexes():
            if cat.volumes[i] != rec.number or (i in self.failed and i not in self.vanished):
                continue
            if i not in self.vanished and (not full or self._current_on(drive, rec, i)):
                continue
            if cat.paths[i] in drive.contents:
                gone.append(cat.paths[i])
            cat.volumes[i] = NO_VOLUME
            cat.stale[i] = 0
            if i not in self.vanished:
                self.targets[i] = NEW_DRIVE
        if gone:
            self._purge(drive, rec.number, gone, Places(drive.root, lambda err: drive_error(drive.root, err)))

    def _settle(self, drive: Drive, rec: jf.VolumeRecord) -> None:
        """After the commit, the one place that records what the volume holds: each entry on
        it is current or stale by what the drive committed, and one it does not hold at all
        (a drive holding less than its record said) is on no volume and goes elsewhere."""
        assert self.job is not None
        cat = self.job.catalog
        held = drive.contents
        for i in cat.indexes_on(rec.number):
            if cat.paths[i] not in held:
                cat.volumes[i] = NO_VOLUME
                cat.stale[i] = 0
                if i not in self.failed:
                    self.targets[i] = NEW_DRIVE
            else:
                cat.stale[i] = 0 if self._current_on(drive, rec, i) else 1

    def _current_on(self, drive: Drive, rec: jf.VolumeRecord, i: int) -> bool:
        """Whether the drive's record of entry ``i`` is of its current version, mode included."""
        assert self.job is not None
        cat = self.job.catalog
        return drive.contents.current(
            cat.paths[i],
            chr(cat.kinds[i]),
            cat.sizes[i],
            cat.mtimes[i],
            cat.modes[i],
            cat.targets.get(i) if cat.kinds[i] == LINK_CODE else None,
            rec.granularity_ns,
        )

    def _report(self, only: Optional[int] = None) -> dict:
        """The change report: what changed in the sources, and what each volume had done."""
        assert self.job is not None
        cat, old, ch = self.job.catalog, self.old_catalog, self.changes
        vols = {str(v): a for v, a in sorted(self.actions.items()) if only is None or v == only}
        doc = {
            "format": "multivolumecopy-changes",
            "version": 1,
            "job_id": self.job.job_id,
            "run": self.job.run.number,
            "written": clock.now_iso(),
            "counts": {
                "new": len(ch.new),
                "changed": len(ch.changed),
                "moved": len(ch.moved),
                "deleted": len(ch.deleted) - len(ch.moved),
                "bytes_written": sum(n for v, n in self.written.items() if only is None or v == only),
            },
            "volumes": vols,
        }
        if only is None:
            moved_from = set(ch.moved.values())
            doc["changes"] = {
                "new": [[cat.paths[i], cat.sizes[i]] for i in ch.new],
                "changed": [[cat.paths[i], cat.sizes[i], cat.volumes[i]] for i in ch.changed],
                "moved": [
                    [old.paths[j], cat.paths[i], cat.sizes[i], old.volumes[j]]
                    for i, j in ch.moved.items()
                    if old is not None
                ],
                "deleted": [
                    [old.paths[j], old.sizes[j], old.volumes[j]]
                    for j in ch.deleted
                    if old is not None and j not in moved_from
                ],
            }
        return doc

    def _write_report(self) -> None:
        """Next to the jobfile: ``JOBFILE.changes.json``, for the last run that wrote anything."""
        if self.job is None or not self.actions:
            return
        atomic_write(self.jobfile + ".changes.json", stream(self._report()))

    def _set_dir_metadata(self, drive: Drive) -> None:
        """Directories get their source's mode and mtime once their contents are written (never
        through a symlink or file that took a folder's place)."""
        assert self.job is not None
        cat = self.job.catalog
        dirs = ancestors(drive.contents)
        dirs.update(drive.contents.paths_of_kind(DIR))
        dir_code = ord(DIR)
        # Folders only: a map of every path would cost 100 bytes an entry of the catalog.
        index = {cat.paths[i]: i for i, k in enumerate(cat.kinds) if k == dir_code}
        places = Places(drive.root, lambda err: drive_error(drive.root, err))
        for path in depth_first(dirs):
            i = index.get(path)
            if i is None or path.startswith(RESERVED_PREFIX):
                continue
            stored = drive.on_drive(path) or path
            full = drive.path(stored)
            try:
                if places.blocker(stored) is not None or not stat.S_ISDIR(os.lstat(full).st_mode):
                    continue
                os.chmod(full, cat.modes[i])
                os.utime(full, ns=(cat.mtimes[i], cat.mtimes[i]))
            except FileNotFoundError:
                continue
            except OSError as err:
                if err.errno not in KEEPS_NO_MODES:
                    raise drive_error(drive.root, err) from None

    def _emit_scan(self, catalog: Catalog) -> None:
        kinds = catalog.kinds
        self.emit(
            ev.ScanDone(
                files=kinds.count(ord(FILE)),
                dirs=kinds.count(ord(DIR)),
                links=kinds.count(ord(LINK)),
                bytes=catalog.total_bytes(),
            )
        )


@contextlib.contextmanager
def _jobfile_lock(jobfile: str, given: str) -> Iterator[None]:
    """The jobfile's lock, with a one-line error where its folder refuses a file."""
    lock = FileLock(jobfile + ".lock", f"the jobfile {given}")
    try:
        lock.acquire()
    except OSError as err:
        raise JobfileError(
            f"cannot write beside the jobfile {given} ({err.strerror}); give -f a path in a writable folder"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _volumes_text(wanted: list[int], still: str = "") -> str:
    """``[1]`` -> "volume 1 needs", ``[1, 4, 5]`` -> "volumes 1, 4 and 5 need" (then "updating")."""
    names = (
        " and ".join(map(str, wanted))
        if len(wanted) < 3
        else (", ".join(map(str, wanted[:-1])) + f" and {wanted[-1]}")
    )
    if len(wanted) == 1:
        return f"volume {names} {still}needs updating"
    return f"volumes {names} {still}need updating"


def _files_on(root: str) -> dict[str, int]:
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


def _held_kind(drive: Drive, path: str) -> Optional[str]:
    held = drive.contents.get(path)
    return None if held is None else held.kind


def _sha256_of(path: str) -> Optional[str]:
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


def _set_mode(drive: Drive, full: str, mode: int) -> None:
    """chmod on the drive (never a symlink: their modes are not compared).  A drive that
    keeps no modes refuses quietly: its records keep the mode."""
    try:
        os.chmod(full, mode)
    except FileNotFoundError:
        pass  # not there after all: the next --verify says so
    except OSError as err:
        if err.errno not in KEEPS_NO_MODES:
            raise drive_error(drive.root, err) from None


def _catalog_changed(a: Catalog, b: Catalog) -> bool:
    return (
        a.paths != b.paths
        or a.sizes != b.sizes
        or a.mtimes != b.mtimes
        or a.modes != b.modes
        or a.kinds != b.kinds
        or a.targets != b.targets
        or a.inodes != b.inodes  # how the next run tells a move: a restored source has new ones
    )


FILE_CODE = ord(FILE)
LINK_CODE = ord(LINK)
DIR_CODE = ord(DIR)


def _adoptable(occ: os.stat_result, cat: Catalog, i: int, drive: Drive, granularity: int) -> bool:
    """A file already in place with the same size and mtime (a drive seeded by ``cp -a``)."""
    kind = cat.kinds[i]
    if kind == ord(DIR):
        return stat.S_ISDIR(occ.st_mode)
    if kind == ord(LINK):
        if not stat.S_ISLNK(occ.st_mode):
            return False
        try:
            return os.readlink(drive.path(drive.on_drive(cat.paths[i]) or cat.paths[i])) == cat.targets.get(i)
        except OSError:
            return False
    return (
        stat.S_ISREG(occ.st_mode)
        and occ.st_size == cat.sizes[i]
        and mtimes_equal(occ.st_mtime_ns, cat.mtimes[i], granularity)
    )


__all__ = ["Backup", "Options", "Summary", "check_outputs", "SourceError"]
