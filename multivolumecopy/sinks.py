"""Where events go besides the person at the terminal: ``--events`` and ``--notify-command``.

``--events PATH`` writes one JSON object per line for every state change, plus a ``progress``
line every few seconds.  PATH may be ``-`` (stdout), a file (appended to), a FIFO, or a UNIX
stream socket; a program blocked reading a FIFO or socket learns of a drive swap the moment
it is needed.  A FIFO nobody reads yet holds the run at its start, and the person is told.
The schema is in docs/formats.rst ("Events"); each line carries its version.

``--notify-command CMD`` runs CMD through the shell when a person is needed: a drive must be
inserted, the run failed, or it finished.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
import stat
import subprocess
import sys
import time
from typing import IO, Any, Callable, Optional

from . import events as ev
from .clock import now_iso

SCHEMA_VERSION = 1
PROGRESS_EVERY = 5.0  # seconds


def event_name(event: object) -> str:
    """``VolumeFull`` -> ``volume_full``."""
    name = type(event).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def to_json(event: object, **extra: Any) -> dict[str, Any]:
    """``event`` as an object of ``--events``: the schema version, the event's name, the time, its
    fields, and ``extra``."""
    doc: dict[str, Any] = {"v": SCHEMA_VERSION, "event": event_name(event), "time": now_iso()}
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        doc.update(dataclasses.asdict(event))
    doc.update(extra)
    return doc


# Events that are noise in a machine's log (progress is summarised by "progress" lines).
_QUIET = (ev.Copied, ev.BytesCopied, ev.Adopted, ev.Renamed)


class EventWriter:
    """JSON lines to a file, FIFO, socket or stdout; ``tell`` says it when the run has to wait
    for a FIFO's reader."""

    def __init__(
        self,
        target: str,
        clock: Callable[[], float] = time.monotonic,
        tell: Callable[[str], None] = lambda text: None,
    ):
        self.target = target
        self.clock = clock
        self.tell = tell
        self._out: Optional[IO[bytes]] = None
        self._sock: Optional[socket.socket] = None
        self._bytes = 0
        self._files = 0
        self._last_progress = clock()
        self._open()

    def _open(self) -> None:
        if self.target == "-":
            self._out = sys.stdout.buffer
            return
        try:
            mode = os.stat(self.target).st_mode
        except FileNotFoundError:
            mode = 0
        if stat.S_ISSOCK(mode):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.connect(self.target)
        elif stat.S_ISFIFO(mode):
            self._out = self._open_fifo()
        else:
            self._out = open(self.target, "ab", buffering=0)  # noqa: SIM115 - held for the run

    def _open_fifo(self) -> IO[bytes]:
        """The FIFO opened for writing.  The reader is meant to be waiting; when it is not, the
        open blocks until one comes, and the person is told why nothing happens meanwhile."""
        try:
            fd = os.open(self.target, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            if err.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            self.tell(
                f"waiting for a program to read the FIFO {self.target} (--events) before starting; "
                "start it, or press Ctrl-C to stop"
            )
            fd = os.open(self.target, os.O_WRONLY | os.O_CLOEXEC)
        else:
            os.set_blocking(fd, True)  # a slow reader slows the run rather than losing lines
        return os.fdopen(fd, "wb", buffering=0)

    def __call__(self, event: object) -> None:
        if isinstance(event, (ev.Copied, ev.BytesCopied)):
            self._bytes += event.bytes if isinstance(event, ev.BytesCopied) else event.unshown
            self._files += event.files if isinstance(event, ev.Copied) else 0
            now = self.clock()
            if now - self._last_progress >= PROGRESS_EVERY:
                self._last_progress = now
                self.write(
                    {
                        "v": SCHEMA_VERSION,
                        "event": "progress",
                        "time": now_iso(),
                        "bytes": self._bytes,
                        "files": self._files,
                    }
                )
            return
        if isinstance(event, _QUIET):
            return
        self.write(to_json(event))

    def write(self, doc: dict[str, Any]) -> None:
        """Write one JSON line; a listener that went away ends the writing, not the run."""
        line = (json.dumps(doc) + "\n").encode("utf-8", "surrogateescape")
        try:
            if self._sock is not None:
                self._sock.sendall(line)
            elif self._out is not None:
                self._out.write(line)
                self._out.flush()
        except (BrokenPipeError, ConnectionError):
            self.close()  # the listener went away; the backup goes on

    def close(self) -> None:
        """Close the target (stdout stays open)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._out is not None and self._out is not sys.stdout.buffer:
            self._out.close()
        self._out = None


class Notifier:
    """Runs the operator's command when a person is needed."""

    def __init__(self, command: str, warn: Callable[[str], None], timeout: float = 120.0):
        self.command = command
        self.warn = warn
        self.timeout = timeout

    def __call__(self, event: object) -> None:
        if isinstance(event, ev.WaitingForDrive):
            self.notify("swap", event.message, MVCOPY_NEXT=str(event.next_volume), MVCOPY_OUTPUT=event.output)

    def notify(self, kind: str, message: str, **env: str) -> None:
        """Run the command with ``MVCOPY_EVENT`` (``kind``), ``MVCOPY_MESSAGE`` and ``env`` in its
        environment, and nothing on its input: it would otherwise wait on the operator's terminal
        (``mail`` with no body given) and take the Enter meant for the prompt.  One that fails,
        or is still running after ``timeout`` seconds (it is killed then), is only warned about:
        the run goes on."""
        full = dict(os.environ, MVCOPY_EVENT=kind, MVCOPY_MESSAGE=message, **env)
        try:
            rc = subprocess.call(  # noqa: S602 - the user's own command
                self.command, shell=True, env=full, timeout=self.timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            self.warn(f"--notify-command did not finish in {self.timeout:.0f} s; going on")
            return
        if rc != 0:
            self.warn(f"--notify-command exited with status {rc}; going on")


class Tee:
    """One emit function that hands each event to several."""

    def __init__(self, *sinks: Callable[[object], None]):
        self.sinks = [s for s in sinks if s is not None]

    def __call__(self, event: object) -> None:
        for sink in self.sinks:
            sink(event)


class Outside:
    """The ``--events`` writer and the ``--notify-command`` together, and the run's last word."""

    def __init__(
        self,
        events: Optional[str],
        notify: Optional[str],
        warn: Callable[[str], None],
        tell: Callable[[str], None] = lambda text: None,
    ):
        self.events = EventWriter(events, tell=tell) if events else None
        self.notifier = Notifier(notify, warn) if notify else None

    def emit_to(
        self, person: Callable[[object], None], log: Optional[OperationLog] = None
    ) -> Callable[[object], None]:
        """The run's emit function: each event to ``person``, then to ``--events``, the notify
        command and the operation ``log``, those that are in use."""
        return Tee(person, *(s for s in (self.events, self.notifier, log) if s is not None))

    def finish(self, code: int, message: str, done: Optional[object] = None) -> None:
        """The run is over: a ``run_done`` event, and the notify command for a person."""
        if self.events is not None:
            extra: dict[str, Any] = {"exit_code": code, "message": message}
            self.events.write(
                to_json(done, **extra)
                if done is not None
                else {"v": SCHEMA_VERSION, "event": "run_done", "time": now_iso(), **extra}
            )
            self.events.close()
        if self.notifier is not None:
            kind = "done" if code in (0, 1) else "stopped" if code == 3 else "failed"
            self.notifier.notify(kind, message, MVCOPY_EXIT_CODE=str(code))


LOG_LIMIT = 8 * 1024 * 1024  # bytes before a log is rotated
LOG_KEEP = 2  # rotated logs kept: NAME.1, NAME.2


class OperationLog:
    """Every copy, rename, delete, skip and failure, one line each with the run number and time:
    next to the jobfile (``JOBFILE.log``) and on the drive it happened on (``.mvcopy-log``).
    Each log is rotated at 8 MiB, keeping two old ones; a drive's log takes at most 8 MiB
    a run (it is written through a descriptor opened when the drive is mounted, so a drive
    that vanishes is never written by path)."""

    def __init__(self, path: str):
        self.path = path
        self.run = "-"
        self.drive_log: Optional[int] = None  # fd, opened once: a vanished drive is never written by path
        self._drive_bytes = 0

    def __call__(self, event: object) -> None:
        if isinstance(event, ev.RunStarted):
            self.run = str(event.run)
        if isinstance(event, ev.VolumeMounted):
            self._close_drive_log()
            self._drive_bytes = 0
            try:
                self.drive_log = _open_log(os.path.join(event.output, ".mvcopy-log"))
            except OSError:
                self.drive_log = None
        lines = list(self._lines(event))
        if lines:
            stamp = f"{now_iso()} run={self.run} "
            text = "".join(stamp + line + "\n" for line in lines).encode("utf-8", "surrogateescape")
            fd = _open_log(self.path)
            try:
                os.write(fd, text)
            finally:
                os.close(fd)
            if self.drive_log is not None:
                try:
                    self._drive_bytes += len(text)
                    if self._drive_bytes > LOG_LIMIT:  # bounded; the jobfile's log has the rest
                        os.write(self.drive_log, b"(log capped for this run: see the jobfile's log)\n")
                        self._close_drive_log()
                    else:
                        os.write(self.drive_log, text)
                except OSError:
                    self._close_drive_log()  # the drive is full or gone: the jobfile's log still has it
        if isinstance(event, ev.VolumeDone):
            self._close_drive_log()

    def _close_drive_log(self) -> None:
        if self.drive_log is not None:
            os.close(self.drive_log)
            self.drive_log = None

    @staticmethod
    def _lines(event: object):  # noqa: C901 - one branch per event kind
        if isinstance(event, ev.Copied):
            for p in event.paths:
                yield f"vol={event.volume} copied {p!r}"
        elif isinstance(event, ev.Renamed):
            for old, new in event.pairs:
                yield f"vol={event.volume} renamed {old!r} -> {new!r}"
        elif isinstance(event, ev.Purged):
            for p in event.paths:
                yield f"vol={event.volume} deleted {p!r}"
        elif isinstance(event, ev.Adopted):
            yield f"vol={event.volume} adopted {event.path!r}"
        elif isinstance(event, ev.Skipped):
            yield f"skipped {event.path!r}: {event.reason}"
        elif isinstance(event, ev.FileFailed):
            yield f"FAILED {event.path!r}: {event.reason}"
        elif isinstance(
            event,
            (
                ev.VolumeMounted,
                ev.VolumeDone,
                ev.RunStarted,
                ev.WaitingForDrive,
                ev.DriveRefused,
                ev.VolumeFull,
                ev.ChangesFound,
                ev.RestoreStarted,
            ),
        ):
            yield f"{event_name(event)} " + json.dumps(dataclasses.asdict(event), default=str)


def _open_log(path: str) -> int:
    """Open a log for appending, rotating it first when it has grown past the limit."""
    try:
        if os.path.getsize(path) > LOG_LIMIT:
            for k in range(LOG_KEEP, 0, -1):
                older = f"{path}.{k - 1}" if k > 1 else path
                if os.path.exists(older):
                    os.replace(older, f"{path}.{k}")
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
