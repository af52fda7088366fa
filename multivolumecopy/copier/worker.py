"""A copy worker: a plain function that takes a batch and answers with its outcomes.

It copies each entry to a temporary name on the drive and renames it into place (or builds a
new folder whole and renames it once, see staging.py), checks before every file and chunk
whether the parent asked it to stop, and never outlives its parent.  It ignores SIGINT, SIGTERM
and SIGHUP: the parent decides what an interrupt means.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Optional

from .. import faults, metadata
from ..catalog import DIR, FILE, LINK
from ..fsutil import die_with_parent, is_no_space
from .drivepaths import GONE, drive_refused, drive_there, make_dir, make_parents
from .filecopy import SourceError, Stopped, Unstable, copy_file, copy_small, unlink_quietly
from .protocol import BatchDone, CopyBatch, CopyItem, Outcome, Status, outcome
from .staging import Group, commit_group, open_group
from .state import STATE, Throttle


@dataclass
class WorkerLimits:
    """What the pool gives each worker as it starts: the ``--bwlimit`` rate and its shared clock,
    and whether to read and write at idle I/O priority."""

    bwlimit: float = 0.0  # bytes per second read from the sources, 0: no limit
    idle_io: bool = True  # idle I/O priority, where the OS has it
    clock: Any = None  # the throttle's shared clock: RawValue("d")
    token: Any = None  # the clock's lock: a pipe (read end, write end) holding one byte


def idle_io() -> None:
    """Be gentle on the fileserver: idle I/O class (Linux), so its users come first."""
    try:
        import psutil

        psutil.Process().ionice(psutil.IOPRIO_CLASS_IDLE)
    except (ImportError, AttributeError, OSError, ValueError):
        pass  # not offered here: normal priority


def worker_main(conn: Connection, stop: Any, parent: int, limits: Optional[WorkerLimits] = None) -> None:
    """A copy worker: copy each batch that arrives on ``conn`` and send its BatchDone back
    (and Progress on the way), until the parent closes its end of the pipe."""
    # Interrupts go to the parent, which decides what they mean.  A worker must never outlive
    # its parent, even one killed -9.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # already ignored since exec (see CopyPool)
    die_with_parent(parent)
    os.umask(0)  # files are created with their own mode (see _create), folders 0o700
    limits = limits or WorkerLimits()
    if limits.bwlimit:
        STATE.throttle = Throttle(limits.bwlimit, limits.clock, limits.token)
    if limits.idle_io:
        idle_io()
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):  # the pool closed its end (CopyPool.close): no more work
            return
        done = copy_batch(batch, stop, conn.send)
        try:
            conn.send(done)
        except OSError:  # the pool is gone; nobody is left to record it
            return


def batch_dir(batch: CopyBatch) -> str:
    """A fresh directory under .mvcopy-tmp for each batch's temporary files: creating files
    in one directory whose entries are forever renamed away is slow on some filesystems."""
    key = f"{batch.volume_key}/{batch.batch_id}"
    path = STATE.batch_dirs.get(key)
    if path is None:
        STATE.batch_dirs.clear()
        path = os.path.join(batch.tmpdir, f"{os.getpid()}-{batch.batch_id}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        plain_folder(path)
        STATE.batch_dirs[key] = path
    return path


def plain_folder(path: str) -> None:
    """Make a temporary folder of ours inherit nothing to what is made in it: no default ACL,
    no set-group-ID bit, our own group (a drive's root may have any of these, and mkdir passes
    them on).  What the copy makes there then has no attribute and is ours (see
    filecopy._set_metadata)."""
    os.chmod(path, 0o700)
    try:
        os.chown(path, -1, os.getegid())
    except OSError:
        pass  # not a filesystem of owners (exFAT): nothing is inherited there either
    try:
        os.removexattr(path, metadata.ACL_DEFAULT)
    except OSError:
        pass  # none there (ENODATA), or no ACLs on this filesystem


def copy_batch(batch: CopyBatch, stop: Any, report: Callable[[Any], None]) -> BatchDone:
    """Copy a batch's items in order, staging new folders; stop early when ``stop`` is set
    or the drive fills (the rest are not done).  ``report`` is given Progress messages."""
    if batch.volume_key != STATE.volume_key:
        STATE.made_dirs.clear()
        STATE.volume_key = batch.volume_key
    outcomes: list[Outcome] = []
    items = batch.items
    if not drive_there(batch):
        return BatchDone(
            batch.batch_id, tuple(outcome(it.catalog_index, Status.DRIVE_ERROR, GONE) for it in items)
        )
    try:
        tmpdir = batch_dir(batch)
    except OSError as err:  # the drive refuses even a folder: full, read-only, or failing
        status = Status.NO_SPACE if is_no_space(err) else Status.DRIVE_ERROR
        detail = GONE if not drive_there(batch) else err.strerror or str(err)
        first = outcome(items[0].catalog_index, status, detail)
        return BatchDone(
            batch.batch_id, (first, *(outcome(it.catalog_index, Status.NOT_DONE) for it in items[1:]))
        )
    group: Optional[Group] = None
    for pos, item in enumerate(items):
        if stop.is_set():
            if group is not None:
                commit_group(batch, group, outcomes)
                group = None  # committed once: a second commit would find it gone
            outcomes.extend(outcome(it.catalog_index, Status.NOT_DONE) for it in items[pos:])
            break
        dest = item.place
        if group is not None and not dest.startswith(group.prefix):
            stopped = commit_group(batch, group, outcomes)
            group = None
            if stopped:
                outcomes.extend(outcome(it.catalog_index, Status.NOT_DONE) for it in items[pos:])
                break
        if group is None:
            group = open_group(batch, tmpdir, item)
        if group is None:
            result = copy_one(batch, tmpdir, item, stop, report)
        elif dest == group.rel:  # the staged folder's own entry: the staging folder is it
            result = Outcome(item.catalog_index, Status.OK, 0, item.mtime_ns)
            group.done.append((len(outcomes), "", True))
        else:
            name = dest[len(group.prefix) :]
            # Its folder may not be in the batch (that folder's own entry lives on another
            # volume): made here, as make_parents makes it for an entry copied alone.
            make_parents(group.path, name)
            result = copy_one(batch, tmpdir, item, stop, report, staged=f"{group.path}/{name}")
            if result.status == Status.OK:
                group.done.append((len(outcomes), name, item.kind == DIR))
        outcomes.append(result)
        if result.status in (Status.NO_SPACE, Status.DRIVE_ERROR, Status.NOT_DONE):
            if group is not None:
                commit_group(batch, group, outcomes)
                group = None
            outcomes.extend(outcome(it.catalog_index, Status.NOT_DONE) for it in items[pos + 1 :])
            break
    if group is not None:
        commit_group(batch, group, outcomes)
    # The emptied folder stays until the volume's commit: on a journal-less ext4 a deletion slows
    # every later file creation (see docs/TECHNICAL_DECISIONS.rst, "Temporary name, then rename").
    STATE.batch_dirs.pop(f"{batch.volume_key}/{batch.batch_id}", None)
    return BatchDone(batch.batch_id, tuple(outcomes))


def copy_one(
    batch: CopyBatch,
    tmpdir: str,
    item: CopyItem,
    stop: Any,
    report: Callable[[Any], None],
    staged: Optional[str] = None,
) -> Outcome:
    """Copy one entry to a temporary name and rename it into place; with ``staged`` (a file or
    link of a staged folder), copy it to that name and leave it there for the folder's rename."""
    index, rel, kind, size, mtime_ns, mode, target, _, uid, gid, xattrs = item
    dest = item.place
    final = f"{batch.dst_root}/{dest}"
    tmp = staged or f"{tmpdir}/{index}"
    keep = metadata.Keep(*batch.keep)
    meta = (uid, gid, xattrs, keep)
    try:
        if kind == FILE:
            if size < len(STATE.buf):
                got = copy_small(f"{batch.src_root}/{rel}", tmp, size, mtime_ns, mode, batch.hash, meta)
            else:
                got = None
            if got is None:  # large, sparse, or grown past the buffer since the scan
                got = copy_file(f"{batch.src_root}/{rel}", tmp, mode, stop, report, batch.hash, meta)
            faults.point("before-rename")
            if staged is None:
                make_parents(batch.dst_root, dest)
                os.rename(tmp, final)
            return Outcome(index, Status.OK, *got)
        if kind == DIR:
            if staged is not None:
                os.mkdir(staged, 0o700)
                return Outcome(index, Status.OK, 0, mtime_ns)
            make_parents(batch.dst_root, dest)
            if not make_dir(final):
                return outcome(index, Status.CONFLICT, "a file is in the way on the drive")
            return Outcome(index, Status.OK, 0, mtime_ns)
        assert kind == LINK and target is not None
        os.symlink(target, tmp)
        lost = metadata.apply(tmp, uid, gid, xattrs, None, keep, is_link=True)  # the link's own
        os.utime(tmp, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        if staged is None:
            make_parents(batch.dst_root, dest)  # only now: the temp file proved the drive is there
            os.rename(tmp, final)
        return Outcome(index, Status.OK, 0, mtime_ns, lost=lost)
    except Stopped:
        unlink_quietly(tmp)
        return outcome(index, Status.NOT_DONE)
    except SourceError as err:
        unlink_quietly(tmp)
        if err.err.errno == errno.ENOENT:
            return outcome(index, Status.VANISHED, "vanished since the scan")
        return outcome(index, Status.FAILED, f"cannot read: {err.err.strerror or err.err}")
    except Unstable as err:
        unlink_quietly(tmp)
        return outcome(index, Status.FAILED, str(err))
    except OSError as err:
        unlink_quietly(tmp)
        return drive_refused(batch, index, err)
