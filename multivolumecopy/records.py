"""Each drive's own record: its copy of the jobfile, and what it says about the drive.

A drive gets a copy of the jobfile when it is done in a run, so every drive
carries the record as it stood then: the drive written last has the newest,
an early drive of a run an older one (still "in progress", the volumes after
it not yet written).  ``--restore`` and ``--locate`` compare the records they
meet and use the newest; ``--verify`` and ``--restore`` ask the record in use
whether a drive is still the volume its label names (not an old copy of a
replaced volume, nor one given up).

Records are compared by run number, then by when they were saved; two saves
in the same second of one run are told apart by how far the run had got.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Optional

from . import clock
from . import jobfile as jf
from .driveformat import DATA, JOBCOPY, Label, read_label
from .errors import JobfileError, OutputError
from .sizes import count

_HEAD_LIMIT = 64 * 1024 * 1024  # a head larger than this is not one of ours: no record to go by


@dataclass(frozen=True)
class Head:
    """What a record says about itself, enough to compare two records without their catalogs."""

    job_id: str
    run: int
    state: str  # "done" or "in-progress"
    updated: Optional[str]
    done_volumes: int  # volumes the run had finished when the record was saved

    @property
    def in_progress(self) -> bool:
        """Whether the record was saved while its run was still going."""
        return self.state == "in-progress"

    def order(self) -> tuple[int, float, bool, int]:
        """Sorts older records first."""
        try:
            when = clock.epoch(self.updated) if self.updated else 0.0
        except ValueError:
            when = 0.0
        return (self.run, when, self.state == "done", self.done_volumes)

    def describe(self) -> str:
        """``run 3, in progress with 2 volumes done, saved 2026-11-22T03:00:00+00:00``"""
        state = (
            f"in progress with {count(self.done_volumes, 'volume')} done" if self.in_progress else "finished"
        )
        return f"run {self.run}, {state}, saved {self.updated or 'at an unknown time'}"


def head_of(job: jf.Job) -> Head:
    """The :class:`Head` of a jobfile already loaded."""
    return Head(job.job_id, job.run.number, job.run.state, job.updated, len(job.run.done_volumes))


def newer(a: Head, b: Head) -> bool:
    """Whether record ``a`` was saved after record ``b`` (of the same job)."""
    return a.job_id == b.job_id and a.order() > b.order()


def open_record(root: str) -> Optional[int]:
    """A descriptor on the drive's copy of the jobfile, or None if it has none.  Never opened
    through a symlink, nor anything but a regular file (a FIFO would block the read)."""
    try:
        fd = os.open(os.path.join(root, JOBCOPY), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # absent, a symlink (ELOOP), unreadable: no record to go by
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def peek(root: str) -> Optional[Head]:
    """The head of the drive's record, read without its catalog (a million rows are 100 MB);
    None if the drive has no record this version can read."""
    fd = open_record(root)
    if fd is None:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            lines = []
            size = 0
            for line in fh:
                if line == jf.FILES_LINE:
                    break
                lines.append(line)
                size += len(line)
                if size > _HEAD_LIMIT:
                    return None
            else:
                return _head_of_whole(b"".join(lines), root)
    except OSError:
        return None
    try:
        doc = json.loads(b"".join(lines).rstrip().rstrip(b",") + b"}")
        return _head(doc)
    except (ValueError, KeyError, TypeError):
        return None


def _head_of_whole(raw: bytes, root: str) -> Optional[Head]:
    """A record laid out otherwise (reformatted by a tool): parsed whole."""
    try:
        return head_of(jf.loads(raw, os.path.join(root, JOBCOPY)))
    except JobfileError:
        return None


def _head(doc: dict) -> Optional[Head]:
    # The version is left to the jobfile's reader: a record this version cannot read is
    # refused when it is loaded, and never used.
    if doc.get("format") != jf.FORMAT:
        return None
    run = doc["run"]
    return Head(
        str(doc["job_id"]),
        int(run["number"]),
        str(run["state"]),
        doc.get("updated"),
        len(run.get("done_volumes") or ()),
    )


def load_record(root: str) -> Optional[jf.Job]:
    """The drive's copy of the jobfile, whole; None if it has none or it cannot be read."""
    fd = open_record(root)
    if fd is None:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read()
        return jf.loads(raw, os.path.join(root, JOBCOPY))
    except (OSError, JobfileError):
        return None


def standing(job: jf.Job, label: Label) -> Optional[str]:
    """Why the drive with ``label`` is not the volume it says it is, by the record ``job`` (of
    the same job), as what it is instead ("an old copy of volume 2, ..."); None when it is."""
    n = label.volume
    if label.role != DATA:
        return f"the parity drive P{n} (it holds no files of its own; --lost-volume reads it)"
    known = job.volumes.get(n)
    if known is None:
        return None
    if known.uuid != label.volume_uuid:
        return (
            f"an old copy of volume {n}, replaced by another drive (the record knows volume {n} by "
            "another volume id)"
        )
    if known.forgotten:
        return f"volume {n}, which was given up (--forget-volume): its files were placed on other volumes"
    return None


def newest_record(jobfile: str, outputs: list[str]) -> tuple[jf.Job, list[str]]:
    """The newest record of the job among the jobfile (if it exists) and the copies on the
    drives mounted at ``outputs``, with notes for a person: which one is used, and which
    drives were left out.  Raises :class:`JobfileError` when there is none at all."""
    notes: list[str] = []
    job = jf.load(jobfile) if os.path.exists(jobfile) or not outputs else None
    source = f"the jobfile {jobfile}"
    for out in outputs:
        try:
            label = read_label(out)
        except OutputError as err:
            notes.append(f"{out} left out: {err}")
            continue
        head = peek(out)
        if label is None or head is None:
            notes.append(f"{out} left out: it holds no record of a multivolumecopy job")
            continue
        if job is not None and head.job_id != job.job_id:
            notes.append(f"{out} left out: it is a drive of another job ({head.job_id[:8]})")
            continue
        if job is not None and not newer(head, head_of(job)):
            continue
        record = load_record(out)
        if record is None:
            notes.append(f"{out} left out: its record cannot be read")
            continue
        job, source = record, f"volume {label.volume} at {out}"
    if job is None:
        raise JobfileError(
            f"jobfile {jobfile} does not exist and no drive given with -o holds a record; check -f and -o"
        )
    notes.append(f"using the newest record: {source} ({head_of(job).describe()})")
    return job, notes
