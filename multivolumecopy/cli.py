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
from typing import IO, TYPE_CHECKING, Any, Optional

from .errors import ExitCode, MvcError, UsageError
from .metadata import lost_text
from .parser import build_parser
from .sizes import count, format_size, numbered, parse_duration, parse_size

if TYPE_CHECKING:
    from .context import Options


def main(
    argv: Optional[list[str]] = None,
    stdin: Optional[IO[str]] = None,
    stderr: Optional[IO[str]] = None,
    stdout: Optional[IO[str]] = None,
) -> int:
    """The program: run the command line ``argv`` (default: the process's arguments) and return its exit
    code.  Foreseen errors become one line on ``stderr``; only a bug prints a traceback."""
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


def _backup_options(args: argparse.Namespace) -> Options:
    """The backup's options from the command line, or a UsageError naming what is wrong."""
    from .context import Options

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
    _only_with(args, "--restore", to=args.to, lost_volume=args.lost_volume is not None)
    if args.start_index is not None or args.stop_before is not None:
        raise UsageError(
            "-i/--device-startindex and -si/--select-index only go with --verify; a backup "
            "resumes by itself: run the same command again"
        )
    if not args.sources:
        raise UsageError("name at least one source directory or file; see multivolumecopy --help")
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers} is not a number of processes; give 1 or more")
    given = _job_options_given(args)
    opts = Options(
        sources=args.sources,
        outputs=args.output,
        jobfile=args.jobfile,
        workers=args.workers,
        new_volume_script=args.new_volume_script,
        hash=not args.no_hash,
        replace_volumes=[v for v in args.replace_volume if isinstance(v, int)],
        replace_parity="P1" in args.replace_volume,
        forget_volumes=args.forget_volume,
        bwlimit=float(parse_size(args.bwlimit, "--bwlimit")) if args.bwlimit else 0.0,
        idle_io=args.io_priority == "idle",
        given=frozenset(given),
        change_options=args.change_options,
        **given,
        parity=args.parity,
    )
    if args.bwlimit and opts.bwlimit <= 0:
        raise UsageError("--bwlimit must be more than zero bytes a second")
    if set(opts.replace_volumes) & set(opts.forget_volumes):
        raise UsageError("a volume cannot be both replaced and forgotten; choose one")
    return opts


def _job_options_given(args: argparse.Namespace) -> dict[str, Any]:
    """The job's options this command line gives (multivolumecopy.joboptions), parsed; those it
    leaves out are not in the result: the run takes the job's."""
    given: dict[str, Any] = {}
    if args.no_exclude and args.exclude:
        raise UsageError("--no-exclude and --exclude contradict each other; give one or the other")
    if args.no_exclude or args.exclude is not None:
        given["exclude"] = list(args.exclude or [])
    if args.one_file_system is not None:
        given["one_file_system"] = args.one_file_system
    for key in ("owner", "acls", "xattrs"):
        if getattr(args, key) is not None:
            given[key] = getattr(args, key)
    if args.device_padding is not None:
        given["device_padding"] = parse_size(args.device_padding, "--device-padding")
    if args.volume_size is not None:
        if args.volume_size.strip().lower() == "none":
            given["volume_size"] = None
        else:
            given["volume_size"] = parse_size(args.volume_size, "--volume-size")
            if given["volume_size"] <= 0:
                raise UsageError("--volume-size must be more than zero (none: no limit)")
    return given


def _backup(args: argparse.Namespace, stdin: IO[str], stderr: IO[str], stdout: IO[str]) -> int:
    """A backup (or ``--dry-run``): the summary on stderr, the exit code by what is saved."""
    from .backup import Backup
    from .events import RunDone

    opts = _backup_options(args)
    renderer, swapper = _person(args, stdin, stderr)
    if args.dry_run:
        from .dryrun import dry_run, render

        dry = dry_run(opts, renderer)
        renderer.close()
        stdout.write(render(dry, args.json))
        stdout.flush()
        return int(ExitCode.OK)
    start = time.monotonic()
    from .jobfile import LOG_SUFFIX
    from .sinks import OperationLog

    outside = _outside(args, renderer)
    oplog = OperationLog(os.path.abspath(args.jobfile) + LOG_SUFFIX)
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
    failed = f", {count(len(summary.failed), 'file')} failed" if summary.failed else ""
    outside.finish(
        code, f"backup done: wrote {count(summary.copied_files, 'entry', 'entries')}{failed}", done
    )
    return code


def _outside(args: argparse.Namespace, renderer: Any) -> Any:
    from .sinks import Outside

    try:
        return Outside(
            args.events,
            args.notify_command,
            lambda text: renderer.say(f"warning: {text}"),
            lambda text: renderer.say(f"note: {text}"),
        )
    except OSError as err:
        raise UsageError(f"cannot write events to {args.events}: {err.strerror}; check --events") from None


def _person(args: argparse.Namespace, stdin: IO[str], stderr: IO[str]) -> tuple[Any, Any]:
    """The renderer for a person on stderr, and the swapper (script, prompt, or stop)."""
    from .progress import isatty, make_renderer
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

    interactive = isatty(stdin) and isatty(stderr)
    return renderer, Swapper(script=args.new_volume_script, ask=ask if interactive else None)


def _only_with(args: argparse.Namespace, mode: str, **options: object) -> None:
    for name, value in options.items():
        if value:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} goes with {mode}; see multivolumecopy --help")


def _verify(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    from .progress import ByteBar
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
    bar = ByteBar(stderr, "read back", args.hide_progress)
    try:
        report = verify(args.jobfile, args.output[0], args.start_index, args.stop_before, scrub, bar)
    finally:
        bar.close()
    stdout.write(render_report(report, as_json=args.json))
    stdout.flush()
    return int(ExitCode.OK if report.ok else ExitCode.VERIFY_FAILED)


def _status(args: argparse.Namespace, stdout: IO[str]) -> int:
    """Nagios-style: 0 OK, 1 WARNING, 2 CRITICAL (a jobfile that cannot be read is CRITICAL)."""
    from .clock import epoch
    from .jobfile import load
    from .parity import parity_status
    from .status import CRITICAL, DEFAULT_MAX_AGE_DAYS, add_parity, render, status

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
    add_parity(st, parity_status(job, args.jobfile), now, max_age)
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
    if args.lost_volume is not None and args.sources:
        raise UsageError("--lost-volume rebuilds a whole volume: give no PATTERN with it")
    if args.replace_volume and (args.lost_volume is None or args.replace_volume != [args.lost_volume]):
        raise UsageError(
            "with --restore, --replace-volume N goes with --lost-volume N (the same N): the blank "
            "drive at --to becomes volume N; see multivolumecopy --help"
        )
    renderer, swapper = _person(args, stdin, stderr)

    def person(event: Any) -> None:
        text = render_event(event)  # the restore's own events (a newer record, one in progress)
        if text is None:
            renderer(event)
        else:
            renderer.say(text)

    start = time.monotonic()
    opts = RestoreOptions(args.jobfile, args.output, args.to, args.sources, args.numeric_ids)
    outside = _outside(args, renderer)
    try:
        if args.replace_volume:
            from .replacement import Replacement

            summary = Replacement(opts, args.lost_volume, outside.emit_to(person), swapper).run()
        elif args.lost_volume is not None:
            from .rebuild import Rebuild

            summary = Rebuild(opts, args.lost_volume, outside.emit_to(person), swapper).run()
        else:
            summary = Restore(opts, outside.emit_to(person), swapper).run()
    except MvcError as err:
        outside.finish(int(err.exit_code), str(err))
        raise
    except KeyboardInterrupt:
        outside.finish(int(ExitCode.INTERRUPTED), "restore interrupted; run the same command again")
        raise
    finally:
        renderer.close()
    lines = [
        "",
        "summary:",
        f"  restored {count(summary.restored, 'entry', 'entries')} ({format_size(summary.restored_bytes)}) "
        f"from {numbered('volume', summary.volumes, 'no volume')} in {time.monotonic() - start:.1f} s",
        f"  {summary.intact} already restored and intact",
    ]
    if summary.not_kept:
        lines.append(
            f"  {lost_text(summary.not_kept)} not set: this user or the filesystem of --to refused "
            "them (the files are restored; restore as root onto a Linux filesystem to set them)"
        )
    if summary.problems:
        lines.append(f"  {len(summary.problems)} could not be restored:")
        lines.extend(f"    {path}: {why}" for path, why in summary.problems)
    renderer.say("\n".join(lines))
    code = int(ExitCode.FILES_FAILED if summary.problems else ExitCode.OK)
    outside.finish(code, f"restore done: {summary.restored} restored, {len(summary.problems)} not restored")
    return code


def _interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP (a closed terminal, a dropped ssh) stop the run as Ctrl-C does:
    what was copied is committed before exit."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def console_main() -> None:
    """The console script: ``main()``'s exit code is the process's."""
    sys.exit(main())
