"""A backup's first stage: everything before a drive is touched.

The outputs and the jobfile's folder are checked, and the drives given looked at for another
run that holds them (so a busy run is refused before it scans); the jobfile locked (or, when it
is missing, picked up from a drive of the same job at an output); the job's options taken from
its head (:mod:`~multivolumecopy.joboptions`: a run giving other values is refused here, before
the scan); the sources scanned while the jobfile is read; the scan merged with it
(:func:`~multivolumecopy.changes.classify`: what is new, changed, moved, deleted; the record of
each entry's volume carried over by the ledger);
``--forget-volume`` and ``--replace-volume`` applied.  What comes out is the run's
:class:`~multivolumecopy.context.RunContext` and the volumes the run must visit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import stat
from collections.abc import Iterator
from typing import Optional

from . import clock, joboptions
from . import events as ev
from . import jobfile as jf
from .catalog import DIR, FILE, LINK, NO_VOLUME, Catalog
from .changes import Changes, classify
from .context import Options, RunContext, Summary
from .driveformat import JOBCOPY, LOCKFILE, read_label
from .errors import JobfileError, MvcError, OutputError, TooLargeError, UsageError
from .fsutil import atomic_write, block_size, path_inside, read_chunks, round_up
from .lock import FileLock, check_free
from .metadata import owner_names
from .reconcile import metadata_reserve
from .scan import Scan, Sources, usable_cpus
from .sizes import count, format_size, plural
from .specials import SPECIAL, Special, describe, special_at


def check_outputs(opts: Options, sources: Sources) -> None:
    """Everything about the output paths that can be checked before writing anything."""
    if not opts.outputs:
        raise OutputError("no output given; name the mounted drive with -o/--output")
    seen: dict[str, str] = {}
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
        if path_inside(os.path.abspath(opts.jobfile), out):
            raise OutputError(
                f"the jobfile {opts.jobfile} is on the backup drive {out}; keep it elsewhere "
                "with -f (each drive gets its own copy)"
            )


def check_filesystems(opts: Options) -> None:
    """Two outputs on one filesystem only with a ``--volume-size`` that splits it (the job's:
    checked once the job's options are known)."""
    devices: dict[int, str] = {}
    for out in opts.outputs:
        dev = os.stat(out).st_dev
        if dev in devices and opts.volume_size is None:
            raise OutputError(
                f"outputs {devices[dev]} and {out} are on the same filesystem; use separate "
                "drives, or give --volume-size to split one filesystem into volumes"
            )
        devices[dev] = out


def check_jobfile_folder(jobfile: str, given: str) -> None:
    """The jobfile's folder must be there: one that is missing is refused, not made, since a
    mistyped path, or the mount point of a share or stick that is not mounted (udisks removes
    those), would put the job's memory somewhere nobody looks for it."""
    folder = os.path.dirname(jobfile)
    if os.path.isdir(folder):
        return
    if os.path.lexists(folder):
        raise JobfileError(
            f"the jobfile {given} cannot be kept in {folder}: it is not a folder; give -f a path in a folder"
        )
    raise JobfileError(
        f"the jobfile's folder {folder} does not exist; create it (mkdir -p {shlex.quote(folder)}), "
        "or give -f a path in an existing folder"
    )


def check_drives_free(outputs: list[str]) -> None:
    """Refuse the run now, before the scan, when another run holds a drive given with ``-o``
    (each drive's own lock is taken when it is opened)."""
    for out in outputs:
        check_free(os.path.join(out, LOCKFILE), f"the drive at {os.path.abspath(out)}")


@contextlib.contextmanager
def jobfile_lock(jobfile: str, given: str) -> Iterator[None]:
    """The jobfile's lock, with a one-line error where its folder refuses a file.  A run that
    leaves no jobfile (refused, or stopped before its first save) takes away the lock file and
    the operation log it made, so nothing of it stays beside a jobfile that is not there."""
    lock = FileLock(jobfile + ".lock", f"the jobfile {given}")
    try:
        lock.acquire()
    except OSError as err:
        raise JobfileError(
            f"cannot write beside the jobfile {given} ({err.strerror}); give -f a path in a writable folder"
        ) from None
    log = jobfile + jf.LOG_SUFFIX
    log_was_there = os.path.lexists(log)  # only the lock's holder writes it
    try:
        yield
    finally:
        if not os.path.lexists(jobfile):
            if not log_was_there:
                with contextlib.suppress(OSError):  # left behind: harmless
                    os.unlink(log)
            lock.remove_if_made()
        lock.release()


def adopt_job_options(
    opts: Options, sources: Sources, jobfile: str, emit: ev.Emit, dry: bool = False
) -> Options:
    """The run's options with the job's in place of those the command line left out; a run
    that gives other values than the job's is refused here, before the scan and before any
    drive is touched, unless it says ``--change-options`` (then the run says what changes,
    and records it with the rest of the run).  ``dry``: for ``--dry-run``, which says what
    would change.  A jobfile of other sources is refused first: its options are not this
    job's."""
    recorded = None
    if os.path.exists(jobfile):
        head = jf.load_head(jobfile)
        check_same_job(head["root"], head["sources"], sources, opts.jobfile)
        recorded = head["options"]
    fields = [o.key for o in joboptions.OPTIONS]
    names = fields if opts.given is None else [k for k in fields if k in opts.given]
    resolved = joboptions.resolve({k: getattr(opts, k) for k in names}, recorded, opts.change_options)
    if resolved.changes:
        emit(ev.Note(joboptions.change_note(resolved.changes, dry)))
    return dataclasses.replace(opts, **resolved.values)


def check_same_job(root: str, paths: list[str], sources: Sources, given: str) -> None:
    """A jobfile of other sources is another job's: refused, not taken over."""
    if root != sources.root or sorted(paths) != sorted(sources.paths):
        raise JobfileError(
            f"the jobfile {given} belongs to another job (sources {' '.join(paths)}); "
            "give the same sources, or use -f to name a new jobfile for this backup"
        )


def pick_up_job(jobfile: str, given: str, outputs: list[str], sources: Sources, emit: ev.Emit) -> None:
    """No jobfile: if a drive of a job of these very sources is at an output, carry on with
    that job from the drive's copy of its jobfile (the newest, if several drives are), so a
    lost jobfile or a command run from another folder does not start a second job that then
    refuses its own drives."""
    best: Optional[tuple[tuple, str, int]] = None
    for out in outputs:
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
        atomic_write(jobfile, read_chunks(os.path.join(out, JOBCOPY)))
    except OSError as err:
        raise JobfileError(
            f"cannot write the jobfile {given} ({err.strerror}); give -f a writable place"
        ) from None
    emit(
        ev.Note(
            f"the jobfile {given} was missing: continuing the job from the copy on volume {volume} at {out}"
        )
    )


def merge(
    opts: Options, sources: Sources, jobfile: str, emit: ev.Emit, summary: Summary
) -> tuple[Optional[jf.Job], RunContext, set[int]]:
    """Scan the sources (helpers walk the tree while this process reads the jobfile), merge the
    scan with the jobfile, and apply --forget-volume and --replace-volume.  Returns the job as
    read (None for a new job; its catalog is the fresh one by now), the run's context, and the
    volumes the run must visit."""
    specials: list[Special] = []
    unreadable: list[tuple[str, str]] = []

    def left_out(path: str, why: str, failed: bool) -> None:
        if failed:  # not saved: the run does not exit 0
            unreadable.append((path, why))
            emit(ev.FileFailed(path, why))
        elif why == SPECIAL:  # by design: recorded for --restore
            found = special_at(os.path.join(sources.root, path), path, opts.keep)
            if found is not None:
                specials.append(found)
        else:
            emit(ev.Skipped(path, why))

    with Scan(
        sources,
        opts.exclude,
        left_out,
        opts.one_file_system,
        min(opts.workers, usable_cpus()),
        opts.keep,
    ) as scanning:
        old = jf.load(jobfile) if os.path.exists(jobfile) else None
        if old is not None:
            check_same_job(old.root, old.sources, sources, opts.jobfile)
        catalog = scanning.result()
    if old is not None and unreadable:
        kept = keep_unread(catalog, old.catalog, [path for path, _ in unreadable])
        if kept:
            emit(
                ev.Note(
                    f"{count(kept, 'entry', 'entries')} below what could not be read kept as the last "
                    "run saw them: their copies stay on the drives"
                )
            )
    kinds = catalog.kinds
    emit(
        ev.ScanDone(
            files=kinds.count(ord(FILE)),
            dirs=kinds.count(ord(DIR)),
            links=kinds.count(ord(LINK)),
            bytes=catalog.total_bytes(),
        )
    )
    recorded = {o.key: getattr(opts, o.key) for o in joboptions.OPTIONS}  # the job's, by now
    changes = Changes()
    old_catalog: Optional[Catalog] = None
    pending: set[int] = set()
    options_changed = False  # the jobfile then needs saving, even with nothing else to do
    if old is None:
        job = jf.Job(
            job_id=clock.new_id(),
            root=sources.root,
            sources=list(sources.paths),
            options=recorded,
            created=clock.now_iso(),
            catalog=catalog,
        )
    else:
        job, old_catalog = old, old.catalog
        volumes = old.volumes

        def granularity(v: int) -> int:
            rec = volumes.get(v)
            return rec.granularity_ns if rec else 1

        changes = classify(old_catalog, catalog, granularity)
        pending = changes.volumes_touched(old_catalog)
        job.catalog = catalog
        options_changed = job.options != recorded
        job.options = recorded
    job.top = _top_folder(sources)
    specials_changed = job.specials != specials
    if old_catalog is not None:  # the drives' copies of the jobfile are the only record of them
        pending |= special_volumes(job, old_catalog, set(job.specials) ^ set(specials))
    job.specials = specials
    if specials:
        what = describe(specials)
        them = plural(len(specials), "it", "them")
        emit(ev.Note(f"{what} left out by design (no data to copy): recorded, --restore makes {them} again"))
    if opts.keep.owner:
        job.owners = owner_names(
            [*catalog.uids, *(sp.uid for sp in specials)], [*catalog.gids, *(sp.gid for sp in specials)]
        )
    ctx = RunContext(opts, jobfile, job, old_catalog, changes, metadata_reserve(catalog), emit, summary)
    ctx.unreadable = unreadable
    ctx.specials_changed = specials_changed
    ctx.options_changed = options_changed
    if old_catalog is not None:
        ctx.ledger.carry(changes.volumes, changes.stale)
    if opts.hash:  # every file on a drive gets its hash: visit those that lack some
        pending |= {v for v, rec in job.volumes.items() if rec.unhashed and not rec.forgotten}
    pending |= forget_and_replace(ctx)
    if old_catalog is not None:
        ch = changes
        emit(
            ev.ChangesFound(
                len(ch.new),
                len(ch.changed),
                len(ch.moved),
                len(ch.deleted) - len(ch.moved),
                sum(catalog.sizes[i] for i in ch.new) + sum(catalog.sizes[i] for i in ch.changed),
                len(ch.modes),
            )
        )
    return old, ctx, pending


def _top_folder(sources: Sources) -> Optional[dict[str, int]]:
    """The mode and time of the one folder backed up (its contents are the drives' tops), for
    ``--restore`` to give the folder it restores into; None for several sources, whose common
    folder is not part of the backup."""
    if sources.paths != (sources.root,):
        return None
    try:
        st = os.stat(sources.root)
    except OSError:
        return None
    return {"mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns}


def keep_unread(new: Catalog, old: Catalog, unread: list[str]) -> int:
    """Entries of the last run's catalog at or below what the scan could not read (a folder it
    could not list, an entry it could not stat: ``unread``, "." for the top) go into ``new``
    as they were, so that the run takes them for unchanged: a source that fails for a moment
    (a permission, an I/O error, a share gone) must not have the drives' copies deleted, as
    rsync skips its deletions after an I/O error.  Returns how many were kept."""
    prefixes = ["" if p == "." else p for p in unread]
    present = set(new.paths)
    kept = 0
    for j, path in enumerate(old.paths):
        if path in present or not any(p == "" or path == p or path.startswith(p + "/") for p in prefixes):
            continue
        new.append(old.entry(j)._replace(ino=old.inodes[j]))
        kept += 1
    if kept:
        new.sort()
    return kept


def special_volumes(job: jf.Job, cat: Catalog, changed: set[Special]) -> set[int]:
    """The volumes a run visits for special files added, removed or changed: no drive holds
    them, the job's records do, so a drive must get the new copy of the jobfile (the volume
    of the special file's folder in ``cat``, the catalog as the jobfile had it, else the last
    volume)."""
    usable = [v for v, rec in job.volumes.items() if not rec.forgotten and rec.capacity]
    found: set[int] = set()
    for sp in changed:
        folder = sp.path.rpartition("/")[0]
        i = cat.index_of(folder) if folder else None
        v = cat.volumes[i] if i is not None else 0
        if v in usable:
            found.add(v)
        elif usable:
            found.add(max(usable))
    return found


def forget_and_replace(ctx: RunContext) -> set[int]:
    """``--forget-volume``: its files are placed again; ``--replace-volume``: a blank drive
    takes its place and receives its files.  Returns the volumes this makes pending."""
    job, opts = ctx.job, ctx.opts
    for n in opts.forget_volumes + opts.replace_volumes:
        rec = job.volumes.get(n)
        if rec is None or rec.forgotten:
            known = ", ".join(str(v) for v, r in sorted(job.volumes.items()) if not r.forgotten) or "none"
            raise UsageError(f"there is no volume {n} in this job (volumes: {known})")
    for n in opts.forget_volumes:
        job.volumes[n].forgotten = True
        ctx.ledger.unplace(ctx.catalog.indexes_on(n))
    return set(opts.replace_volumes)


def check_sizes(ctx: RunContext) -> None:
    """A file that no drive like the ones attached could hold stops the run before it starts."""
    opts, catalog = ctx.opts, ctx.catalog
    limit = 0
    for out in opts.outputs:
        st = os.statvfs(out)
        total = st.f_blocks * st.f_frsize - opts.device_padding - ctx.reserve
        if opts.volume_size is not None:
            total = min(total, opts.volume_size)
        limit = max(limit, total)
    block = block_size(opts.outputs[0])
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


def catalog_changed(a: Catalog, b: Catalog) -> bool:
    """Whether two catalogs differ in anything the jobfile records of the sources."""
    return (
        a.paths != b.paths
        or a.sizes != b.sizes
        or a.mtimes != b.mtimes
        or a.modes != b.modes
        or a.kinds != b.kinds
        or a.targets != b.targets
        or a.inodes != b.inodes  # how the next run tells a move: a restored source has new ones
        or a.uids != b.uids
        or a.gids != b.gids
        or a.xattrs != b.xattrs
        or a.xattrs_known != b.xattrs_known
    )
