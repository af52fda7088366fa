"""Events: what the core tells the outside world.

The core never prints.  It calls an ``emit`` function with one of these small
frozen records; the CLI renders them (tqdm bars, lines on stderr) and tests
record them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union


@dataclass(frozen=True)
class ScanDone:
    """The sources are scanned: how many files, folders and symlinks, and the bytes."""

    files: int
    dirs: int
    links: int
    bytes: int


@dataclass(frozen=True)
class Note:
    """Something the operator should know that needs no action (a folder made, a record used)."""

    text: str


@dataclass(frozen=True)
class Skipped:
    """A source entry left out or not copied this time (special file, vanished, in the way)."""

    path: str
    reason: str


@dataclass(frozen=True)
class FileFailed:
    """An entry could not be saved in this run, or restored: ``reason`` says why."""

    path: str
    reason: str


@dataclass(frozen=True)
class ChangesFound:
    """A re-run's comparison of the sources with the jobfile."""

    new: int
    changed: int
    moved: int
    deleted: int
    bytes: int  # of the new and changed files
    modes: int = 0  # entries whose mode alone changed (set on their volume, data left alone)


@dataclass(frozen=True)
class RunStarted:
    """A backup run starts or resumes, with the entries and bytes it has to place."""

    run: int
    resumed: bool
    files_to_write: int
    bytes_to_write: int


@dataclass(frozen=True)
class NothingToDo:
    """Every entry is saved and nothing changed: the run needs no drive."""

    files: int
    volumes: int


@dataclass(frozen=True)
class VolumeMounted:
    """The drive at ``output`` is volume ``volume`` (``new``: a blank drive, labelled just now),
    with ``free`` bytes."""

    volume: int
    output: str
    new: bool
    free: int
    uuid: str = ""  # the volume id on the drive's label


@dataclass(frozen=True)
class ForeignData:
    """A drive being labelled already holds files that are not part of the backup: left alone."""

    volume: int
    files: int
    bytes: int


@dataclass(frozen=True)
class VolumePlanned:
    """A volume's plan is made: what it keeps and removes, and what will be written."""

    volume: int
    keep: int
    purge: int
    files_to_write: int
    bytes_to_write: int
    last_index: Optional[int]


@dataclass(frozen=True)
class Copied:
    """Whole entries were written: to a volume by a backup, or from one by a restore."""

    volume: int
    files: int
    bytes: int  # bytes of whole files completed in this step
    unshown: int  # of those, bytes no BytesCopied event has told of yet
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Renamed:
    """Files moved in the sources, renamed on their volume."""

    volume: int
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BytesCopied:
    """Progress inside large files, ahead of the ``Copied`` that completes them."""

    bytes: int


@dataclass(frozen=True)
class Adopted:
    """A copy already at the entry's place on the drive (same kind, size, time and bytes) was
    recorded instead of written again."""

    volume: int
    path: str


@dataclass(frozen=True)
class Purged:
    """Entries of ours that no longer belong on a volume were removed from it."""

    volume: int
    files: int
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class VolumeFull:
    """A volume could not take all that was meant for it: the rest needs another drive."""

    volume: int


@dataclass(frozen=True)
class VolumeDone:
    """A volume is committed and its jobfile saved: what it holds (with its index ranges), what
    this run wrote there, and whether it is full; the drive may be removed."""

    volume: int
    output: str
    files: int  # entries the volume holds
    bytes: int
    copied_files: int  # written in this run
    copied_bytes: int
    ranges: tuple[tuple[int, int], ...]
    full: bool
    unchanged: bool = False  # nothing on it needed changing: its records were left as they were


@dataclass(frozen=True)
class Adapted:
    """What a drive could not hold as it is, and what was done about it."""

    volume: int
    limits: tuple[str, ...]
    renamed: int  # entries stored under another name
    recorded_only: int  # entries kept only in the records (symlinks on exFAT)


@dataclass(frozen=True)
class DriveRefused:
    """The drive at ``output`` cannot be used now: ``reason`` says why."""

    output: str
    reason: str


@dataclass(frozen=True)
class WaitingForDrive:
    """The run needs another drive at ``output``: ``message`` says which, for a person."""

    output: str
    message: str
    wanted: tuple[int, ...]
    next_volume: Union[int, str]  # "P1": the parity drive


@dataclass(frozen=True)
class RunDone:
    """A backup ended: what it wrote, what is not saved, each volume's summary and the time it
    took."""

    copied_files: int
    copied_bytes: int
    failed: tuple[tuple[str, str], ...]
    volumes: tuple[VolumeDone, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    skipped: int = 0


@dataclass(frozen=True)
class RestoreStarted:
    """A restore starts: the volumes it needs, the files and bytes to restore, and how many are
    already restored and intact."""

    volumes: tuple[int, ...]  # the volumes that must be inserted
    files: int
    bytes: int
    intact: int  # already restored and intact: skipped


Event = Union[
    Note,
    Renamed,
    ChangesFound,
    Adapted,
    RestoreStarted,
    ScanDone,
    Skipped,
    FileFailed,
    RunStarted,
    NothingToDo,
    VolumeMounted,
    ForeignData,
    VolumePlanned,
    Copied,
    BytesCopied,
    Adopted,
    Purged,
    VolumeFull,
    VolumeDone,
    DriveRefused,
    WaitingForDrive,
    RunDone,
]
Emit = Callable[[Event], None]
