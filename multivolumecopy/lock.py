"""Advisory locks so two runs never work on one jobfile or one drive at once.

``flock`` on a small side file, not a pid file: the kernel drops the lock when
its holder dies, so a stale lock from a killed run never blocks the next one.
The file holds a line describing the holder, quoted when the lock is refused.

A run that writes takes the lock exclusively.  One that only reads (``--verify``,
``--restore``) takes it shared: readers do not block each other, and a backup
is refused while they look, as they are while it writes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
from typing import Optional

from .clock import now_iso
from .errors import LockedError, OutputError

# A lock file is never opened through a symlink: run as root, truncating "the lock" would
# truncate whatever a planted link names.
_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
# Errors that mean "this process may not write here" rather than "something is wrong".
_NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


class FileLock:
    """A ``flock`` on the file at ``path`` (made if missing), exclusive or ``shared``; ``what``
    names what it guards when the lock is refused."""

    def __init__(self, path: str, what: str, shared: bool = False):
        self.path = path
        self.what = what
        self.shared = shared
        self.fd: Optional[int] = None
        self.created = False  # this lock made the file (the caller may remove it after)

    def acquire(self) -> FileLock:
        """Take the lock without waiting, and return it; a writer leaves a line about itself in the
        file.  Raises :class:`LockedError`, quoting the holder's line, while another run holds it."""
        for _attempt in range(REOPEN_TRIES):
            fd = self._open()
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                err = _in_use(fd, self.what)
                os.close(fd)
                raise err from None
            except OSError:
                os.close(fd)
                raise
            if _still_at(fd, self.path):
                break
            # Its maker removed the file (a run that never wrote what it guards) between our
            # open and our flock: a lock on a file no longer there guards nothing; open anew.
            os.close(fd)
        else:
            raise OutputError(
                f"cannot lock {self.path}: something removes or replaces it each time it is opened; "
                "make sure no other program removes it, then run the same command again"
            )
        if not self.shared:  # a shared holder leaves the line to the one a writer is told about
            me = f"pid {os.getpid()} on {socket.gethostname()}, started {now_iso()}: {' '.join(sys.argv[:3])}"
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode("utf-8", "replace"), 0)
        self.fd = fd
        return self

    def _open(self) -> int:
        existed = os.path.lexists(self.path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise OutputError(
                    f"{self.path} is a symlink, not a lock file; remove it and run the same command again"
                ) from None
            if not (self.shared and err.errno in _NOT_WRITABLE):
                raise
            # A reader that may not write the file can still lock it: flock does not care how
            # the file was opened.  (FileNotFoundError passes up: there is nothing to lock.)
            return os.open(self.path, os.O_RDONLY | _FLAGS)
        self.created = not existed
        return fd

    def remove_if_made(self) -> None:
        """Remove the lock file, if this lock made it, while still holding it (so no other run
        holds a lock on the file removed; see :meth:`acquire`).  Never another run's file."""
        if self.fd is not None and self.created:
            try:
                if self.shared:  # a reader: only while no other run holds the file too
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _still_at(self.fd, self.path):
                    os.unlink(self.path)
            except OSError:
                pass  # held by another run now, or left behind: the next run locks it as usual
            self.created = False

    def release(self) -> None:
        """Let go of the lock (a writer empties its line first)."""
        if self.fd is not None:
            if not self.shared:
                try:
                    os.ftruncate(self.fd, 0)
                except OSError:
                    pass  # the drive may be gone; closing drops the lock anyway
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


REOPEN_TRIES = 10  # lock files removed under us in a row before giving up


def check_free(path: str, what: str) -> None:
    """Raise :class:`LockedError` if another run holds the lock at ``path`` now; take nothing
    and make nothing (a missing lock file is a free lock).  For a run to be refused before it
    scans the sources rather than after, with the real lock taken later."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _FLAGS)  # a FIFO there must not hang us
    except OSError:
        return  # missing, a symlink, unreadable: the real lock says what is wrong, if anything
    try:
        # Shared: it sees a writer, and never makes another run that locks the file at this
        # instant think it busy (a reader holding the drive is met when the drive is opened).
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(fd, what) from None
    except OSError:
        pass  # a filesystem without flock: the real lock decides
    finally:
        os.close(fd)  # drops the lock, if it was taken


def _in_use(fd: int, what: str) -> LockedError:
    """The refusal, quoting the line the holder left in the lock file at ``fd``."""
    holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
    return LockedError(
        f"{what} is in use by another multivolumecopy run ({holder}); wait for it to finish, or stop it first"
    )


def _still_at(fd: int, path: str) -> bool:
    """Whether the file open at ``fd`` is still the one at ``path``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell (a failing drive): the lock stands, as before this check
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def reading_lock(path: str, what: str) -> Optional[FileLock]:
    """A shared lock on ``path`` for a process that only reads what it guards, or None where
    the lock file does not exist and cannot be made (a drive mounted read-only, or not ours
    to write): then nobody is writing there through this tool either.  Raises
    :class:`LockedError` while a writer holds it."""
    lock = FileLock(path, what, shared=True)
    try:
        return lock.acquire()
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno in _NOT_WRITABLE:
            return None
        raise
