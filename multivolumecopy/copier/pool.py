"""The pool of copy workers: the parent hands batches to the least busy worker, a short queue
of them, and gets each one's answer back.

Data flow::

    parent (CopyPool.run)                         worker processes (worker.worker_main)
    ---------------------                         -------------------------------------
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

The queue is kept short on purpose: when the drive fills, the parent sets the shared *stop*
flag, stops handing out work and drains what is in flight; workers abandon their current file
(removing its temporary file) and return the rest of their batch as not done, so the files go
to the next volume.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from .protocol import BatchDone, CopyBatch, Progress
from .worker import WorkerLimits, worker_main


class WorkerDied(Exception):
    """Raised when a copy worker dies (killed, crashed, or failed to start): the run stops,
    keeping what was copied."""


class StopFlag:
    """Set by the parent when the drive is full or the run is interrupted; read by the workers
    before every file and every chunk.  One byte of shared memory without a lock: it is read
    several times a file, where a ``multiprocessing.Event`` is slow to read and its lock is a
    named semaphore (see docs/TECHNICAL_DECISIONS.rst, "Processes, a short queue, batches").
    The byte lives in a file in /dev/shm unlinked as soon as it is made, so a killed run leaves
    nothing of it behind."""

    def __init__(self, ctx: Any):
        self._flag = ctx.RawValue("b", 0)

    def set(self) -> None:
        """Ask every worker to abandon the file in hand and send the rest of its batch back."""
        self._flag.value = 1

    def clear(self) -> None:
        """Let the workers copy again (the pool's next run)."""
        self._flag.value = 0

    def is_set(self) -> bool:
        """Whether the workers are asked to stop."""
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
        """Raise the KeyboardInterrupt of a signal caught so far; called between two messages, where
        nothing read from a worker can be lost."""
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
        _stop_resource_tracker()

    def __enter__(self) -> CopyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop_resource_tracker() -> None:
    """End multiprocessing's resource tracker, which starting the workers started, and wait for
    it: left alone it ends only once this process has exited and its pipe is closed, and is
    then a process of the run's process group that outlives the run (seen for about a second,
    until init reaps it).  The workers share no named resource it would have to clean up.
    ``_stop`` is private (Python 3.8 and later have it); without it the tracker ends as before."""
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)
    if stop is not None:
        try:
            stop()
        except (OSError, ChildProcessError):
            pass
