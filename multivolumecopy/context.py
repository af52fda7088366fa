"""The state one backup run shares among its stages (docs/architecture.rst has the map).

A :class:`RunContext` exists once the jobfile is read and merged with the scan: its job is
never missing, so no stage asks whether it is.  Who changes what:

* the catalog's record of which volume holds each entry: only the :class:`~.ledger.Ledger`;
* ``destinations`` (where each entry on no volume should go): the placement at the start, and
  a volume that gives entries up (they go to a new drive);
* ``failed`` and ``vanished``: the stage that met them (the writer, mostly);
* the change report and the summary's counts: the writer and the volume's close.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from . import events as ev
from . import jobfile as jf
from .catalog import Catalog
from .changes import Changes
from .ledger import Ledger
from .metadata import Keep
from .report import ChangeReport
from .worklist import Worklist

if TYPE_CHECKING:
    from .copier import CopyPool


@dataclass
class Options:
    """A backup's options, as the command line gave them.

    The job's options (:data:`~multivolumecopy.joboptions.OPTIONS`: ``exclude``,
    ``one_file_system``, ``device_padding``, ``volume_size``) hold what was given, else the
    built-in default, until :func:`~multivolumecopy.prepare.adopt_job_options` puts the job's
    in their place; ``given`` names those the command line gave (None: all of them, as for a
    caller that sets them itself)."""

    sources: list[str]
    outputs: list[str]
    jobfile: str = jf.DEFAULT_NAME
    exclude: list[str] = field(default_factory=list)
    device_padding: int = 0
    volume_size: Optional[int] = None
    workers: int = 2
    new_volume_script: Optional[str] = None
    hash: bool = True
    one_file_system: bool = False
    replace_volumes: list[int] = field(default_factory=list)
    forget_volumes: list[int] = field(default_factory=list)
    bwlimit: float = 0.0  # bytes per second read from the sources; 0: no limit
    idle_io: bool = True
    owner: bool = True  # --no-owner: owners and groups not kept
    acls: bool = True  # --no-acls
    xattrs: bool = True  # --no-xattrs
    given: Optional[frozenset[str]] = None
    change_options: bool = False  # --change-options: what is given becomes the job's

    @property
    def keep(self) -> Keep:
        """What of the sources' metadata the job keeps (owners, ACLs, extended attributes)."""
        return Keep(owner=self.owner, acls=self.acls, xattrs=self.xattrs)

    parity: int = 0  # parity drives (0 or 1): a job that has one keeps it (its map says so)
    replace_parity: bool = False  # --replace-volume P1: a blank drive becomes the parity drive


@dataclass
class Summary:
    """What a run did, for its last lines and its exit code."""

    copied_files: int = 0
    copied_bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # not saved: (path, why)
    volumes: list[ev.VolumeDone] = field(default_factory=list)
    nothing_to_do: bool = False
    skipped: int = 0


@dataclass
class RunContext:
    """One backup run's shared state, made once the scan is merged with the jobfile (the module
    docstring says which stage changes what)."""

    opts: Options
    jobfile: str  # absolute
    job: jf.Job
    old: Optional[Catalog]  # the catalog as the jobfile had it, before this run's scan
    changes: Changes  # what changed since (empty for a new job)
    reserve: int  # room kept on every drive for its copy of the jobfile
    emit: ev.Emit
    summary: Summary
    clock: Callable[[], float] = time.monotonic
    destinations: dict[int, int] = field(default_factory=dict)  # on no volume -> volume it goes to
    room: dict[int, int] = field(default_factory=dict)  # volume -> room for more by its record, left
    block: dict[int, int] = field(default_factory=dict)  # volume -> its block size
    failed: dict[int, str] = field(default_factory=dict)  # failed in this run, why: not offered again
    vanished: set[int] = field(default_factory=set)  # gone from the sources since the scan
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # the scan could not read: not saved
    specials_changed: bool = False  # the special files recorded differ from the jobfile's
    # Volume -> metadata.LOST_* flags: what its drive (or the user running us) refused to hold;
    # kept in the records, said once at the end of the run.
    metadata_lost: dict[int, int] = field(default_factory=dict)
    pool: Optional[CopyPool] = None  # started with the first copy, closed at the end of the run
    options_changed: bool = False  # the job's options differ from the jobfile's (--change-options)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.job.catalog)
        self.worklist = Worklist(self.job, self.destinations, self.failed, self.vanished)
        self.report = ChangeReport(self.job, self.old, self.changes)

    @property
    def catalog(self) -> Catalog:
        """The job's catalog: this run's scan, with each entry's volume carried over."""
        return self.job.catalog

    def fail(self, i: int, why: str, tell: bool = True) -> None:
        """An entry that cannot be saved in this run: not offered again, summed up, told."""
        self.failed[i] = why
        if tell:
            self.emit(ev.FileFailed(self.catalog.paths[i], why))
