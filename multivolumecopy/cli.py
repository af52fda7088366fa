"""Command line: parse, pick a renderer, call the core, turn errors into exit codes.

``main(argv) -> int`` is the program; only ``__main__`` and the console
script call ``sys.exit``.  Heavy modules are imported inside the commands so
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import IO, Any, Optional

from . import __version__
from .errors import ExitCode, MvcError, UsageError
from .jobfile import DEFAULT_NAME
from .sizes import format_size, parse_duration, parse_size

EPILOG = """\
exit codes:
  0 done             1 some files failed     2 usage error
  3 stopped at a drive swap: insert the drive named and run the same command again
  4 source problem   5 output/drive problem  6 jobfile problem
  7 a file is larger than a volume           8 another run holds the lock
  9 the drive failed mid-run                10 verify found problems
  11 --locate found nothing                  70 internal error
  130 interrupted (what was copied is kept; run again to continue)

examples:
  multivolumecopy /mnt/src -o /mnt/usb
  multivolumecopy /mnt/src/books /mnt/src/radio -o /mnt/usb
  multivolumecopy --verify -f .mvcopy-jobdata.json -i 0 -si 300 -o /mnt/usb
  multivolumecopy --verify --checksum --time-budget 1h -o /mnt/usb
  multivolumecopy --locate 'photos/2019*' -f /mnt/usb/.mvcopy-jobdata.json
  multivolumecopy --restore --to /srv/restored -o /mnt/usb 'photos/2019'
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see multivolumecopy --help")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="multivolumecopy",
        description="Back up a large file tree onto a series of smaller drives, asking for the "
        "next drive when one is full. Each drive holds a plain slice of the tree; re-runs "
        "update the drives in place.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "sources",
        nargs="*",
        metavar="SRC|PATTERN",
        help="backup: directories and files to back up (paths on the drives are relative to their "
        "common parent; a single directory: its contents). --locate/--restore: globs on the "
        "relative path, or plain substrings",
    )
    p.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        metavar="DIR",
        help="mount point of a backup drive; repeat for drives attached at once",
    )
    p.add_argument(
        "-f",
        "--jobfile",
        default=DEFAULT_NAME,
        metavar="FILE",
        help=f"the job's catalog (default: {DEFAULT_NAME} in the current directory); "
        "a copy is kept on every drive",
    )
    p.add_argument(
        "--new-volume-script",
        metavar="CMD",
        help="run CMD (through the shell) when the next drive is needed, instead of "
        "prompting; exit 0 means it is mounted. Gets MVCOPY_VOLUME, MVCOPY_NEXT, "
        "MVCOPY_OUTPUT, MVCOPY_JOBFILE",
    )
    p.add_argument(
        "--events",
        metavar="PATH",
        help="write one JSON object per line for every state change (and progress every few "
        "seconds) to PATH: a file, a FIFO, a UNIX socket, or - for stdout",
    )
    p.add_argument(
        "--notify-command",
        metavar="CMD",
        help="run CMD (through the shell) when a person is needed: a drive to insert, a failed or "
        "finished run; MVCOPY_EVENT (swap, done, stopped, failed) and MVCOPY_MESSAGE tell what",
    )
    p.add_argument("--hide-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0, help="say more")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    b = p.add_argument_group("backing up (the default)")
    b.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out paths matching this glob (on the relative path, or on any "
        "single name if it has no /); repeatable",
    )
    b.add_argument(
        "-x",
        "--one-file-system",
        action="store_true",
        help="do not cross into other filesystems mounted below the sources (their mount points are "
        "kept, empty)",
    )
    b.add_argument(
        "--device-padding",
        default="0",
        metavar="SIZE",
        help="leave this much free on every drive (e.g. 500M)",
    )
    b.add_argument(
        "--volume-size", default=None, metavar="SIZE", help="put at most this much on each volume (e.g. 4G)"
    )
    b.add_argument(
        "-w",
        "--workers",
        type=int,
        default=default_workers(),
        metavar="N",
        help="copy processes (default: the number of CPUs, from 2 to 4); the scan of the sources "
        "is shared among as many, at most one a CPU",
    )
    b.add_argument(
        "--dry-run",
        action="store_true",
        help="print what this run would copy, rewrite, rename and delete on each volume, and which "
        "drives it needs; write nothing",
    )
    b.add_argument(
        "--replace-volume",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="the next blank drive becomes volume N and receives its files (a lost, failing or too "
        "small drive); repeatable",
    )
    b.add_argument(
        "--forget-volume",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="give volume N up: its files are placed again on the other volumes or new ones; repeatable",
    )
    b.add_argument(
        "--bwlimit",
        metavar="RATE",
        help="read at most RATE bytes a second from the sources, all workers together (e.g. 20M)",
    )
    b.add_argument(
        "--io-priority",
        choices=("idle", "normal"),
        default="idle",
        help="I/O priority of the copy workers (default: idle, so the fileserver's users come first)",
    )
    b.add_argument(
        "--no-hash",
        action="store_true",
        help="do not record SHA-256 of copied files (a zero-copy path for drives faster than the "
        "hash; --verify --checksum and sha256sum -c then cannot check them)",
    )

    modes = p.add_argument_group("other modes").add_mutually_exclusive_group()
    modes.add_argument(
        "--verify", action="store_true", help="check the mounted drive against the jobfile instead of copying"
    )
    modes.add_argument(
        "--locate",
        action="store_true",
        help="say which volume holds the files matching PATTERN (from -f; with -o, by the newest "
        "record of the drives mounted there)",
    )
    modes.add_argument(
        "--restore", action="store_true", help="restore the files matching PATTERN (all without) into --to"
    )
    modes.add_argument(
        "--status",
        action="store_true",
        help="say how current each volume is (from -f); exit 0 OK, 1 WARNING, 2 CRITICAL "
        "against --max-age (default 35 days)",
    )

    v = p.add_argument_group("verifying")
    v.add_argument("-i", "--device-startindex", type=int, metavar="N", help="first index to check")
    v.add_argument("-si", "--select-index", type=int, metavar="N", help="index to stop before (exclusive)")
    v.add_argument(
        "--checksum",
        action="store_true",
        help="also read every file back and compare its SHA-256 with the one recorded (a scrub)",
    )
    v.add_argument(
        "--max-age",
        type=float,
        metavar="DAYS",
        help="with --checksum: re-read only files not checked in the last DAYS days; with "
        "--status: the age at which a volume is out of date",
    )
    v.add_argument(
        "--time-budget",
        metavar="DURATION",
        help="with --checksum: stop reading after this long (90, 30m, 2h); the rest is next time",
    )
    v.add_argument(
        "--json", action="store_true", help="print the --verify, --locate or --dry-run report as JSON"
    )

    r = p.add_argument_group("restoring")
    r.add_argument("--to", metavar="DIR", help="where --restore puts the files (created if missing)")
    return p


def default_workers() -> int:
    return min(4, max(2, os.cpu_count() or 2))


def main(
    argv: Optional[list[str]] = None,
    stdin: Optional[IO[str]] = None,
    stderr: Optional[IO[str]] = None,
    stdout: Optional[IO[str]] = None,
) -> int:
    stdin = stdin or sys.stdin
    stderr = stderr or sys.stderr
    stdout = stdout or sys.stdout
    _interrupt_on_termination()
    try:
        args = build_parser().parse_args(argv)
        if args.verify:
            return _verify(args, stdout, stderr)
        if args.locate:
            return _locate(args, stdout, stderr)
        if args.restore:
            return _restore(args, stdin, stderr)
        if args.status:
            return _status(args, stdout)
        return _backup(args, stdin, stderr, stdout)
    except MvcError as err:
        stderr.write(f"multivolumecopy: {err}\n")
        return int(err.exit_code)
    except KeyboardInterrupt:
        stderr.write("multivolumecopy: interrupted; what was copied is kept: run the same command again\n")
        return int(ExitCode.INTERRUPTED)
    except Exception as err:  # a bug: show everything, so it can be reported
        import traceback

        traceback.print_exc(file=stderr)
        stderr.write(
            f"multivolumecopy: internal error ({type(err).__name__}: {err}); please report it "
            "with the traceback above. What was committed to the drives is kept.\n"
        )
        return int(ExitCode.INTERNAL)


def _backup(args: argparse.Namespace, stdin: IO[str], stderr: IO[str], stdout: IO[str]) -> int:
    from .backup import Backup, Options
    from .events import RunDone

    _only_with(
        args,
        "--verify",
        checksum=args.checksum,
        max_age=args.max_age is not None,
        time_budget=args.time_budget,
    )
    if args.json and not args.dry_run:
        raise UsageError(
            "--json goes with --verify, --locate, --status or --dry-run; see multivolumecopy --help"
        )
    _only_with(args, "--restore", to=args.to)
    if args.device_startindex is not None or args.select_index is not None:
        raise UsageError(
            "-i/--device-startindex and -si/--select-index only go with --verify; a backup "
            "resumes by itself: run the same command again"
        )
    if not args.sources:
        raise UsageError("name at least one source directory or file; see multivolumecopy --help")
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers} is not a number of processes; give 1 or more")
    opts = Options(
        sources=args.sources,
        outputs=args.output,
        jobfile=args.jobfile,
        exclude=args.exclude,
        device_padding=parse_size(args.device_padding, "--device-padding"),
        volume_size=parse_size(args.volume_size, "--volume-size") if args.volume_size else None,
        workers=args.workers,
        new_volume_script=args.new_volume_script,
        hash=not args.no_hash,
        one_file_system=args.one_file_system,
        replace_volumes=args.replace_volume,
        forget_volumes=args.forget_volume,
        bwlimit=float(parse_size(args.bwlimit, "--bwlimit")) if args.bwlimit else 0.0,
        idle_io=args.io_priority == "idle",
    )
    if args.bwlimit and opts.bwlimit <= 0:
        raise UsageError("--bwlimit must be more than zero bytes a second")
    if set(opts.replace_volumes) & set(opts.forget_volumes):
        raise UsageError("a volume cannot be both replaced and forgotten; choose one")
    if opts.volume_size is not None and opts.volume_size <= 0:
        raise UsageError("--volume-size must be more than zero")
    renderer, swapper = _person(args, stdin, stderr)
    if args.dry_run:
        from .dryrun import render

        dry = Backup(opts, renderer, swapper).dry_run()
        renderer.close()
        stdout.write(render(dry, args.json))
        stdout.flush()
        return int(ExitCode.OK)
    start = time.monotonic()
    from .sinks import OperationLog

    outside = _outside(args, renderer)
    oplog = OperationLog(os.path.abspath(args.jobfile) + ".log")
    backup = Backup(opts, outside.emit_to(renderer, oplog), swapper)
    try:
        summary = backup.run()
    except MvcError as err:
        outside.finish(int(err.exit_code), str(err))
        raise
    except KeyboardInterrupt:
        outside.finish(int(ExitCode.INTERRUPTED), "interrupted; what was copied is kept")
        raise
    finally:
        renderer.close()
    done = RunDone(
        summary.copied_files,
        summary.copied_bytes,
        tuple(summary.failed),
        tuple(summary.volumes),
        time.monotonic() - start,
        summary.skipped,
    )
    if not summary.nothing_to_do:
        renderer(done)
    code = int(ExitCode.FILES_FAILED if summary.failed else ExitCode.OK)
    failed = f", {len(summary.failed)} files failed" if summary.failed else ""
    outside.finish(code, f"backup done: wrote {summary.copied_files} entries{failed}", done)
    return code


def _outside(args: argparse.Namespace, renderer: Any) -> Any:
    from .sinks import Outside

    try:
        return Outside(args.events, args.notify_command, lambda text: renderer.say(f"warning: {text}"))
    except OSError as err:
        raise UsageError(f"cannot write events to {args.events}: {err.strerror}; check --events") from None


def _person(args: argparse.Namespace, stdin: IO[str], stderr: IO[str]) -> tuple[Any, Any]:
    """The renderer for a person on stderr, and the swapper (script, prompt, or stop)."""
    from .progress import make_renderer
    from .swap import Swapper

    renderer = make_renderer(stderr, args.hide_progress, args.verbose)

    def ask(text: str) -> str:
        renderer.suspend()
        stderr.write(text)
        stderr.flush()
        line = stdin.readline()
        if not line:
            raise EOFError
        return line

    interactive = _isatty(stdin) and _isatty(stderr)
    return renderer, Swapper(script=args.new_volume_script, ask=ask if interactive else None)


def _only_with(args: argparse.Namespace, mode: str, **options: object) -> None:
    for name, value in options.items():
        if value:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} goes with {mode}; see multivolumecopy --help")


def _verify(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    from .verify import Scrub, render_report, verify

    if len(args.output) != 1:
        raise UsageError("--verify checks one drive: give exactly one -o/--output")
    if not args.checksum:
        _only_with(args, "--checksum", max_age=args.max_age, time_budget=args.time_budget)
    scrub = None
    if args.checksum:
        if args.max_age is not None and args.max_age < 0:
            raise UsageError("--max-age is a number of days, 0 or more")
        budget = parse_duration(args.time_budget, "--time-budget") if args.time_budget else None
        scrub = Scrub(max_age_days=args.max_age, time_budget=budget)
    bar = _ByteBar(stderr, "read back", args.hide_progress)
    try:
        report = verify(args.jobfile, args.output[0], args.device_startindex, args.select_index, scrub, bar)
    finally:
        bar.close()
    stdout.write(render_report(report, as_json=args.json))
    stdout.flush()
    return int(ExitCode.OK if report.ok else ExitCode.VERIFY_FAILED)


def _status(args: argparse.Namespace, stdout: IO[str]) -> int:
    """Nagios-style: 0 OK, 1 WARNING, 2 CRITICAL (a jobfile that cannot be read is CRITICAL)."""
    from .clock import epoch
    from .jobfile import load
    from .status import CRITICAL, DEFAULT_MAX_AGE_DAYS, render, status

    max_age = DEFAULT_MAX_AGE_DAYS if args.max_age is None else args.max_age
    if max_age <= 0:
        raise UsageError("--max-age is a number of days, more than 0")
    try:
        job = load(args.jobfile)
    except MvcError as err:
        stdout.write(f"MULTIVOLUMECOPY CRITICAL - {err}\n")
        return CRITICAL
    now_text = os.environ.get("MVCOPY_NOW")  # "what if it were then": for checks and tests
    now = epoch(now_text) if now_text else time.time()
    st = status(job, now, max_age)
    stdout.write(render(st, args.json))
    return st.code


def _locate(args: argparse.Namespace, stdout: IO[str], stderr: Optional[IO[str]] = None) -> int:
    from .jobfile import load
    from .locate import locate, render
    from .records import newest_record

    if not args.sources:
        raise UsageError("--locate needs at least one PATTERN (a glob or part of a path)")
    err = stderr or sys.stderr
    if args.output:
        # The drives mounted there carry records of their own: answer from the newest.
        job, notes = newest_record(args.jobfile, args.output)
    else:
        job, notes = load(args.jobfile), []
    if job.run.in_progress:
        notes.append(
            f"warning: the record in use was saved while run {job.run.number} was still going: "
            "files written after that may be missing from it, or shown on no drive"
        )
    for note in notes:
        err.write(f"multivolumecopy: {note}\n")
    err.flush()
    found = list(locate(job.catalog, args.sources))
    stdout.write(render(found, args.json))
    stdout.flush()
    return int(ExitCode.OK if found else ExitCode.NOT_FOUND)


def _restore(args: argparse.Namespace, stdin: IO[str], stderr: IO[str]) -> int:
    from .restore import Restore, RestoreOptions, render_event

    if not args.to:
        raise UsageError("--restore needs --to DIR: where to put the files")
    if not args.output:
        raise UsageError("--restore reads the drives: name the mount point with -o/--output")
    renderer, swapper = _person(args, stdin, stderr)

    def person(event: Any) -> None:
        text = render_event(event)  # the restore's own events (a newer record, one in progress)
        if text is None:
            renderer(event)
        else:
            renderer.say(text)

    start = time.monotonic()
    opts = RestoreOptions(args.jobfile, args.output, args.to, args.sources)
    outside = _outside(args, renderer)
    try:
        summary = Restore(opts, outside.emit_to(person), swapper).run()
    except MvcError as err:
        outside.finish(int(err.exit_code), str(err))
        raise
    finally:
        renderer.close()
    lines = [
        "",
        "summary:",
        f"  restored {summary.restored} entries ({format_size(summary.restored_bytes)}) "
        f"from volumes {', '.join(map(str, summary.volumes)) or 'none'} in {time.monotonic() - start:.1f} s",
        f"  {summary.intact} already restored and intact",
    ]
    if summary.problems:
        lines.append(f"  {len(summary.problems)} could not be restored:")
        lines.extend(f"    {path}: {why}" for path, why in summary.problems)
    renderer.say("\n".join(lines))
    code = int(ExitCode.FILES_FAILED if summary.problems else ExitCode.OK)
    outside.finish(code, f"restore done: {summary.restored} restored, {len(summary.problems)} not restored")
    return code


class _ByteBar:
    """A tqdm bar in bytes for a scrub, on stderr when it is a terminal."""

    def __init__(self, stream: IO[str], desc: str, hide: bool):
        self.stream = stream
        self.desc = desc
        self.enabled = not hide and _isatty(stream)
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
        if self.bar is not None:
            self.bar.close()


def _interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP (a closed terminal, a dropped ssh) stop the run as Ctrl-C does:
    what was copied is committed before exit."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def console_main() -> None:
    sys.exit(main())
