"""Advisory locks so two runs never work on one jobfile or one drive at once.

``flock`` on a small side file, not a pid file: the kernel drops the lock when
its holder dies, so a stale lock from a killed run never blocks the next one.
The file holds a line describing the holder, quoted when the lock is refused.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from typing import Optional

from .errors import LockedError
from .jobfile import now_iso


class FileLock:
    def __init__(self, path: str, what: str):
        self.path = path
        self.what = what
        self.fd: Optional[int] = None

    def acquire(self) -> FileLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise LockedError(
                f"{self.what} is in use by another multivolumecopy run ({holder}); "
                "wait for it to finish, or stop it first"
            ) from None
        except OSError:
            os.close(fd)
            raise
        me = f"pid {os.getpid()} on {socket.gethostname()}, started {now_iso()}: {' '.join(sys.argv[:3])}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode("utf-8", "replace"), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
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
