"""Copying one file's bytes from the sources to a temporary name on the drive, with its owner,
ACLs, extended attributes, mode and times (set on the temporary file, after its data: writing
clears set-user-ID and file capabilities), hashed in the same pass: the small-file path (one
read, then a check that the file did not change meanwhile), the large-file path (a reused
buffer, or an in-kernel copy when not hashing), and sparse files (their holes kept).  A file
that changes while it is copied is read again, three times at most.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from typing import Any, Callable, Optional

from .. import metadata
from .protocol import Progress
from .state import STATE

CHUNK = 8 * 1024 * 1024  # an in-kernel copy's step
PROGRESS_EVERY = 32 * 1024 * 1024  # a large file tells its progress this often
UNSTABLE_RETRIES = 3
DROP_AT = 256 * 1024  # written files this big leave the page cache (small ones cost more than they hold)


class SourceError(Exception):
    """The source could not be read (the error is ``err``): not the drive's fault."""

    def __init__(self, err: OSError):
        super().__init__(err)
        self.err = err


class Unstable(Exception):
    """The source kept changing while it was copied."""


class Stopped(Exception):
    """The run stopped (the drive filled, an interrupt): the file in hand is abandoned."""


# Copied, a file's mode comes from open() (the workers' umask is 0), not from a chmod after.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_OPEN_SOURCE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a FIFO put there since the scan


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


def _open_source(src: str) -> int:
    try:
        try:
            return os.open(src, _OPEN_SOURCE | STATE.noatime)
        except PermissionError:
            if not STATE.noatime:
                raise
            if os.geteuid() == 0:
                STATE.noatime = 0  # root without CAP_FOWNER here (a user namespace, root squash)
            return os.open(src, _OPEN_SOURCE)
    except OSError as err:
        raise SourceError(err) from None


Meta = tuple[int, int, Optional[str], metadata.Keep]  # uid, gid, attributes, what the job keeps


def _set_metadata(fd: int, mode: int, meta: Optional[Meta]) -> int:
    """After the data: owner, attributes, then the mode once more where it is needed (writing,
    and a chown, clear set-user-ID and set-group-ID unless we may keep them; an access ACL
    sets the group bits).  The file was just made in a folder of ours that has no default ACL
    nor set-group-ID bit (:func:`~.worker.batch_dir`): it is ours, with no attribute and the
    mode it was created with, so what it already has is not set again (a small file's copy is
    paid by the system call).  Returns the metadata.LOST_* flags of what the drive refused."""
    if meta is None:
        uid = gid = metadata.UNKNOWN_ID
        xattrs, keep = None, metadata.Keep(False, False, False)
    else:
        uid, gid, xattrs, keep = meta
    if not keep.owner or uid == _EUID:
        uid = metadata.UNKNOWN_ID
    if not keep.owner or gid == _EGID:
        gid = metadata.UNKNOWN_ID
    if not keep.any_attributes:
        xattrs = None
    acl = xattrs is not None and metadata.ACL_ACCESS in xattrs
    if uid == gid == metadata.UNKNOWN_ID and xattrs is None:
        if mode & 0o6000:
            return metadata.apply(fd, uid, gid, None, mode, keep)
        return 0
    return metadata.apply(fd, uid, gid, xattrs, mode if mode & 0o6000 or acl else None, keep)


_EUID, _EGID = os.geteuid(), os.getegid()  # the owner of what a worker creates


def _create(tmp: str, mode: int) -> int:
    try:
        return os.open(tmp, _CREATE, mode & 0o7777)
    except FileExistsError:  # left by a killed run of the same process id and batch number
        os.unlink(tmp)
        return os.open(tmp, _CREATE, mode & 0o7777)


def copy_small(
    src: str, tmp: str, size: int, mtime_ns: int, mode: int, hashing: bool, meta: Optional[Meta] = None
) -> Optional[tuple[int, int, str, int, Optional[str], int]]:
    """A file that fits the buffer, in as few system calls as it takes: read it whole, *then*
    fstat it, and keep the data only if size and mtime are still those expected (the scan's
    at first): a change during the read shows in the fstat after it.  Returns what the
    Outcome needs after its status (size, mtime, detail, reported, sha256, lost), or None when
    the file is not small after all (or is sparse), for the general path."""
    view = memoryview(STATE.buf)
    for _attempt in range(UNSTABLE_RETRIES):
        fsrc = _open_source(src)
        try:
            try:
                n = os.readv(fsrc, [view])
            except OSError as err:
                raise SourceError(err) from None
            st = os.fstat(fsrc)
        finally:
            os.close(fsrc)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(OSError(errno.EINVAL, "no longer a regular file"))
        if n != st.st_size or n == len(view) or (n > 4096 and st.st_blocks * 512 < n):
            return None  # grown, short read, or sparse
        if n != size or st.st_mtime_ns != mtime_ns:
            size, mtime_ns = n, st.st_mtime_ns  # changed since the scan: read again to be sure
            continue
        STATE.read_budget(n)
        data = view[:n]
        fdst = _create(tmp, mode)
        try:
            done = 0
            while done < n:
                done += os.write(fdst, data[done:])
            lost = _set_metadata(fdst, mode, meta)
            os.utime(fdst, ns=(st.st_atime_ns, mtime_ns))
        finally:
            os.close(fdst)
        return n, mtime_ns, "", 0, hashlib.sha256(data).hexdigest() if hashing else None, lost
    raise Unstable(f"kept changing while it was copied ({UNSTABLE_RETRIES} tries)")


def copy_file(
    src: str,
    tmp: str,
    mode: int,
    stop: Any,
    report: Callable[[Any], None],
    hashing: bool,
    meta: Optional[Meta] = None,
) -> tuple[int, int, str, int, Optional[str], int]:
    """Copy ``src`` to ``tmp`` with its metadata, mode and mtime; retried while the source
    changes under us.

    Returns what the Outcome needs after its status: size, mtime, detail (empty), the bytes
    told in Progress messages, the SHA-256 of what was written (None when not hashing), and
    the metadata.LOST_* flags of what the drive refused.
    """
    reported = 0
    for _attempt in range(UNSTABLE_RETRIES):
        fsrc = _open_source(src)
        try:
            before = os.fstat(fsrc)
            if not stat.S_ISREG(before.st_mode):
                raise SourceError(OSError(errno.EINVAL, "no longer a regular file"))
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
                lost = _set_metadata(fdst, mode, meta)
                os.utime(fdst, ns=(before.st_atime_ns, before.st_mtime_ns))
                if before.st_size >= DROP_AT:
                    _drop_cache(fdst)
            finally:
                os.close(fdst)
            after = os.fstat(fsrc)
        finally:
            os.close(fsrc)
        if after.st_size == before.st_size and after.st_mtime_ns == before.st_mtime_ns:
            return before.st_size, before.st_mtime_ns, "", reported, digest, lost
        os.unlink(tmp)
    raise Unstable(f"kept changing while it was copied ({UNSTABLE_RETRIES} tries)")


def _copy_sparse(
    fsrc: int, fdst: int, size: int, hashing: bool, stop: Any, report: Callable[[Any], None]
) -> tuple[int, Optional[str]]:
    """Copy only the data extents of a sparse file, leaving holes where the drive keeps them.

    The hash covers the whole file, holes as the zeros they read as.
    """
    digest = hashlib.sha256() if hashing else None
    view = memoryview(STATE.buf)
    pos = told = unreported = 0
    while pos < size:
        if stop.is_set():
            raise Stopped()
        try:
            data = os.lseek(fsrc, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno != errno.ENXIO:  # ENXIO: no data after pos, the rest is a hole
                raise SourceError(err) from None
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
                raise SourceError(err) from None
            if n == 0:
                break
            STATE.read_budget(n)
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
    view = memoryview(STATE.buf)
    unreported = told = 0
    while True:
        if stop.is_set():
            raise Stopped()
        try:
            n = os.readv(fsrc, [view])
        except OSError as err:
            raise SourceError(err) from None
        if n == 0:
            return told, digest.hexdigest()
        STATE.read_budget(n)
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
    method = STATE.methods.get(key, "copy_file_range")
    unreported = 0
    told = 0
    while True:
        if stop.is_set():
            raise Stopped()
        chunk = CHUNK if STATE.throttle is None else len(STATE.buf)  # small steps when throttled
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
                STATE.methods[key] = method
                continue
            if err.errno == errno.EIO and not _drive_writable(fdst):
                raise
            if err.errno in (errno.EIO, errno.EACCES, errno.EPERM) and _source_side(fsrc):
                raise SourceError(err) from None
            raise
        STATE.methods[key] = method
        if n == 0:
            break
        STATE.read_budget(n)
        unreported += n
        if unreported >= PROGRESS_EVERY:
            report(Progress(unreported))
            told += unreported
            unreported = 0
    return told


def _read_write(fsrc: int, fdst: int) -> int:
    view = memoryview(STATE.buf)
    try:
        n = os.readv(fsrc, [view])
    except OSError as err:
        raise SourceError(err) from None
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


def unlink_quietly(path: str) -> None:
    """Remove a temporary file of ours if it is there: the error that brought us here is the one
    to report, not this one's."""
    try:
        os.unlink(path)
    except OSError:
        pass
