"""Small filesystem helpers shared by every stage: atomic writes, syncing, and
the one place that decides whether an error means "the drive is full"."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Optional, Union

from . import faults

# ENOSPC is the usual one; EDQUOT is a quota; EFBIG is FAT's 4 GiB file limit,
# which for our purpose also means "this file does not go on this drive".
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# The drive itself is failing or gone: stop the run, keep what was committed.
# EUCLEAN is how ext4 reports a filesystem it found corrupt (just before it turns read-only).
DRIVE_GONE_ERRNOS = frozenset(
    {errno.EIO, errno.EROFS, errno.ENODEV, errno.ENXIO, errno.ENOTCONN, getattr(errno, "EUCLEAN", 117)}
)


def is_no_space(err: BaseException) -> bool:
    """Whether ``err`` means there is no room for the file on this drive: it goes to another."""
    return isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS


def is_drive_gone(err: BaseException) -> bool:
    """Whether ``err`` means the drive is failing or gone: the run stops, keeping what was
    committed."""
    return isinstance(err, OSError) and err.errno in DRIVE_GONE_ERRNOS


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in ``path`` durable (a no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        # Some FUSE filesystems refuse fsync on directories; the data fsync still held.
        if err.errno not in (errno.EINVAL, errno.ENOSYS, errno.EBADF):
            raise
    finally:
        os.close(fd)


TMP_MARK = ".tmp-"


def remove_stale_temporaries(path: str) -> None:
    """Remove what an interrupted :func:`atomic_write` of ``path`` left (call with its lock held)."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = os.path.basename(path) + TMP_MARK
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            _unlink_quietly(os.path.join(directory, name))


def atomic_write(
    path: str,
    data: Union[bytes, Iterable[Union[bytes, memoryview]]],
    *,
    durable: bool = True,
    before_replace: Optional[Callable[[str], None]] = None,
) -> None:
    """Write ``data`` (bytes, or chunks of bytes) to ``path`` so that readers see the old file
    or the new one, never half.

    Temp file in the same directory, fsync, rename, fsync the directory.  ``before_replace``
    is called with the complete temporary file just before the rename (to copy it elsewhere
    first); if it raises, ``path`` is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f"{os.path.basename(path)}{TMP_MARK}{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in [data] if isinstance(data, bytes) else data:
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        if before_replace is not None:
            before_replace(tmp)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    faults.point(f"replace:{os.path.basename(path)}")
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if durable:
        fsync_dir(directory)


def read_chunks(path: str, size: int = 1 << 20) -> Iterator[bytes]:
    """A file's bytes a MiB at a time."""
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


_libc: Optional[ctypes.CDLL] = None


class Writeback:
    """While a drive is being filled, a thread asks the kernel every ``interval`` seconds to
    write the drive's dirty data out (``syncfs`` releases the GIL), so the sync before the
    manifest's commit finds little left: with much RAM the kernel would otherwise hold the
    writes back and make them only then (see docs/TECHNICAL_DECISIONS.rst, "When data is
    synced").  Nothing depends on it; commits still sync."""

    def __init__(self, path: str, interval: float = 1.0):
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writeback", daemon=True)

    def __enter__(self) -> Writeback:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # Its descriptor keeps the drive busy: gone before anyone is told to unmount (a sync
        # under way is waited for, as the commit that follows would wait for it anyway).
        self._thread.join(timeout=60)

    def _run(self) -> None:
        func = getattr(_load_libc(), "syncfs", None)
        if func is None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            while not self._stop.wait(self.interval):
                func(fd)
        finally:
            os.close(fd)


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # this process's own symbols, libc's among them
    return _libc


def syncfs(path: str) -> None:
    """Flush one filesystem (the drive) to stable storage; ``sync()`` where the C library has
    no ``syncfs``.  Raises OSError when the drive reports that data did not reach it (EIO,
    ENOSPC: Linux reports writeback errors through syncfs): what the page cache took is then
    not on the drive, and nothing may be committed as if it were.  Linux tells each open
    descriptor of the filesystem of an error once, and a descriptor opened after another one
    was told hears nothing: to answer for writes, sync through a :class:`SyncHandle` opened
    before them."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs_fd(fd, path)
    finally:
        os.close(fd)


def syncfs_fd(fd: int, path: str) -> None:
    """:func:`syncfs` through the open descriptor ``fd`` of a folder on the filesystem."""
    func = getattr(_load_libc(), "syncfs", None)
    if func is None:
        os.sync()
    elif func(fd) != 0:
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err), path)
        os.sync()


class SyncHandle:
    """A descriptor of a drive's root, kept open while the drive is in use, for the syncs that
    must hear of every write error since it was opened (:func:`syncfs`); whoever else syncs the
    filesystem meanwhile (the background :class:`Writeback`, another program) cannot hide one
    from it.  Closed with the drive: an open descriptor keeps a drive from being unmounted."""

    def __init__(self, path: str):
        self.path = path
        self.fd: Optional[int] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)

    def sync(self) -> None:
        """Flush the filesystem; OSError if data written since this handle was opened was lost."""
        if self.fd is None:
            raise OSError(errno.EBADF, "the drive was closed", self.path)
        syncfs_fd(self.fd, self.path)

    def close(self) -> None:
        """Let go of the descriptor."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


RENAME_NOREPLACE = 1  # renameat2(2): fail with EEXIST rather than replace what is there
AT_FDCWD = -100


def rename_noreplace(src: str, dst: str) -> None:
    """``rename`` that never replaces anything at ``dst``, not even an empty folder (which a
    plain rename of a folder would).  Raises OSError, ENOSYS or EINVAL among them where the
    C library or the filesystem lacks it (exFAT through FUSE has it): callers must have
    another way."""
    func = getattr(_load_libc(), "renameat2", None)
    if func is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", dst)
    if func(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), dst)


def inside(inner: str, outer: str) -> bool:
    """Whether real path ``inner`` lies strictly below ``outer``."""
    return inner != outer and (inner + os.sep).startswith(outer.rstrip(os.sep) + os.sep)


def path_inside(inner: str, outer: str) -> bool:
    """``inner`` equal to or below ``outer``, comparing real paths."""
    a, b = os.path.realpath(inner), os.path.realpath(outer)
    return a == b or inside(a, b)


def is_mount_point(path: str) -> bool:
    """Whether ``path`` is where a filesystem is mounted (a drive), not a plain folder on the
    filesystem of its parent: an unmounted USB bay is such a folder, on the server's disk."""
    if os.path.ismount(path):
        return True
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                point = line.split(" ", 5)[4]
                if unescape_mount(point) == real:
                    return True  # a bind mount of a folder of the same filesystem
    except OSError:
        pass
    return False


def unescape_mount(field: str) -> str:
    """A mount point as /proc/mounts writes it: spaces, tabs, newlines and backslashes as octal
    (``\\040``); each escape read once, left to right."""
    if "\\" not in field:
        return field
    return re.sub(r"\\(040|011|012|134)", lambda m: chr(int(m.group(1), 8)), field)


def block_size(path: str) -> int:
    """The block size of the filesystem at ``path``, what files are rounded up to (4096 when it
    says none)."""
    st = os.statvfs(path)
    return st.f_frsize or st.f_bsize or 4096


def round_up(size: int, block: int) -> int:
    """Space a file of ``size`` bytes takes on a filesystem of ``block``-byte blocks."""
    return -(-size // block) * block


# Timestamp granularities we can tell apart, finest first (ns).
_GRANULARITIES = (1, 1_000, 1_000_000, 10_000_000, 1_000_000_000, 2_000_000_000)


def probe_mtime_granularity(directory: str) -> int:
    """How finely the filesystem at ``directory`` keeps mtimes, in ns (exFAT 10 ms or 2 s, FAT 2 s)."""
    probe = os.path.join(directory, f".mvcopy-probe-{os.getpid()}")
    wanted = 1_600_000_001_987_654_321  # odd at every unit we test
    # O_EXCL: a name planted there (a symlink to a file of someone else's) is never opened.
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.utime(fd, ns=(wanted, wanted))
        got = os.lstat(probe).st_mtime_ns
    finally:
        os.close(fd)
        _unlink_quietly(probe)
    for gran in _GRANULARITIES:
        if abs(got - wanted) < gran:
            return gran
    return _GRANULARITIES[-1]


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a child process: be killed when the parent ``parent`` dies (kill -9 included), so no
    helper outlives the run."""
    try:
        _load_libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's pipes and signals still end us
    if os.getppid() != parent:
        os._exit(1)  # the parent died before we asked to be told


def give_back_free_memory() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim``).  After a big
    transient (the scan's pieces) glibc keeps the freed pages, and the later peak of the run
    comes on top of them (see docs/TECHNICAL_DECISIONS.rst, "The catalog in memory");
    elsewhere this does nothing."""
    try:
        _load_libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass
