"""The command line's definition: every option, its help, and the exit codes in ``--help``.

Declarative only (docs/make_reference.py builds docs/usage's reference from it, and the zsh
completion is checked against it); :mod:`multivolumecopy.cli` runs what it parses.
"""

from __future__ import annotations

import argparse
import os

from . import __version__
from .errors import UsageError
from .jobfile import DEFAULT_NAME

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
    """An ArgumentParser whose errors are UsageErrors: one line, exit code 2, no traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise the parse error as a :class:`UsageError`, instead of printing it and exiting."""
        raise UsageError(f"{message}; see multivolumecopy --help")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``multivolumecopy``'s command line."""
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

    b = p.add_argument_group(
        "backing up (the default)",
        "The job remembers --exclude, -x, --device-padding and --volume-size: its first run\n"
        "records them in the jobfile, and a later run that leaves them out uses the job's.",
    )
    b.add_argument(
        "--exclude",
        action="append",
        default=None,
        metavar="PATTERN",
        help="leave out paths matching this glob (on the relative path, or on any "
        "single name if it has no /); repeatable",
    )
    b.add_argument(
        "--no-exclude",
        action="store_true",
        help="leave nothing out (with --change-options: drop the job's --exclude patterns)",
    )
    b.add_argument(
        "-x",
        "--one-file-system",
        action="store_const",
        const=True,
        default=None,
        help="do not cross into other filesystems mounted below the sources (their mount points are "
        "kept, empty)",
    )
    b.add_argument(
        "--no-one-file-system",
        dest="one_file_system",
        action="store_const",
        const=False,
        help="cross into other filesystems mounted below the sources (the default; with "
        "--change-options: drop the job's -x)",
    )
    b.add_argument(
        "--device-padding",
        default=None,
        metavar="SIZE",
        help="leave this much free on every drive (e.g. 500M; default 0)",
    )
    b.add_argument(
        "--volume-size",
        default=None,
        metavar="SIZE",
        help="put at most this much on each volume (e.g. 4G; none: no limit, the default)",
    )
    b.add_argument(
        "--change-options",
        action="store_true",
        help="make the options this run gives the job's own, where they differ from what the "
        "job has (without it such a run is refused)",
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
        type=volume_or_parity,
        action="append",
        default=[],
        metavar="N|P1",
        help="the next blank drive becomes volume N and receives its files (a lost, failing or too "
        "small drive), or becomes the parity drive P1, computed again from the sources; repeatable. "
        "With --restore --lost-volume N: the blank drive at --to becomes volume N, rebuilt from "
        "the parity drive and the other drives (no sources needed)",
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
        "--parity",
        type=int,
        choices=(0, 1),
        default=0,
        metavar="N",
        help="keep N parity drives (1: asked for as P1 after the data drives; any one lost drive can "
        "then be rebuilt with --restore --lost-volume); a job that has one keeps it",
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
        "--no-owner",
        dest="owner",
        action="store_const",
        const=False,
        default=None,
        help="do not keep owners and groups (kept by default where the drive and the user running "
        "the backup can: as root on ext4, xfs, btrfs; recorded for --restore elsewhere)",
    )
    b.add_argument(
        "--owner",
        dest="owner",
        action="store_const",
        const=True,
        help="keep owners and groups (the default; with --change-options: drop the job's --no-owner)",
    )
    b.add_argument(
        "--no-acls",
        dest="acls",
        action="store_const",
        const=False,
        default=None,
        help="do not keep POSIX ACLs (access and default; kept by default like owners)",
    )
    b.add_argument(
        "--acls",
        dest="acls",
        action="store_const",
        const=True,
        help="keep POSIX ACLs (the default; with --change-options: drop the job's --no-acls)",
    )
    b.add_argument(
        "--no-xattrs",
        dest="xattrs",
        action="store_const",
        const=False,
        default=None,
        help="do not keep extended attributes (user.*; trusted.* and security.* as root; kept by "
        "default like owners)",
    )
    b.add_argument(
        "--xattrs",
        dest="xattrs",
        action="store_const",
        const=True,
        help="keep extended attributes (the default; with --change-options: drop the job's --no-xattrs)",
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
    v.add_argument(
        "-i", "--device-startindex", dest="start_index", type=int, metavar="N", help="first index to check"
    )
    v.add_argument(
        "-si",
        "--select-index",
        dest="stop_before",
        type=int,
        metavar="N",
        help="the index to stop before: -i 0 -si 300 checks indexes 0 to 299",
    )
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
    r.add_argument(
        "--numeric-ids",
        action="store_true",
        help="give restored files the owner and group ids recorded, as numbers; by default a "
        "recorded user or group name this machine knows gives its id here",
    )
    r.add_argument(
        "--lost-volume",
        type=int,
        metavar="N",
        help="rebuild volume N's files into --to from the parity drive P1 (asked for first) and the "
        "other volumes' drives (any order), each checked against its SHA-256",
    )
    return p


def volume_or_parity(text: str) -> int | str:
    """A volume number, or ``P1`` (the parity drive), as ``--replace-volume`` takes them."""
    if text.strip().upper() == "P1":
        return "P1"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a volume number nor P1") from None


def default_workers() -> int:
    """Copy workers by default: 2 to 4, by the CPUs (more do not help a USB drive)."""
    return min(4, max(2, os.cpu_count() or 2))
