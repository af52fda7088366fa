"""Exit codes and the errors that carry them.

The core raises these; only ``cli.main`` turns them into a message on stderr
and an exit status.  Each message says what happened and what to do next, on
one line, so an operator at 3 a.m. can act on it.  The codes are documented
in docs/exit-codes.rst; a test keeps that page and this enum in step.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The process's exit codes (the table is docs/exit-codes.rst)."""

    OK = 0
    FILES_FAILED = 1
    USAGE = 2
    SWAP_NEEDED = 3
    SOURCE_ERROR = 4
    OUTPUT_ERROR = 5
    JOBFILE_ERROR = 6
    TOO_LARGE = 7
    LOCKED = 8
    DRIVE_ERROR = 9
    VERIFY_FAILED = 10
    NOT_FOUND = 11
    INTERNAL = 70
    INTERRUPTED = 130


class MvcError(Exception):
    """Base of every foreseen failure: a message for the operator and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(MvcError):
    """Raised when the command line is wrong or contradicts itself (exit 2)."""

    exit_code = ExitCode.USAGE


class SourceError(MvcError):
    """Raised when a source cannot be backed up as given: missing, unreadable, neither a folder
    nor a file, given twice, or inside another (exit 4)."""

    exit_code = ExitCode.SOURCE_ERROR


class OutputError(MvcError):
    """Raised when an output cannot be used: missing, not writable, holding damaged or unknown
    records, or ``--to`` unusable for a restore (exit 5)."""

    exit_code = ExitCode.OUTPUT_ERROR


class JobfileError(MvcError):
    """Raised when the jobfile is missing, unreadable, damaged, of another job or cannot be
    written (exit 6)."""

    exit_code = ExitCode.JOBFILE_ERROR


class TooLargeError(MvcError):
    """Raised when a file is larger than a whole volume (exit 7)."""

    exit_code = ExitCode.TOO_LARGE


class LockedError(MvcError):
    """Raised when another run holds the lock of the jobfile or of a drive (exit 8)."""

    exit_code = ExitCode.LOCKED


class DriveError(MvcError):
    """The drive failed under us (EIO, EROFS, gone); what was committed is kept."""

    exit_code = ExitCode.DRIVE_ERROR


class SwapNeeded(MvcError):
    """The run stopped at a drive swap; running the same command again continues."""

    exit_code = ExitCode.SWAP_NEEDED


class Interrupted(MvcError):
    """Raised when a copy is interrupted (Ctrl-C, SIGTERM, SIGHUP), once what was copied is
    committed (exit 130)."""

    exit_code = ExitCode.INTERRUPTED
