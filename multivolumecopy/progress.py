"""Rendering the core's events for a person: tqdm bars and short lines on stderr.

Bars go to stderr, count bytes, and are off with ``--hide-progress`` or when
stderr is not a terminal; the lines are printed either way.
"""

from __future__ import annotations

from typing import IO, Any

from . import events as ev
from .catalog import format_ranges
from .sizes import count, format_size, numbered, plural

SUMMARY_LINES = 50  # entries not saved listed by path at the end; the jobfile lists them all


class TextRenderer:
    """The events for a person on ``stream``: a line for each that matters, progress bars with
    ``bars``, and with ``verbose`` more (adopted files; with 2, every path)."""

    def __init__(self, stream: IO[str], bars: bool, verbose: int = 0):
        self.stream = stream
        self.bars = bars
        self.verbose = verbose
        self._job: Any = None
        self._drive: Any = None
        self._tqdm: Any = None
        self._files = {"job": [0, 0], "drive": [0, 0]}  # done, total

    def _bar(self, total: int, desc: str, position: int) -> Any:
        if self._tqdm is None:
            from tqdm import tqdm  # imported on first use: keeps --help fast

            self._tqdm = tqdm
        return self._tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=self.stream,
            position=position,
            leave=False,
            dynamic_ncols=True,
        )

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
        for name in ("_drive", "_job"):
            bar = getattr(self, name)
            if bar is not None:
                bar.close()
                setattr(self, name, None)

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
                + (f", {event.modes} with a new mode only" if event.modes else "")
            )
        elif isinstance(event, ev.RunStarted):
            verb = "continuing" if event.resumed else "starting"
            self.say(
                f"{verb} run {event.run}: {count(event.files_to_write, 'entry', 'entries')} "
                f"({format_size(event.bytes_to_write)}) to place"
            )
            self._files["job"] = [0, event.files_to_write]
            if self.bars:
                self._job = self._bar(event.bytes_to_write, "job", 0)
        elif isinstance(event, ev.RestoreStarted):
            vols = numbered("volume", event.volumes, "no volume")
            self.say(
                f"restoring {count(event.files, 'file')} ({format_size(event.bytes)}) from {vols}; "
                f"{event.intact} already restored and intact"
            )
            self._files["job"] = [0, event.files]
            if self.bars:
                self._job = self._bar(event.bytes, "restore", 0)
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
            self._files["drive"] = [0, event.files_to_write]
            if self.bars:
                if self._drive is not None:
                    self._drive.close()
                self._drive = self._bar(event.bytes_to_write, f"volume {event.volume}", 1)
        elif isinstance(event, ev.Copied):
            if self.verbose >= 2:
                for path in event.paths:
                    self.say(f"copied {path}")
            for key, bar in (("job", self._job), ("drive", self._drive)):
                counts = self._files[key]
                counts[0] += event.files
                if bar is not None:
                    bar.set_postfix_str(f"{counts[0]}/{count(counts[1], 'file')}", refresh=False)
                    bar.update(event.unshown)
        elif isinstance(event, ev.BytesCopied):
            for bar in (self._job, self._drive):
                if bar is not None:
                    bar.update(event.bytes)
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
            self.say(
                f"volume {event.volume} done: holds indexes {format_ranges(list(event.ranges))} "
                f"({count(event.files, 'entry', 'entries')}, {format_size(event.bytes)}); "
                f"wrote {event.copied_files} "
                f"({format_size(event.copied_bytes)}). It is safe to remove the drive."
            )
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
        elif isinstance(event, ev.RunDone):
            self.close()
            self._summary(event)

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
