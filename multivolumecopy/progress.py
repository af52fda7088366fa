"""Rendering the core's events for a person: tqdm bars and short lines on stderr.

Bars go to stderr and are off with ``--hide-progress`` or when stderr is not a terminal; the
lines are printed either way.  Each bar (the job's, the volume's) fills by bytes and shows the
files done out of the total and the time left, fitted to files and bytes together
(``eta.py``); on a narrow terminal the bar shrinks and the bytes go before the file count.
"""

from __future__ import annotations

import os
import time
from typing import IO, Any, Callable, Optional

from . import events as ev
from .catalog import format_ranges
from .eta import Estimator
from .sizes import count, format_size, numbered, plural

SUMMARY_LINES = 50  # entries not saved listed by path at the end; the jobfile lists them all
MIN_BAR = 5  # columns the bar keeps before the items beside it are dropped
DEFAULT_WIDTH = 80  # when the stream cannot say how wide it is


def eta_text(seconds: Optional[float]) -> str:
    """``0:04``, ``12:34``, ``1:02:03``; ``--:--`` when not known yet."""
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def amount_text(done: int, total: int) -> str:
    """``1.2/3.4 MiB``; ``512 B/3.4 MiB`` when the units differ."""
    left, right = format_size(done), format_size(total)
    number, _, unit = left.partition(" ")
    return f"{number}/{right}" if right.endswith(" " + unit) else f"{left}/{right}"


def bar_format(
    width: int,
    desc: str,
    files: tuple[int, int],
    seconds_left: Optional[float],
    nbytes: tuple[int, int],
    rate: Optional[float] = None,
) -> str:
    """tqdm's ``bar_format`` for a line ``width`` columns wide, given the ``files`` and the
    ``nbytes`` done and in all, the seconds left and the byte rate.

    The file count and the ETA come first, where a line cut at the terminal's edge keeps them;
    then the bar, at least ``MIN_BAR`` wide, then the percentage, the bytes and the rate, each
    dropped whole when it does not fit.  Narrower still, the bar goes, then the description."""
    count_eta = f"{files[0]}/{count(files[1], 'file')}, ETA {eta_text(seconds_left)}"
    head = f"{desc}: {count_eta}"
    done, total = nbytes
    percent = f" {100 * done / total:.0f}%" if total else ""
    amount = f" {amount_text(done, total)}"
    speed = f", {format_size(rate)}/s" if rate is not None else ""
    for tail in (percent + amount + speed, percent + amount, percent, ""):
        if len(head) + len(" ||") + MIN_BAR + len(tail) <= width:
            return _literal(head) + " |{bar}|" + _literal(tail)
    return _literal(head if len(head) <= width else count_eta)


def _literal(text: str) -> str:
    """``text`` as it reads in a format string."""
    return text.replace("{", "{{").replace("}", "}}")


def line_width(stream: IO[str]) -> int:
    """The columns a bar's line may fill on the terminal at ``stream``: one less than it has, as
    tqdm draws (``DEFAULT_WIDTH`` when the stream cannot say)."""
    try:
        return max(os.get_terminal_size(stream.fileno()).columns - 1, 1)
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError
        return DEFAULT_WIDTH


class Bar:
    """One progress bar: a tqdm bar filled by bytes, with the files and the fitted ETA beside it."""

    def __init__(self, tqdm: Any, stream: IO[str], desc: str, files: int, nbytes: int, position: int):
        self.stream = stream
        self.desc = desc
        self.files = 0
        self.files_total = files
        self.bytes_total = nbytes
        self.estimator = Estimator()
        self.tqdm = tqdm(
            total=nbytes,
            desc=desc,
            file=stream,
            position=position,
            leave=False,
            dynamic_ncols=True,
            bar_format=self._format(0),
        )

    def _format(self, done: int) -> str:
        left = self.estimator.seconds_left(self.files_total - self.files, self.bytes_total - done)
        return bar_format(
            line_width(self.stream),
            self.desc,
            (self.files, self.files_total),
            left,
            (done, self.bytes_total),
            self.estimator.byte_rate(),
        )

    def advance(self, files: int, nbytes: int, now: float) -> None:
        """``files`` more files and ``nbytes`` more bytes are done, at ``now`` on the clock."""
        self.files += files
        done = self.tqdm.n + nbytes
        if self.estimator.add(now, self.files, done) or files:
            self.tqdm.bar_format = self._format(done)
        self.tqdm.update(nbytes)

    def pause(self) -> None:
        """The time until the next progress is not copying."""
        self.estimator.pause()

    def clear(self) -> None:
        """Take the bar off the screen until it is drawn again (before a prompt)."""
        self.tqdm.clear()

    def close(self) -> None:
        """Take the bar down for good."""
        self.tqdm.close()


class TextRenderer:
    """The events for a person on ``stream``: a line for each that matters, progress bars with
    ``bars``, and with ``verbose`` more (adopted files; with 2, every path).  ``clock`` (seconds)
    times the progress for the ETA."""

    def __init__(
        self, stream: IO[str], bars: bool, verbose: int = 0, clock: Callable[[], float] = time.monotonic
    ):
        self.stream = stream
        self.bars = bars
        self.verbose = verbose
        self.clock = clock
        self._job: Optional[Bar] = None
        self._drive: Optional[Bar] = None
        self._tqdm: Any = None

    def _bar(self, old: Optional[Bar], desc: str, files: int, nbytes: int, position: int) -> Optional[Bar]:
        """A new bar in place of ``old`` (None without bars)."""
        if old is not None:
            old.close()
        if not self.bars:
            return None
        if self._tqdm is None:
            from tqdm import tqdm  # imported on first use: keeps --help fast

            self._tqdm = tqdm
        return Bar(self._tqdm, self.stream, desc, files, nbytes, position)

    def say(self, text: str) -> None:
        """Print a line for the person, above the progress bars when they are shown."""
        if self._tqdm is not None and (self._job is not None or self._drive is not None):
            self._tqdm.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def suspend(self) -> None:
        """Take the bars off the screen (before a prompt)."""
        for bar in (self._drive, self._job):
            if bar is not None:
                bar.clear()

    def close(self) -> None:
        """Take the progress bars down for good."""
        for bar in (self._drive, self._job):
            if bar is not None:
                bar.close()
        self._drive = self._job = None

    def __call__(self, event: ev.Event) -> None:  # noqa: C901 - one branch per event kind
        if isinstance(event, ev.ScanDone):
            self.say(
                f"scanned {count(event.files, 'file')}, {count(event.dirs, 'folder')}, "
                f"{count(event.links, 'symlink')} ({format_size(event.bytes)})"
            )
        elif isinstance(event, ev.ChangesFound):
            self.say(
                f"since the last run: {event.new} new, {event.changed} changed "
                f"({format_size(event.bytes)}), {event.moved} moved, {event.deleted} deleted"
                + (
                    f", {event.modes} with new metadata only (mode, owner, ACLs, attributes)"
                    if event.modes
                    else ""
                )
            )
        elif isinstance(event, ev.RunStarted):
            verb = "continuing" if event.resumed else "starting"
            self.say(
                f"{verb} run {event.run}: {count(event.files_to_write, 'entry', 'entries')} "
                f"({format_size(event.bytes_to_write)}) to place"
            )
            self._job = self._bar(self._job, "job", event.files_to_write, event.bytes_to_write, 0)
        elif isinstance(event, ev.RestoreStarted):
            vols = numbered("volume", event.volumes, "no volume")
            self.say(
                f"restoring {count(event.files, 'file')} ({format_size(event.bytes)}) from {vols}; "
                f"{event.intact} already restored and intact"
            )
            self._job = self._bar(self._job, "restore", event.files, event.bytes, 0)
        elif isinstance(event, ev.NothingToDo):
            self.say(
                f"nothing to do: {count(event.files, 'entry', 'entries')} on "
                f"{count(event.volumes, 'volume')}, all current"
            )
        elif isinstance(event, ev.VolumeMounted):
            what = "blank drive, now" if event.new else "found"
            self.say(f"{event.output}: {what} volume {event.volume} ({format_size(event.free)} free)")
        elif isinstance(event, ev.ForeignData):
            self.say(
                f"volume {event.volume}: the drive already holds {count(event.files, 'file')} "
                f"({format_size(event.bytes)}) that are not part of this backup; they are left alone"
            )
        elif isinstance(event, ev.VolumePlanned):
            self.say(
                f"volume {event.volume}: keeps {event.keep}, removes {event.purge}, "
                f"writes {event.files_to_write} ({format_size(event.bytes_to_write)})"
            )
            desc = f"volume {event.volume}"
            self._drive = self._bar(self._drive, desc, event.files_to_write, event.bytes_to_write, 1)
            if self._job is not None:
                self._job.pause()  # the time between two volumes' copies is not copying
        elif isinstance(event, ev.Copied):
            if self.verbose >= 2:
                for path in event.paths:
                    self.say(f"copied {path}")
            self._advance(event.files, event.unshown)
        elif isinstance(event, ev.BytesCopied):
            self._advance(0, event.bytes)
        elif isinstance(event, ev.Adopted):
            if self.verbose:
                self.say(f"adopted {event.path} (already on volume {event.volume})")
        elif isinstance(event, ev.Note):
            self.say(f"note: {event.text}")
        elif isinstance(event, ev.Skipped):
            self.say(f"skipped {event.path}: {event.reason}")
        elif isinstance(event, ev.FileFailed):
            self.say(f"FAILED {event.path}: {event.reason}")
        elif isinstance(event, ev.Renamed):
            self.say(f"volume {event.volume}: renamed {count(len(event.pairs), 'moved file')} in place")
            if self.verbose >= 2:
                for old, new in event.pairs:
                    self.say(f"renamed {old} -> {new}")
        elif isinstance(event, ev.Purged):
            self.say(
                f"volume {event.volume}: removed {count(event.files, 'entry', 'entries')} "
                f"that no longer {plural(event.files, 'belongs', 'belong')} there"
            )
        elif isinstance(event, ev.VolumeFull):
            self.say(f"volume {event.volume} is full")
        elif isinstance(event, ev.VolumeDone):
            if self._drive is not None:
                self._drive.close()
                self._drive = None
            held = (
                f"holds indexes {format_ranges(list(event.ranges))} "
                f"({count(event.files, 'entry', 'entries')}, {format_size(event.bytes)})"
            )
            if event.unchanged:
                did = "nothing on it needed changing"
            else:
                did = f"wrote {event.copied_files} ({format_size(event.copied_bytes)})"
            self.say(f"volume {event.volume} done: {held}; {did}. It is safe to remove the drive.")
        elif isinstance(event, ev.Adapted):
            self.say(
                f"volume {event.volume} adapted to its filesystem ({'; '.join(event.limits)}): "
                f"{count(event.renamed, 'entry', 'entries')} stored under escaped names, "
                f"{count(event.recorded_only, 'symlink')} "
                "kept in the records only; --restore puts them back as they were"
            )
        elif isinstance(event, ev.DriveRefused):
            self.say(f"{event.output}: drive refused: {event.reason}")
        elif isinstance(event, ev.WaitingForDrive):
            self.suspend()
            if self._job is not None:
                self._job.pause()
        elif isinstance(event, ev.RunDone):
            self.close()
            self._summary(event)

    def _advance(self, files: int, nbytes: int) -> None:
        if self._job is None and self._drive is None:
            return
        now = self.clock()
        for bar in (self._job, self._drive):
            if bar is not None:
                bar.advance(files, nbytes, now)

    def _summary(self, event: ev.RunDone) -> None:
        lines = ["", "summary:"]
        for v in event.volumes:
            lines.append(
                f"  volume {v.volume}: indexes {format_ranges(list(v.ranges))}, "
                f"{count(v.files, 'entry', 'entries')} ({format_size(v.bytes)}), wrote {v.copied_files}"
            )
        wrote = f"{count(event.copied_files, 'entry', 'entries')} ({format_size(event.copied_bytes)})"
        lines.append(f"  wrote {wrote} in {event.seconds:.1f} s")
        if event.skipped:
            lines.append(f"  {event.skipped} skipped (listed above)")
        if event.failed:
            n = len(event.failed)
            now = plural(n, "it is", "they are")
            lines.append(
                f"  {count(n, 'entry', 'entries')} not saved (on no drive as {now} now; the run exits 1):"
            )
            lines.extend(f"    {path}: {why}" for path, why in event.failed[:SUMMARY_LINES])
            if len(event.failed) > SUMMARY_LINES:
                lines.append(
                    f"    ... and {len(event.failed) - SUMMARY_LINES} more, listed in the jobfile "
                    '("failed"); --status counts them'
                )
        self.say("\n".join(lines))


def make_renderer(stream: IO[str], hide_progress: bool, verbose: int = 0) -> TextRenderer:
    """The renderer for a person reading ``stream``: progress bars when it is a terminal."""
    return TextRenderer(stream, bars=isatty(stream) and not hide_progress, verbose=verbose)


class ByteBar:
    """A tqdm bar in bytes for a scrub, on stderr when it is a terminal."""

    def __init__(self, stream: IO[str], desc: str, hide: bool):
        self.stream = stream
        self.desc = desc
        self.enabled = not hide and isatty(stream)
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc=self.desc,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.stream,
                leave=False,
            )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        """Take the bar down, if it was ever shown."""
        if self.bar is not None:
            self.bar.close()


def isatty(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (False for a closed or file-less stream)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
