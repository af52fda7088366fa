"""Copy workers: fill a drive through a short queue of batches.

Data flow::

    parent (CopyPool.run)                         worker processes (worker_main)
    ---------------------                         ------------------------------
    CopyBatch --> pipe of the least busy worker -> copy_batch()  -- temp file in
                  (at most 2 batches a worker)      .mvcopy-tmp/, mode, utime,
    handle(BatchDone) <-- the same pipe <---------  rename into place (a new
                                                    folder: built whole, then renamed)
    progress(bytes)   <-- the same pipe <---------  every 32 MiB of a large file
    stop.set() ------> one shared byte ---------->  read before every file and chunk

Each worker has one duplex pipe (a socketpair) of its own; the parent waits on all of them
at once.  Nothing here is a named POSIX semaphore (as a ``multiprocessing.Queue``'s locks
are), so a run killed with SIGKILL, whole process group and all, leaves nothing in
``/dev/shm``.

The queue is kept short on purpose: when the drive fills, the parent sets
the shared *stop* flag, stops handing out work and drains what is in
flight; workers abandon their current file (removing its temp file) and
return the rest of their batch as ``not-done``, so the files go to the next
volume.  Workers only see their batch: never the catalog.  They ignore
SIGINT, SIGTERM and SIGHUP; the parent decides what an interrupt means.
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import shutil
import signal
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Optional

from . import faults
from .catalog import DIR, FILE, LINK
from .fsutil import die_with_parent, is_drive_gone, is_no_space, rename_noreplace

OK = "ok"
NO_SPACE = "no-space"  # the drive is full; this file goes to the next volume
NOT_DONE = "not-done"  # not attempted (stop requested); goes to the next volume
VANISHED = "vanished"  # the source disappeared since the scan
FAILED = "failed"  # the source could not be read, or the drive refused this one file
CONFLICT = "conflict"  # something not ours is in the way on the drive
DRIVE_ERROR = "drive-error"  # the drive failed (EIO, EROFS, gone): stop the run

CHUNK = 8 * 1024 * 1024
PROGRESS_EVERY = 32 * 1024 * 1024
UNSTABLE_RETRIES = 3


# What a worker is told about one entry, and what it answers, are plain tuples: pickling a
# tuple of numbers and strings costs a fifth of a dataclass's, and it is paid for every file.
#
#   CopyItem: (index, rel, kind, size, mtime_ns, mode, target, dest)
#       ``target``: a symlink's target; ``dest``: where it goes on the drive when the drive
#       needs another name (None: ``rel``).
#   Outcome:  (index, status, size, mtime_ns, detail, reported, sha256)
#       ``reported``: bytes already told in Progress messages (large files only);
#       ``sha256``: of what was written, None when not hashing.
CopyItem = tuple[int, str, str, int, int, int, Optional[str], Optional[str]]
Outcome = tuple[int, str, int, int, str, int, Optional[str]]


def _outcome(index: int, status: str, detail: str = "") -> Outcome:
    return (index, status, 0, 0, detail, 0, None)


@dataclass(frozen=True)
class CopyBatch:
    batch_id: int
    src_root: str
    dst_root: str
    tmpdir: str
    items: tuple[CopyItem, ...]
    volume_key: str = ""  # changes with every drive, so workers forget directories they made
    hash: bool = True  # record SHA-256 of what is written, read in the same pass as the copy
    root_id: tuple[int, int] = (0, 0)  # st_dev, st_ino of dst_root: the drive must still be there


@dataclass(frozen=True)
class BatchDone:
    batch_id: int
    outcomes: tuple[Outcome, ...]


@dataclass(frozen=True)
class Progress:
    nbytes: int


def make_batches(
    items: Iterator[CopyItem],
    src_root: str,
    dst_root: str,
    tmpdir: str,
    volume_key: str,
    hash: bool = True,
    root_id: tuple[int, int] = (0, 0),
    max_items: int = 1024,
    max_bytes: int = 16 * 1024 * 1024,
    fold_at: int = 256,
) -> Iterator[CopyBatch]:
    """Group small files so interprocess traffic is paid per batch, not per file.  Past
    ``fold_at`` items a batch ends where a folder does, so that a new folder is most often
    written whole by one batch, and renamed into place once (see _commit_group)."""
    batch: list[CopyItem] = []
    size = 0
    n = 0
    for item in items:
        if batch and (
            len(batch) >= max_items
            or size + item[3] > max_bytes
            or (len(batch) >= fold_at and _folder_of(item) != _folder_of(batch[-1]))
        ):
            yield CopyBatch(n, src_root, dst_root, tmpdir, tuple(batch), volume_key, hash, root_id)
            n += 1
            batch, size = [], 0
        batch.append(item)
        size += item[3]
    if batch:
        yield CopyBatch(n, src_root, dst_root, tmpdir, tuple(batch), volume_key, hash, root_id)


def _folder_of(item: CopyItem) -> str:
    dest = item[7] or item[1]
    return dest[: dest.rfind("/") + 1]


# -- worker side --------------------------------------------------------------------


class _Stop(Exception):
    pass


# Per worker: which in-kernel copy works between two devices; probed once per pair.
_METHOD: dict[tuple[int, int], str] = {}
_MADE_DIRS: set[str] = set()
_VOLUME_KEY = [""]


class Throttle:
    """``--bwlimit``: one rate for all workers.  Each chunk read books the next slot of
    ``n / rate`` seconds on a clock shared by the pool, and waits for its slot to end.

    The clock is a double in shared memory, guarded by a pipe that holds one byte: a worker
    takes the byte before it books and puts it back after, so one books at a time.  (A
    ``multiprocessing`` lock is a named semaphore, left in /dev/shm by a run killed -9.)"""

    def __init__(self, rate: float, clock: Any, token: tuple[Connection, Connection]):
        self.rate = rate
        self.clock = clock  # RawValue("d"): monotonic time the next slot starts
        self.token = token  # (read end, write end), held so their descriptors stay open
        self._take, self._give = token[0].fileno(), token[1].fileno()

    def __call__(self, n: int) -> None:
        os.read(self._take, 1)  # waits while another worker holds the byte
        try:
            now = time.monotonic()
            start = max(now, self.clock.value)
            self.clock.value = end = start + n / self.rate
        finally:
            os.write(self._give, b"\0")
        if end > now:
            time.sleep(end - now)


_THROTTLE: list[Optional[Throttle]] = [None]


def _read_budget(n: int) -> None:
    throttle = _THROTTLE[0]
    if throttle is not None and n > 0:
        throttle(n)


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
        _THROTTLE[0] = Throttle(limits.bwlimit, limits.clock, limits.token)
    if limits.idle_io:
        _idle_io()
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


GONE = "the drive is gone (unmounted or replaced)"


def _drive_there(batch: CopyBatch) -> bool:
    """Whether dst_root is still the drive the batch was meant for (not the bare mount point)."""
    if batch.root_id == (0, 0):
        return True
    try:
        st = os.stat(batch.dst_root)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == batch.root_id


@dataclass
class WorkerLimits:
    bwlimit: float = 0.0  # bytes per second read from the sources, 0: no limit
    idle_io: bool = True  # idle I/O priority, where the OS has it
    clock: Any = None  # the throttle's shared clock: RawValue("d")
    token: Any = None  # the clock's lock: a pipe (read end, write end) holding one byte


def _idle_io() -> None:
    """Be gentle on the fileserver: idle I/O class (Linux), so its users come first."""
    try:
        import psutil

        psutil.Process().ionice(psutil.IOPRIO_CLASS_IDLE)
    except (ImportError, AttributeError, OSError, ValueError):
        pass  # not offered here: normal priority


DROP_AT = 256 * 1024  # written files this big leave the page cache (small ones cost more than they hold)


def _drop_cache(fd: int) -> None:
    """What we wrote to the drive: nobody will read it soon, so it need not stay cached
    (this also starts writing it out)."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):
        pass


def _read_once(fd: int) -> None:
    """What we read from the source: a hint that it is read once.  Not DONTNEED, which would
    also evict pages the fileserver's users are reading."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_NOREUSE)
    except (OSError, AttributeError):
        pass


_BATCH_DIR: dict[str, str] = {}


def _batch_dir(batch: CopyBatch) -> str:
    """A fresh directory under .mvcopy-tmp for each batch's temporary files: creating files
    in one directory whose entries are forever renamed away is slow on some filesystems."""
    key = f"{batch.volume_key}/{batch.batch_id}"
    path = _BATCH_DIR.get(key)
    if path is None:
        _BATCH_DIR.clear()
        path = os.path.join(batch.tmpdir, f"{os.getpid()}-{batch.batch_id}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        _BATCH_DIR[key] = path
    return path


def copy_batch(batch: CopyBatch, stop: Any, report: Callable[[Any], None]) -> BatchDone:
    if batch.volume_key != _VOLUME_KEY[0]:
        _MADE_DIRS.clear()
        _VOLUME_KEY[0] = batch.volume_key
    outcomes: list[Outcome] = []
    items = batch.items
    if not _drive_there(batch):
        return BatchDone(batch.batch_id, tuple(_outcome(it[0], DRIVE_ERROR, GONE) for it in items))
    try:
        tmpdir = _batch_dir(batch)
    except OSError as err:  # the drive refuses even a folder: full, read-only, or failing
        status = NO_SPACE if is_no_space(err) else DRIVE_ERROR
        detail = GONE if not _drive_there(batch) else err.strerror or str(err)
        first = _outcome(items[0][0], status, detail)
        return BatchDone(batch.batch_id, (first, *(_outcome(it[0], NOT_DONE) for it in items[1:])))
    group: Optional[_Group] = None
    for pos, item in enumerate(items):
        if stop.is_set():
            if group is not None:
                _commit_group(batch, group, outcomes)
                group = None  # committed once: a second commit would find it gone
            outcomes.extend(_outcome(it[0], NOT_DONE) for it in items[pos:])
            break
        dest = item[7] or item[1]
        if group is not None and not dest.startswith(group.prefix):
            stopped = _commit_group(batch, group, outcomes)
            group = None
            if stopped:
                outcomes.extend(_outcome(it[0], NOT_DONE) for it in items[pos:])
                break
        if group is None:
            group = _open_group(batch, tmpdir, item)
        if group is None:
            outcome = _copy_one(batch, tmpdir, item, stop, report)
        elif dest == group.rel:  # the staged folder's own entry: the staging folder is it
            outcome = (item[0], OK, 0, item[4], "", 0, None)
            group.done.append((len(outcomes), "", True))
        else:
            name = dest[len(group.prefix) :]
            # Its folder may not be in the batch (that folder's own entry lives on another
            # volume): made here, as _make_parents makes it for an entry copied alone.
            _make_parents(group.path, name)
            outcome = _copy_one(batch, tmpdir, item, stop, report, staged=f"{group.path}/{name}")
            if outcome[1] == OK:
                group.done.append((len(outcomes), name, item[2] == DIR))
        outcomes.append(outcome)
        if outcome[1] in (NO_SPACE, DRIVE_ERROR, NOT_DONE):
            if group is not None:
                _commit_group(batch, group, outcomes)
                group = None
            outcomes.extend(_outcome(it[0], NOT_DONE) for it in items[pos + 1 :])
            break
    if group is not None:
        _commit_group(batch, group, outcomes)
    # The emptied folder stays until the volume is committed: on a journal-less ext4, every
    # file created after a deletion scans past the freed inode (kernel: recently_deleted), and
    # one rmdir a batch made that 10 % of the whole copy's time.
    _BATCH_DIR.pop(f"{batch.volume_key}/{batch.batch_id}", None)
    return BatchDone(batch.batch_id, tuple(outcomes))


def _copy_one(
    batch: CopyBatch,
    tmpdir: str,
    item: CopyItem,
    stop: Any,
    report: Callable[[Any], None],
    staged: Optional[str] = None,
) -> Outcome:
    """Copy one entry to a temporary name and rename it into place; with ``staged`` (a file or
    link of a staged folder), copy it to that name and leave it there for the folder's rename."""
    index, rel, kind, size, mtime_ns, mode, target, dest = item
    dest = dest or rel
    final = f"{batch.dst_root}/{dest}"
    tmp = staged or f"{tmpdir}/{index}"
    try:
        if kind == FILE:
            if size < len(_BUF):
                got = _copy_small(f"{batch.src_root}/{rel}", tmp, size, mtime_ns, mode, batch.hash)
            else:
                got = None
            if got is None:  # large, sparse, or grown past the buffer since the scan
                got = _copy_file(f"{batch.src_root}/{rel}", tmp, mode, stop, report, batch.hash)
            faults.point("before-rename")
            if staged is None:
                _make_parents(batch.dst_root, dest)
                os.rename(tmp, final)
            return (index, OK, *got)
        if kind == DIR:
            if staged is not None:
                os.mkdir(staged, 0o700)
                return (index, OK, 0, mtime_ns, "", 0, None)
            _make_parents(batch.dst_root, dest)
            if not _make_dir(final):
                return _outcome(index, CONFLICT, "a file is in the way on the drive")
            return (index, OK, 0, mtime_ns, "", 0, None)
        assert kind == LINK and target is not None
        os.symlink(target, tmp)
        os.utime(tmp, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        if staged is None:
            _make_parents(batch.dst_root, dest)  # only now: the temp file proved the drive is there
            os.rename(tmp, final)
        return (index, OK, 0, mtime_ns, "", 0, None)
    except _Stop:
        _unlink(tmp)
        return _outcome(index, NOT_DONE)
    except _SourceError as err:
        _unlink(tmp)
        if err.err.errno == errno.ENOENT:
            return _outcome(index, VANISHED, "vanished since the scan")
        return _outcome(index, FAILED, f"cannot read: {err.err.strerror or err.err}")
    except _Unstable as err:
        _unlink(tmp)
        return _outcome(index, FAILED, str(err))
    except OSError as err:
        _unlink(tmp)
        return _drive_refused(batch, index, err)


def _make_dir(path: str) -> bool:
    """Make a folder (private until the volume is closed); False if a file is in the way."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    return True


def _drive_refused(batch: CopyBatch, index: int, err: OSError) -> Outcome:
    """The Outcome of an entry whose write or rename on the drive failed with ``err``."""
    if err.errno == errno.ENOENT and not _drive_there(batch):
        return _outcome(index, DRIVE_ERROR, GONE)
    if is_no_space(err):
        return _outcome(index, NO_SPACE, err.strerror or "")
    if is_drive_gone(err):
        return _outcome(index, DRIVE_ERROR, err.strerror or str(err))
    if err.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY):
        return _outcome(index, CONFLICT, "something else is in the way on the drive")
    return _outcome(index, FAILED, f"the drive refused it: {err.strerror or err}")


# -- staged folders ------------------------------------------------------------------
#
# A rename costs about as much as the rest of a small file's copy (two folders changed, and
# a lock for the whole filesystem when they differ).  So when a batch reaches a folder the
# drive does not have yet, what goes into it (files, links, subfolders, as deep as the
# batch goes) is written under its own names into a staging folder in the batch's temp
# folder, and the staging folder is renamed into place once, when the batch leaves it.
# Nothing partial is ever under a final name: the staging folder holds only complete files
# when it moves.  If the folder has appeared meanwhile (another batch of the same folder,
# another worker making parents), each entry is moved into it on its own, as one copied
# alone would be.


@dataclass
class _Group:
    rel: str  # the staged folder on the drive, relative to its root
    path: str  # the staging folder
    # Each complete entry: its position in the outcomes, its path under rel ("": the folder
    # itself), whether it is a folder.
    done: list[tuple[int, str, bool]]

    @property
    def prefix(self) -> str:
        return self.rel + "/"


def _open_group(batch: CopyBatch, tmpdir: str, item: CopyItem) -> Optional[_Group]:
    """A staging folder for the folder ``item`` makes (a folder) or goes into (a file or link),
    when the drive has no such folder yet (as far as this worker knows); else None."""
    if item[2] == DIR:
        dest = item[7] or item[1]
    else:
        dest = _folder_of(item)[:-1]
        if not dest:
            return None
    full = f"{batch.dst_root}/{dest}"
    if full in _MADE_DIRS:
        return None
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        pass
    except OSError:
        return None  # the copy itself will meet the error and report it
    else:
        if stat.S_ISDIR(st.st_mode):
            _MADE_DIRS.add(full)  # there already: what goes in is renamed into it one by one
        return None
    path = f"{tmpdir}/{item[0]}.d"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:  # left by a killed run of the same process id and batch number
        shutil.rmtree(path, ignore_errors=True)
        try:
            os.mkdir(path, 0o700)
        except OSError:
            return None
    except OSError:
        return None
    return _Group(dest, path, [])


def _commit_group(batch: CopyBatch, group: _Group, outcomes: list[Outcome]) -> bool:
    """Move a staged folder into place: at once if the drive still has no such folder, else
    entry by entry.  Returns whether the batch must stop (the drive is full or failing)."""
    if not group.done:
        return False
    if not _drive_there(batch):  # pulled meanwhile: make no parents on the bare mount point
        for k, (pos, _name, _is_dir) in enumerate(group.done):
            index = outcomes[pos][0]
            outcomes[pos] = _outcome(index, DRIVE_ERROR, GONE) if k == 0 else _outcome(index, NOT_DONE)
        return True
    final = f"{batch.dst_root}/{group.rel}"
    try:
        _make_parents(batch.dst_root, group.rel)
        faults.point("before-folder-rename")
        rename_noreplace(group.path, final)
        _MADE_DIRS.add(final)
        return False
    except OSError:
        pass  # there now (or the drive refuses): one entry at a time tells each what happened
    stop = False
    for pos, name, is_dir in group.done:  # in the batch's order: a folder before what is in it
        index = outcomes[pos][0]
        rel = f"{group.rel}/{name}" if name else group.rel
        there = f"{batch.dst_root}/{rel}"
        if stop:
            outcomes[pos] = _outcome(index, NOT_DONE)
            continue
        try:
            _make_parents(batch.dst_root, rel)
            if not is_dir:
                os.rename(f"{group.path}/{name}", there)
            elif _make_dir(there):
                _MADE_DIRS.add(there)
            else:
                outcomes[pos] = _outcome(index, CONFLICT, "a file is in the way on the drive")
        except OSError as err:
            outcomes[pos] = _drive_refused(batch, index, err)
            stop = outcomes[pos][1] in (NO_SPACE, DRIVE_ERROR)
    return stop


class _SourceError(Exception):
    def __init__(self, err: OSError):
        super().__init__(err)
        self.err = err


class _Unstable(Exception):
    pass


def _make_parents(root: str, rel: str) -> None:
    cut = rel.rfind("/")
    if cut < 0:
        return
    full = f"{root}/{rel[:cut]}"
    if full in _MADE_DIRS:
        return
    _mkdirs(root, rel[:cut])
    _MADE_DIRS.add(full)


def _mkdirs(root: str, rel: str) -> None:
    """``os.makedirs`` with every new level private (0o700; the workers' umask is 0): a folder's
    own mode is set when the volume is closed."""
    path = root
    for part in rel.split("/"):
        path = f"{path}/{part}"
        if path in _MADE_DIRS:
            continue
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass


# Copied, a file's mode comes from open() (the workers' umask is 0), not from a chmod after.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_OPEN_SOURCE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a FIFO put there since the scan
# Reading a source leaves its access time as it was (and the copy gets that one).  The
# kernel allows it to root and to a file's owner; for other files the open is repeated
# without it.
_NOATIME = [getattr(os, "O_NOATIME", 0)]


def _open_source(src: str) -> int:
    try:
        try:
            return os.open(src, _OPEN_SOURCE | _NOATIME[0])
        except PermissionError:
            if not _NOATIME[0]:
                raise
            if os.geteuid() == 0:
                _NOATIME[0] = 0  # root without CAP_FOWNER here (a user namespace, root squash)
            return os.open(src, _OPEN_SOURCE)
    except OSError as err:
        raise _SourceError(err) from None


def _keep_special_bits(fd: int, mode: int) -> None:
    """Writing clears set-user-ID and set-group-ID (unless we may keep them, as root may): set
    the mode once more, after the data, for a file that has them."""
    if mode & 0o6000:
        try:
            os.fchmod(fd, mode & 0o7777)
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.ENOSYS):
                raise  # a drive that keeps no modes says so; the mode is in the records


def _create(tmp: str, mode: int) -> int:
    try:
        return os.open(tmp, _CREATE, mode & 0o7777)
    except FileExistsError:  # left by a killed run of the same process id and batch number
        os.unlink(tmp)
        return os.open(tmp, _CREATE, mode & 0o7777)


def _copy_small(
    src: str, tmp: str, size: int, mtime_ns: int, mode: int, hashing: bool
) -> Optional[tuple[int, int, str, int, Optional[str]]]:
    """A file that fits the buffer, in as few system calls as it takes: read it whole, *then*
    fstat it, and keep the data only if size and mtime are still those expected (the scan's
    at first): a change during the read shows in the fstat after it.  Returns what the
    Outcome needs after its status (size, mtime, detail, reported, sha256), or None when the
    file is not small after all (or is sparse), for the general path."""
    view = memoryview(_BUF)
    for _attempt in range(UNSTABLE_RETRIES):
        fsrc = _open_source(src)
        try:
            try:
                n = os.readv(fsrc, [view])
            except OSError as err:
                raise _SourceError(err) from None
            st = os.fstat(fsrc)
        finally:
            os.close(fsrc)
        if not stat.S_ISREG(st.st_mode):
            raise _SourceError(OSError(errno.EINVAL, "no longer a regular file"))
        if n != st.st_size or n == len(view) or (n > 4096 and st.st_blocks * 512 < n):
            return None  # grown, short read, or sparse
        if n != size or st.st_mtime_ns != mtime_ns:
            size, mtime_ns = n, st.st_mtime_ns  # changed since the scan: read again to be sure
            continue
        _read_budget(n)
        data = view[:n]
        fdst = _create(tmp, mode)
        try:
            done = 0
            while done < n:
                done += os.write(fdst, data[done:])
            _keep_special_bits(fdst, mode)
            os.utime(fdst, ns=(st.st_atime_ns, mtime_ns))
        finally:
            os.close(fdst)
        return n, mtime_ns, "", 0, hashlib.sha256(data).hexdigest() if hashing else None
    raise _Unstable(f"kept changing while it was copied ({UNSTABLE_RETRIES} tries)")


def _copy_file(
    src: str, tmp: str, mode: int, stop: Any, report: Callable[[Any], None], hashing: bool
) -> tuple[int, int, str, int, Optional[str]]:
    """Copy ``src`` to ``tmp`` with mode and mtime; retried while the source changes under us.

    Returns what the Outcome needs after its status: size, mtime, detail (empty), the bytes
    told in Progress messages, and the SHA-256 of what was written (None when not hashing).
    """
    reported = 0
    for _attempt in range(UNSTABLE_RETRIES):
        fsrc = _open_source(src)
        try:
            before = os.fstat(fsrc)
            if not stat.S_ISREG(before.st_mode):
                raise _SourceError(OSError(errno.EINVAL, "no longer a regular file"))
            _read_once(fsrc)
            fdst = _create(tmp, mode)
            try:
                if before.st_blocks * 512 < before.st_size:
                    told, digest = _copy_sparse(fsrc, fdst, before.st_size, hashing, stop, report)
                elif hashing:
                    told, digest = _copy_hashed(fsrc, fdst, stop, report)
                else:
                    told, digest = _copy_data(fsrc, fdst, before, stop, report), None
                reported += told
                _keep_special_bits(fdst, mode)
                os.utime(fdst, ns=(before.st_atime_ns, before.st_mtime_ns))
                if before.st_size >= DROP_AT:
                    _drop_cache(fdst)
            finally:
                os.close(fdst)
            after = os.fstat(fsrc)
        finally:
            os.close(fsrc)
        if after.st_size == before.st_size and after.st_mtime_ns == before.st_mtime_ns:
            return before.st_size, before.st_mtime_ns, "", reported, digest
        os.unlink(tmp)
    raise _Unstable(f"kept changing while it was copied ({UNSTABLE_RETRIES} tries)")


def _copy_sparse(
    fsrc: int, fdst: int, size: int, hashing: bool, stop: Any, report: Callable[[Any], None]
) -> tuple[int, Optional[str]]:
    """Copy only the data extents of a sparse file, leaving holes where the drive keeps them.

    The hash covers the whole file, holes as the zeros they read as.
    """
    digest = hashlib.sha256() if hashing else None
    view = memoryview(_BUF)
    pos = told = unreported = 0
    while pos < size:
        if stop.is_set():
            raise _Stop()
        try:
            data = os.lseek(fsrc, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno != errno.ENXIO:  # ENXIO: no data after pos, the rest is a hole
                raise _SourceError(err) from None
            data = size
        if digest is not None:
            _hash_zeros(digest, data - pos)
        pos = data
        if pos >= size:
            break
        end = os.lseek(fsrc, pos, os.SEEK_HOLE)
        while pos < end:
            try:
                n = os.preadv(fsrc, [view[: min(len(view), end - pos)]], pos)
            except OSError as err:
                raise _SourceError(err) from None
            if n == 0:
                break
            _read_budget(n)
            chunk = view[:n]
            if digest is not None:
                digest.update(chunk)
            done = 0
            while done < n:
                done += os.pwrite(fdst, chunk[done:], pos + done)
            pos += n
            unreported += n
            if unreported >= PROGRESS_EVERY:
                report(Progress(unreported))
                told += unreported
                unreported = 0
    os.ftruncate(fdst, size)
    return told, digest.hexdigest() if digest is not None else None


_ZEROS = memoryview(bytes(1024 * 1024))


def _hash_zeros(digest: Any, n: int) -> None:
    while n > 0:
        k = min(n, len(_ZEROS))
        digest.update(_ZEROS[:k])
        n -= k


def _copy_hashed(fsrc: int, fdst: int, stop: Any, report: Callable[[Any], None]) -> tuple[int, str]:
    """One pass: read into a reused buffer, hash it, write it.  Returns bytes told and the digest."""
    digest = hashlib.sha256()
    view = memoryview(_BUF)
    unreported = told = 0
    while True:
        if stop.is_set():
            raise _Stop()
        try:
            n = os.readv(fsrc, [view])
        except OSError as err:
            raise _SourceError(err) from None
        if n == 0:
            return told, digest.hexdigest()
        _read_budget(n)
        chunk = view[:n]
        digest.update(chunk)
        done = 0
        while done < n:
            done += os.write(fdst, chunk[done:])
        unreported += n
        if unreported >= PROGRESS_EVERY:
            report(Progress(unreported))
            told += unreported
            unreported = 0


def _copy_data(fsrc: int, fdst: int, st: os.stat_result, stop: Any, report: Callable[[Any], None]) -> int:
    """Copy the data; tells Progress every 32 MiB (small files cost no message). Returns bytes told."""
    dst_dev = os.fstat(fdst).st_dev
    key = (st.st_dev, dst_dev)
    method = _METHOD.get(key, "copy_file_range")
    unreported = 0
    told = 0
    while True:
        if stop.is_set():
            raise _Stop()
        chunk = CHUNK if _THROTTLE[0] is None else len(_BUF)  # small steps when throttled
        try:
            if method == "copy_file_range":
                n = os.copy_file_range(fsrc, fdst, chunk)
            elif method == "sendfile":
                n = os.sendfile(fdst, fsrc, None, chunk)
            else:
                n = _read_write(fsrc, fdst)
        except OSError as err:
            if (
                err.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)
                and method != "readwrite"
            ):
                # Not supported between these two filesystems: fall back, once per pair.
                method = "sendfile" if method == "copy_file_range" else "readwrite"
                _METHOD[key] = method
                continue
            if err.errno == errno.EIO and not _drive_writable(fdst):
                raise
            if err.errno in (errno.EIO, errno.EACCES, errno.EPERM) and _source_side(fsrc):
                raise _SourceError(err) from None
            raise
        _METHOD[key] = method
        if n == 0:
            break
        _read_budget(n)
        unreported += n
        if unreported >= PROGRESS_EVERY:
            report(Progress(unreported))
            told += unreported
            unreported = 0
    return told


_BUF = bytearray(1024 * 1024)


def _read_write(fsrc: int, fdst: int) -> int:
    view = memoryview(_BUF)
    try:
        n = os.readv(fsrc, [view])
    except OSError as err:
        raise _SourceError(err) from None
    done = 0
    while done < n:
        done += os.write(fdst, view[done:n])
    return n


def _drive_writable(fdst: int) -> bool:
    try:
        os.fstat(fdst)
        os.fsync(fdst)
        return True
    except OSError:
        return False


def _source_side(fsrc: int) -> bool:
    """After an ambiguous error from an in-kernel copy, whether the source is the culprit."""
    try:
        os.pread(fsrc, 1, 0)
        return False
    except OSError:
        return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# -- parent side --------------------------------------------------------------------


class WorkerDied(Exception):
    pass


class StopFlag:
    """Set by the parent when the drive is full or the run is interrupted; read by the workers
    before every file and every chunk.  One byte of shared memory without a lock: a
    ``multiprocessing.Event`` took 3 us a look, several looks a file, and its lock is a named
    semaphore.  The byte lives in a file in /dev/shm unlinked as soon as it is made, so a
    killed run leaves nothing of it behind."""

    def __init__(self, ctx: Any):
        self._flag = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._flag.value = 1

    def clear(self) -> None:
        self._flag.value = 0

    def is_set(self) -> bool:
        return bool(self._flag.value)


class _DeferredInterrupt:
    """While batches are out, SIGINT, SIGTERM and SIGHUP tell the workers to stop and are
    raised as KeyboardInterrupt only at :meth:`check`, between two messages.  Raised at any
    moment, one could land after a result was read from a worker and before it was counted:
    that batch would be lost and the drain after the interrupt would wait for it forever."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, stop: StopFlag):
        self.stop = stop
        self.caught: list[int] = []
        self.old: dict[int, Any] = {}

    def _note(self, signum: int, frame: object) -> None:
        self.caught.append(signum)
        self.stop.set()

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():  # only it may set handlers
            self.old = {sig: signal.signal(sig, self._note) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)

    def check(self) -> None:
        if self.caught:
            raise KeyboardInterrupt


class CopyPool:
    """A fixed set of worker processes; :meth:`run` copies one stream of batches.

    Each worker has a duplex pipe of its own (a socketpair: no named semaphore, unlike a
    ``multiprocessing.Queue``, whose locks only multiprocessing's resource tracker unlinks,
    and which a run killed with its process group left in /dev/shm for good).  Batches go
    to the worker with the fewest out, at most :attr:`DEPTH` each, so the queue stays short.
    """

    DEPTH = 2  # batches out at one worker: the one it copies and the next, so it never waits

    def __init__(self, workers: int, bwlimit: float = 0.0, idle_io: bool = True):
        ctx = multiprocessing.get_context("spawn")
        self.workers = max(1, workers)
        self.limits = limits = WorkerLimits(bwlimit, idle_io)
        if bwlimit:
            limits.clock = ctx.RawValue("d", 0.0)
            limits.token = ctx.Pipe(duplex=False)
            os.write(limits.token[1].fileno(), b"\0")  # the clock's lock, free
        # Ctrl-C (and SIGTERM, SIGHUP) go to the whole process group.  An ignored signal
        # survives exec and Python leaves it ignored, so children started now cannot be killed
        # half-imported by one; the parent decides what an interrupt means.
        stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in stops}
        try:
            self.stop = StopFlag(ctx)
            self.conns: list[Connection] = []
            self.procs: list[Any] = []
            for _ in range(self.workers):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(
                    target=worker_main, args=(theirs, self.stop, os.getpid(), limits), daemon=True
                )
                proc.start()
                # The worker has its own copy of its end (passed at exec); without ours, its
                # death reads here as the end of the pipe, and a send to it fails at once.
                theirs.close()
                self.conns.append(mine)
                self.procs.append(proc)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def run(
        self,
        batches: Iterator[CopyBatch],
        handle: Callable[[BatchDone], bool],
        progress: Callable[[int], None],
    ) -> bool:
        """Copy every batch; ``handle`` returns False to stop early (drive full).

        Returns True when every batch was handed out and finished.  On
        KeyboardInterrupt, in-flight batches are drained (and handled) before
        it propagates, so the caller can commit what was copied.
        """
        out = dict.fromkeys(self.conns, 0)  # batches out at each worker
        stopping = False
        exhausted = False
        with _DeferredInterrupt(self.stop) as interrupt:
            try:
                while True:
                    interrupt.check()
                    if not stopping and not exhausted:
                        exhausted = self._hand_out(batches, out)
                    busy = [conn for conn, n in out.items() if n]
                    if not busy:
                        break
                    for conn in self._ready(busy):
                        interrupt.check()  # here, between messages: nothing read is lost
                        msg = self._recv(conn)
                        if isinstance(msg, Progress):
                            progress(msg.nbytes)
                            continue
                        out[conn] -= 1
                        if not handle(msg) and not stopping:
                            stopping = True
                            self.stop.set()
                interrupt.check()
            except KeyboardInterrupt:
                self.stop.set()
                while busy := [conn for conn, n in out.items() if n]:
                    for conn in self._ready(busy):
                        msg = self._recv(conn)
                        if isinstance(msg, BatchDone):
                            out[conn] -= 1
                            handle(msg)
                self.stop.clear()
                raise
        self.stop.clear()
        return exhausted and not stopping

    def _hand_out(self, batches: Iterator[CopyBatch], out: dict[Connection, int]) -> bool:
        """Give batches to the workers with the fewest out until each has DEPTH; True when
        there are no more batches."""
        while True:
            conn = min(out, key=out.__getitem__)
            if out[conn] >= self.DEPTH:
                return False
            batch = next(batches, None)
            if batch is None:
                return True
            self._send(conn, batch)
            out[conn] += 1

    def _ready(self, busy: list[Connection]) -> list[Any]:
        """The pipes among ``busy`` with a message.  Waits 2 s at a time, then checks that the
        workers live: a dead worker's pipe reads as ended, but only a busy one is waited on."""
        while True:
            ready = wait(busy, timeout=2.0)
            if ready:
                return ready
            self._check_workers()

    def _recv(self, conn: Connection) -> Any:
        try:
            return conn.recv()
        except (EOFError, OSError):  # the worker's end closed: it died
            raise self._died(conn) from None

    def _send(self, conn: Connection, batch: CopyBatch) -> None:
        try:
            conn.send(batch)
        except OSError:  # EPIPE: the worker died (at start-up, say)
            raise self._died(conn) from None

    def _died(self, conn: Connection) -> WorkerDied:
        proc = self.procs[self.conns.index(conn)]
        proc.join(timeout=1.0)  # its pipe closed as it died: let it finish, for its exit code
        return WorkerDied(f"a copy worker died (exit code {proc.exitcode})")

    def _check_workers(self) -> None:
        dead = [p for p in self.procs if not p.is_alive()]
        if dead:
            raise WorkerDied(f"a copy worker died (exit code {dead[0].exitcode})") from None

    def close(self) -> None:
        """End the workers.  Closing a worker's pipe is its sentinel; the stop flag first makes
        one still busy (after an error in the run) abandon its batch; one still there after
        5 s is killed."""
        self.stop.set()
        for conn in self.conns:
            conn.close()
        for p in self.procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.kill()  # workers ignore SIGTERM
                p.join(timeout=1.0)
        if self.limits.token is not None:
            for end in self.limits.token:
                end.close()

    def __enter__(self) -> CopyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
