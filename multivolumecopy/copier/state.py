"""What a copy worker keeps between its batches, in one object: the folders it made on the
drive in hand, which in-kernel copy works between two devices, the temporary folder of the
batch in hand, the ``--bwlimit`` throttle, whether O_NOATIME may be used, and its buffer."""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Connection
from typing import Any, Optional


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


class WorkerState:
    """One a worker process (:data:`STATE`)."""

    def __init__(self) -> None:
        self.made_dirs: set[str] = set()  # full paths on the drive in hand: known to exist
        self.volume_key = ""  # the drive they are on: a batch of another forgets them
        self.methods: dict[tuple[int, int], str] = {}  # (source dev, drive dev) -> in-kernel copy
        self.batch_dirs: dict[str, str] = {}  # the temporary folder of the batch in hand
        self.throttle: Optional[Throttle] = None
        # Reading a source leaves its access time as it was (and the copy gets that one).  The
        # kernel allows it to root and to a file's owner; for other files the open is repeated
        # without it (and root without CAP_FOWNER stops asking).
        self.noatime = getattr(os, "O_NOATIME", 0)
        self.buf = bytearray(1024 * 1024)  # read into, a small file at a time

    def read_budget(self, n: int) -> None:
        """``n`` bytes read from the sources: wait for the throttle, if there is one."""
        throttle = self.throttle
        if throttle is not None and n > 0:
            throttle(n)


STATE = WorkerState()
