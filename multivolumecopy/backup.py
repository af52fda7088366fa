"""A backup run: the stages in order (docs/architecture.rst draws the map).

Pipeline::

    prepare.merge()             scan the sources, merge with the jobfile -> RunContext
    runplan.plan_run()          the run's state; where each entry on no volume should go
    for each drive (given with -o, or swapped in by swap.Swapper):
        identify.identify()     which volume is it (label a blank one), or refuse it
        runplan.volume_plan()   keep / purge / rewrite / rename / fill (reconcile, pure)
        writer.VolumeWriter     carry the plan out (copysession: the worker pool)
        _close_volume()         commit the drive, the ledger settles the record, save the jobfile
    _finish_run()               what is not saved is listed, and the run does not exit 0

Every change to a drive is journalled before it can be seen (see :mod:`multivolumecopy.drive`),
so an interrupted run leaves each drive as it was or consistently updated, and the same command
finishes the job.  ``--dry-run`` (:mod:`multivolumecopy.dryrun`) is the same stages up to the
volume's plan, with each drive's contents taken from its record, and nothing written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Optional

from . import clock
from . import events as ev
from . import jobfile as jf
from .catalog import NO_VOLUME, Catalog, index_ranges
from .context import Options, RunContext, Summary
from .drive import Drive, drive_error
from .driveformat import CHANGES
from .errors import DriveError, OutputError, TooLargeError
from .fsutil import is_no_space, remove_stale_temporaries
from .identify import Refused, identify, no_drive_at
from .metadata import LOST_OWNER, lost_text
from .parity import ParityJob
from .placement import NEW_DRIVE
from .prepare import (
    adopt_job_options,
    catalog_changed,
    check_drives_free,
    check_filesystems,
    check_jobfile_folder,
    check_outputs,
    check_sizes,
    jobfile_lock,
    merge,
    pick_up_job,
)
from .reconcile import VolumePlan
from .runplan import place_overflow, plan_run, space_for, volume_plan
from .scan import resolve_sources
from .sizes import format_size
from .swap import Swapper, SwapRequest
from .writer import VolumeWriter, files_on


class Backup:
    """One backup run, or a dry run of one."""

    def __init__(
        self, opts: Options, emit: ev.Emit, swapper: Swapper, clock: Callable[[], float] = time.monotonic
    ):
        self.opts = opts
        self._emit = emit
        self.swapper = swapper
        self.clock = clock
        self.summary = Summary()
        self.jobfile = os.path.abspath(opts.jobfile)
        self._run_recorded = False  # the jobfile holds this run's state (see _record_run)
        self._parity: Optional[ParityJob] = None  # the job keeps a parity drive

    def emit(self, event: ev.Event) -> None:
        """Pass ``event`` on to the run's emit function, counting skipped entries for the summary."""
        if isinstance(event, ev.Skipped):
            self.summary.skipped += 1
        self._emit(event)

    # -- the run -----------------------------------------------------------------------

    def run(self) -> Summary:
        """Back up: scan the sources, merge them with the jobfile, then bring each drive the work
        needs up to date (those given with ``-o``, then each one swapped in); returns what was
        done.  Raises an :class:`~multivolumecopy.errors.MvcError` when the run cannot go on."""
        opts = self.opts
        sources = resolve_sources(opts.sources)
        check_outputs(opts, sources)
        jobfile = self.jobfile
        check_jobfile_folder(jobfile, opts.jobfile)
        check_drives_free(opts.outputs)  # a busy drive refuses the run now, not after the scan
        with jobfile_lock(jobfile, opts.jobfile):
            remove_stale_temporaries(jobfile)
            remove_stale_temporaries(jobfile + jf.CACHE_SUFFIX)
            if not os.path.exists(jobfile):
                pick_up_job(jobfile, opts.jobfile, opts.outputs, sources, self.emit)
            self.opts = opts = adopt_job_options(opts, sources, jobfile, self.emit)
            check_filesystems(opts)
            read, ctx, pending = merge(opts, sources, jobfile, self.emit, self.summary)
            ctx.clock = self.clock
            check_sizes(ctx)
            job = ctx.job
            self._parity = ParityJob.for_run(opts.parity, job, jobfile, opts.replace_parity)
            if self._parity is not None:  # parity given to a job with volumes: each visited once
                pending |= self._parity.unmapped(job)
            if not job.run.in_progress and not pending and not ctx.worklist.any_unplaced():
                self._nothing_to_do(read, ctx)
                if self._parity is not None:
                    self._parity.finish(job, self.swapper, self.emit, opts.outputs)
                return self.summary
            resumed = job.run.in_progress
            plan_run(ctx, pending)
            files, nbytes = ctx.worklist.left()
            self.emit(ev.RunStarted(job.run.number, resumed, files, nbytes))
            try:
                self._drive_loop(ctx)
            finally:
                if ctx.pool is not None:
                    ctx.pool.close()
                ctx.report.save(jobfile)
            if job.run.in_progress:  # the last volume's save finished it, unless none was written
                self._finish_run(ctx)
                self._save(ctx)
            if self._parity is not None:  # last: what it protects is what the drives hold
                self._parity.finish(job, self.swapper, self.emit, opts.outputs)
        return self.summary

    def _nothing_to_do(self, read: Optional[jf.Job], ctx: RunContext) -> None:
        """Every entry is saved and nothing changed: no drive is needed.  The jobfile still
        follows the sources (folders' times, inodes), and a cache is written if it had none."""
        job = ctx.job
        self.summary.failed = list(ctx.unreadable)  # all the scan found is saved; not what it could not read
        failed = [[path, why] for path, why in ctx.unreadable]
        if (
            read is None
            or ctx.old is None
            or catalog_changed(ctx.old, job.catalog)
            or job.failed != failed
            or ctx.specials_changed
            or ctx.options_changed
        ):
            job.failed = failed
            jf.save(self.jobfile, job)
        elif not read.cached:
            jf.write_cache(self.jobfile, ctx.old)  # the next run reads the catalog from it
        self.summary.nothing_to_do = True
        self.emit(ev.NothingToDo(len(job.catalog), len(job.volumes)))

    def _save(self, ctx: RunContext, copy_first: Optional[Callable[[str], None]] = None) -> None:
        jf.save(self.jobfile, ctx.job, copy_first)
        self._run_recorded = True

    def _record_run(self, ctx: RunContext) -> None:
        """Save this run's state (in progress, volumes pending, moves) before the run changes a
        drive or asks for one: done once, by the first save of the run.  A run stopped before
        that leaves the jobfile as it was, and every drive too."""
        if not self._run_recorded:
            self._save(ctx)

    def _finish_run(self, ctx: RunContext) -> None:
        """The run is over: whatever is not, in its current version, on the volume its record
        names is listed as not saved (and so the run does not exit 0)."""
        run = ctx.job.run
        run.state = "done"
        run.finished = clock.now_iso()
        run.open_volume = None
        run.moves = {}
        cat = ctx.catalog
        self.summary.failed = [
            (cat.paths[i], _why_unsaved(ctx, i)) for i in cat.unsaved() if i not in ctx.vanished
        ] + ctx.unreadable
        ctx.job.failed = [[path, why] for path, why in self.summary.failed]
        self._tell_metadata_lost(ctx)

    def _tell_metadata_lost(self, ctx: RunContext) -> None:
        """Once a run, not once a file: what of the metadata some drives did not keep.  The data
        is safe and the records hold it all, so this is a note, not a failure."""
        by_what: dict[int, list[int]] = {}
        for volume, lost in sorted(ctx.metadata_lost.items()):
            by_what.setdefault(lost, []).append(volume)
        for lost, volumes in by_what.items():
            which = ", ".join(str(v) for v in volumes)
            hint = " (run as root to keep owners on the drives)" if lost & LOST_OWNER and os.geteuid() else ""
            self.emit(
                ev.Note(
                    f"{lost_text(lost)} not kept on volume{'s' if len(volumes) > 1 else ''} {which}: "
                    f"its filesystem or this user refused them{hint}; they are in the job's records "
                    "and --restore sets them"
                )
            )

    # -- the drives --------------------------------------------------------------------

    def _drive_loop(self, ctx: RunContext) -> None:
        """Update each drive given, then each one the swap brings, until no work is left.  A
        drive refused (a blank one while the volumes given with it still had work, say) is
        offered again once a volume is done after its refusal, before the swap asks for one."""
        queue = list(self.opts.outputs)
        last_output = queue[-1]
        finished: Optional[int] = None
        refusal: Optional[str] = None
        volumes_done = 0
        refused: dict[str, int] = {}  # output -> volumes done when it was refused
        while ctx.worklist.remains():
            if not queue:
                queue = [out for out, done in refused.items() if done < volumes_done]
                for out in queue:
                    del refused[out]
            if not queue:
                wanted, next_volume, message = ctx.worklist.wanted(last_output)
                self.emit(ev.WaitingForDrive(last_output, message, tuple(wanted), next_volume))
                self._record_run(ctx)  # a --new-volume-script may read it
                self.swapper.request(
                    SwapRequest(last_output, message, finished, next_volume, self.jobfile, refusal)
                )
                queue = [last_output]
            out = queue.pop(0)
            last_output = out
            try:
                finished, new, progressed = self._update_drive(ctx, out)
                refusal = None
                volumes_done += 1
                refused.pop(out, None)
            except Refused as why:
                refusal = str(why)
                refused[out] = volumes_done
                self.emit(ev.DriveRefused(out, refusal))
                continue
            if new and not progressed and ctx.worklist.new_drive_needed():
                i = next(ctx.worklist.bound_for(NEW_DRIVE))
                cat = ctx.catalog
                raise TooLargeError(
                    f"{cat.paths[i]} ({format_size(cat.sizes[i])}) does not fit on an empty volume "
                    f"(volume {finished} at {out} took nothing); leave it out with --exclude, "
                    "or use a bigger drive"
                )

    def _update_drive(self, ctx: RunContext, output: str) -> tuple[int, bool, bool]:
        """Bring one drive up to date; returns (volume number, was blank, did anything)."""
        job = ctx.job
        missing = no_drive_at(job, output)
        if missing:
            raise Refused(missing)
        drive = Drive(output)
        try:
            drive.open()
        except OSError as err:
            raise drive_error(output, err) from None
        try:
            number, new = identify(ctx, drive, lambda: self._save(ctx))
            self._record_run(ctx)
            rec = job.volumes[number]
            st = os.statvfs(output)
            self.emit(ev.VolumeMounted(number, output, new, st.f_bavail * st.f_frsize, rec.uuid))
            drive.prepare()
            # Files already on a drive being labelled, listed while it holds nothing of ours
            # (walking it after a million were copied would cost seconds and a set of them).
            there_before = files_on(output) if new else {}
            job.run.open_volume = number
            plan = self._plan(ctx, drive, rec, fresh=new or rec.capacity == 0)
            writes = plan.writes
            self.emit(
                ev.VolumePlanned(
                    number,
                    len(plan.keep),
                    len(plan.purge),
                    len(writes),
                    sum(job.catalog.sizes[i] for i in writes),
                    plan.last_index,
                )
            )
            before = (self.summary.copied_files, self.summary.copied_bytes)
            fates_before = len(ctx.failed) + len(ctx.vanished)
            writer = VolumeWriter(ctx, drive, rec, plan, bare=new and not there_before)
            writer.on_cut_short = lambda commit: self._save_progress(ctx, writer, commit)
            to_copy = writer.prepare()
            filled = bool(to_copy) and _copy(writer, to_copy)
            # It could not take all it was meant to: new entries left, rewrites given up.
            full = filled or bool(plan.overflow) or plan.more
            if full:
                self.emit(ev.VolumeFull(number))
            if there_before:
                escaped = {stored: path for path, stored in drive.stored.names.items() if stored}
                ours = drive.contents
                # Not ours: what was there and did not turn out to be a copy of ours (adopted).
                foreign = [size for p, size in there_before.items() if escaped.get(p, p) not in ours]
                if foreign:
                    self.emit(ev.ForeignData(number, len(foreign), sum(foreign)))
            self._close_volume(ctx, writer, full, before)
            progressed = (
                bool(plan.keep)
                or self.summary.copied_files > before[0]
                or len(ctx.failed) + len(ctx.vanished) > fates_before
            )
            return number, new, progressed
        finally:
            drive.close()

    def _plan(self, ctx: RunContext, drive: Drive, rec: jf.VolumeRecord, fresh: bool) -> VolumePlan:
        """The volume's plan from what its drive holds and offers."""
        st = os.statvfs(drive.root)
        free = st.f_bavail * st.f_frsize
        if not fresh:
            # One capacity model with --dry-run: what the record says the volume offers (our
            # files and records, see _close_volume), unless the drive now has less.
            free = min(rec.capacity - rec.used, free + drive.records_bytes(rec.block_size))
        space = space_for(ctx, rec, free, inodes=st.f_favail if st.f_files else None)
        dirty: dict[str, int] = {}
        for path in drive.dirty:
            stored = drive.on_drive(path)
            try:
                dirty[path] = os.lstat(drive.path(stored)).st_size if stored else 0
            except OSError:
                dirty[path] = 0  # never written, or already gone
        return volume_plan(ctx, rec, drive.contents, dirty, space, fresh)

    def _save_progress(self, ctx: RunContext, writer: VolumeWriter, commit: bool) -> None:
        """On the way out of a volume cut short (an interrupt, a worker died, the drive failed):
        commit the drive and settle its record (unless the drive failed: its journal keeps
        what a re-run needs), then save the jobfile."""
        drive = writer.drive
        if commit:
            try:
                drive.mark_unfinished()
                drive.commit(ctx.job.run.number)
            except (DriveError, OutputError):
                pass  # the journal still holds what a re-run needs
            else:
                ctx.ledger.settle(
                    writer.rec.number, drive.contents, writer.written, writer.rec.granularity_ns
                )
        self._save(ctx)

    def _close_volume(
        self, ctx: RunContext, writer: VolumeWriter, full: bool, before: tuple[int, int]
    ) -> None:
        """Commit the drive, settle the record from it, update the volume's record, save the
        jobfile (and its copy on the drive, first), and say what the volume holds."""
        job, drive, rec = ctx.job, writer.drive, writer.rec
        cat = job.catalog
        writer.give_up_unwritten(full)
        writer.set_dir_metadata()
        # A visit that changed nothing leaves the drive's records, and its change report (what
        # the last visit that changed it did), as they were.
        unchanged = not drive.changed  # every write to the drive is in its journal
        if unchanged:
            drive.close_unchanged()
        else:
            drive.commit(job.run.number, _index_order(cat, rec.number, writer.written))
        for i in ctx.ledger.settle(rec.number, drive.contents, writer.written, rec.granularity_ns):
            if i not in ctx.failed:
                ctx.destinations[i] = NEW_DRIVE  # a drive holding less than its record said
        for i, v in ctx.destinations.items():
            if v == rec.number and cat.volumes[i] == NO_VOLUME:
                ctx.destinations[i] = NEW_DRIVE
        place_overflow(ctx, rec.number)  # to a volume with room, before a new drive
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
        if not ctx.worklist.remains():
            self._finish_run(ctx)  # in the same save (and so in the drive's copy of the jobfile)
        if self._parity is not None:  # its map (and the map's copy on the drive) first
            self._parity.volume_closed(job, rec.number, drive)
        copied = [True]

        def copy_to_drive(new_jobfile: str) -> None:
            copied[0] = drive.write_jobcopy(new_jobfile)

        # The drive's copy first: a crash between the two leaves the jobfile saying the volume
        # is open (so it is visited again), never a drive whose copy is older than its state.
        self._save(ctx, copy_to_drive)
        if not copied[0]:
            why = f"no room for the jobfile copy on volume {rec.number} (its older copy was removed)"
            self.emit(ev.Skipped(".mvcopy-jobdata.json", why))
        try:
            if not unchanged:
                drive.write_record(CHANGES, ctx.report.chunks(only=rec.number))
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
            unchanged=unchanged,
        )
        self.summary.volumes.append(done)
        self.emit(done)
        limits = drive.caps.limits()
        if limits:
            names = drive.stored.names
            renamed = sum(1 for p, n in names.items() if n and p in drive.contents)
            recorded = sum(1 for p, n in names.items() if n == "" and p in drive.contents)
            self.emit(ev.Adapted(rec.number, tuple(limits), renamed, recorded))


def _copy(writer: VolumeWriter, to_copy: list[int]) -> bool:
    """Copy the writer's entries through the worker pool; whether the drive filled up."""
    from .copysession import CopySession  # imported here: a run with nothing to copy starts faster

    return CopySession(writer).run(to_copy)


def _index_order(cat: Catalog, volume: int, written: list[int]) -> Iterator[str]:
    """The paths a volume holds after a visit, in index order (what is recorded on it, and what
    the visit wrote there): the manifest is then written without sorting a million keys."""
    mask = bytearray(len(cat))
    for i in cat.indexes_on(volume):
        mask[i] = 1
    for i in written:
        mask[i] = 1
    paths = cat.paths
    at = mask.find(1)
    while at >= 0:
        yield paths[at]
        at = mask.find(1, at + 1)


def _why_unsaved(ctx: RunContext, i: int) -> str:
    if i in ctx.failed:
        return ctx.failed[i]
    volume = ctx.catalog.volumes[i]
    if volume != NO_VOLUME:
        return f"volume {volume} holds an older version; it was not updated"
    return "on no drive: it was not copied in this run"


__all__ = ["Backup", "Options", "Summary", "check_outputs"]
