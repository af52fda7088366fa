"""Verifying a drive against the jobfile (``--verify``), and scrubbing it (``--checksum``).

With ``-i``/``-si`` it checks that catalog indexes ``[i, si)`` are present and
current on the drive, whichever volume they were recorded on.  Without them
it checks exactly what the jobfile says belongs on the mounted volume (read
from its label), and lists what is on the drive but should not be.

Plain ``--verify`` compares kind, size and mtime and reads no content.
``--checksum`` also reads every file back and compares its SHA-256 with the
one recorded when it was written; ``--max-age`` and ``--time-budget`` limit a
scrub so a big drive can be checked a bit each night, oldest-checked first.
The drive's manifest remembers when each file was last checked, the jobfile
when the whole volume was.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from . import jobfile as jf
from .catalog import DIR, FILE, LINK, Catalog, ancestors
from .errors import OutputError, UsageError
from .fsutil import mtimes_equal
from .lock import FileLock
from .scan import path_inside
from .sizes import format_size
from .volume import RESERVED_PREFIX, Drive

READ_CHUNK = 1024 * 1024


@dataclass
class Report:
    output: str
    volume: Optional[int]
    first: int
    stop: int
    checked: int = 0
    checked_bytes: int = 0
    missing: list[tuple[int, str]] = field(default_factory=list)
    different: list[tuple[int, str, str]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    # --checksum
    scrubbed: int = 0
    scrubbed_bytes: int = 0
    corrupt: list[tuple[int, str]] = field(default_factory=list)
    unhashed: list[tuple[int, str]] = field(default_factory=list)  # no hash recorded: size/mtime only
    recent: int = 0  # left out by --max-age: checked lately
    not_reached: int = 0  # left for next time by --time-budget

    @property
    def ok(self) -> bool:
        return not (self.missing or self.different or self.extra or self.corrupt)


@dataclass(frozen=True)
class Scrub:
    max_age_days: Optional[float] = None
    time_budget: Optional[float] = None  # seconds


def verify(
    jobfile: str,
    output: str,
    first: Optional[int],
    stop: Optional[int],
    scrub: Optional[Scrub] = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
    clock: Callable[[], float] = time.time,
) -> Report:
    """Check the drive at ``output``; with ``scrub``, read its content back too.

    ``progress(bytes_done, bytes_total)`` is called as a scrub reads.
    """
    job = jf.load(jobfile)
    if not os.path.isdir(output):
        raise OutputError(f"output {output} is not a directory; give the drive's mount point")
    drive = Drive(output)
    if scrub is not None:
        drive.open()  # a scrub records what it checked: lock the drive
    else:
        drive.read_state()
    try:
        return _verify(job, jobfile, drive, first, stop, scrub, progress, clock)
    finally:
        drive.close()


def _verify(
    job: jf.Job,
    jobfile: str,
    drive: Drive,
    first: Optional[int],
    stop: Optional[int],
    scrub: Optional[Scrub],
    progress: Callable[[int, int], None],
    clock: Callable[[], float],
) -> Report:
    output = drive.root
    label = drive.label
    if label is not None and label.job_id != job.job_id:
        raise OutputError(
            f"the drive at {output} belongs to another job ({label.job_id[:8]}); "
            "give the jobfile of that job with -f"
        )
    cat = job.catalog
    ranged = first is not None or stop is not None
    lo = 0 if first is None else first
    hi = len(cat) if stop is None else stop
    if lo < 0 or hi < 0:
        raise UsageError("-i and -si are catalog indexes and cannot be negative")
    if lo > hi:
        raise UsageError(f"-i {lo} is past -si {hi}; -si is the index to stop before")
    hi = min(hi, len(cat))
    if not ranged and label is None:
        raise OutputError(
            f"the drive at {output} has no multivolumecopy label; give -i and -si "
            "to check a range of indexes on it"
        )
    volume = label.volume if label else None
    rec = job.volumes.get(volume) if volume else None
    gran = rec.granularity_ns if rec else 1
    report = Report(output, volume, lo, hi)
    expected: set[str] = set()
    present: list[int] = []
    for i in range(lo, hi) if ranged else range(len(cat)):
        if not ranged and cat.volumes[i] != volume:
            continue
        path = cat.paths[i]
        report.checked += 1
        report.checked_bytes += cat.sizes[i]
        stored = drive.on_drive(path)
        if stored is None:
            continue  # the drive cannot hold it (a symlink on exFAT): it lives in the records
        expected.add(stored)
        full = os.path.join(output, stored)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            report.missing.append((i, path))
            continue
        why = _difference(cat, i, st, full, gran)
        if why:
            report.different.append((i, path, why))
        elif cat.kinds[i] == ord(FILE):
            present.append(i)
    if not ranged:
        report.extra = _extras(output, expected)
    if scrub is not None:
        complete = _scrub(cat, drive, present, scrub, report, progress, clock)
        drive.commit()
        if complete and rec is not None and not ranged and not path_inside(jobfile, output):
            _remember_verified(jobfile, job, rec.number, clock)
    return report


def _scrub(
    cat: Catalog,
    drive: Drive,
    present: list[int],
    scrub: Scrub,
    report: Report,
    progress: Callable[[int, int], None],
    clock: Callable[[], float],
) -> bool:
    """Read files back and compare hashes; returns whether every due file was read."""
    now = clock()
    due: list[int] = []
    for i in present:
        path = cat.paths[i]
        held = drive.held.get(path)
        if held is None or not held.sha256:
            report.unhashed.append((i, path))
            continue
        last = drive.verified.get(path)
        if scrub.max_age_days is not None and last is not None and now - last < scrub.max_age_days * 86400:
            report.recent += 1
            continue
        due.append(i)
    due.sort(key=lambda i: drive.verified.get(cat.paths[i], 0))  # never or longest ago first
    total = sum(cat.sizes[i] for i in due)
    done = 0
    deadline = None if scrub.time_budget is None else now + scrub.time_budget
    for n, i in enumerate(due):
        if deadline is not None and clock() >= deadline:
            report.not_reached = len(due) - n
            return False
        path = cat.paths[i]
        held = drive.held[path]
        digest = _sha256(drive.path(drive.on_drive(path) or path), progress, done, total)
        done += cat.sizes[i]
        report.scrubbed += 1
        report.scrubbed_bytes += cat.sizes[i]
        if digest == held.sha256:
            drive.verified[path] = int(clock())
        else:
            report.corrupt.append((i, path))
    return True


def _sha256(path: str, progress: Callable[[int, int], None], offset: int, total: int) -> Optional[str]:
    """The file's SHA-256 (None if it cannot be read), telling ``progress`` as it reads."""
    digest = hashlib.sha256()
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    read = 0
    try:
        with open(path, "rb", buffering=0) as fh:
            while True:
                n = fh.readinto(view)
                if not n:
                    break
                digest.update(view[:n])
                read += n
                progress(offset + read, total)
    except OSError:
        return None  # unreadable counts as corrupt
    return digest.hexdigest()


def _remember_verified(jobfile: str, job: jf.Job, volume: int, clock: Callable[[], float]) -> None:
    with FileLock(jobfile + ".lock", f"the jobfile {jobfile}"):
        fresh = jf.load(jobfile)
        if fresh.job_id == job.job_id and volume in fresh.volumes:
            fresh.volumes[volume].last_verified = jf.iso(clock())
            jf.save(jobfile, fresh)


def _difference(cat: Catalog, i: int, st: os.stat_result, full: str, gran: int) -> str:
    kind = cat.kind(i)
    if kind == DIR:
        return "" if stat.S_ISDIR(st.st_mode) else "not a directory on the drive"
    if kind == LINK:
        if not stat.S_ISLNK(st.st_mode):
            return "not a symlink on the drive"
        target = os.readlink(full)
        return "" if target == cat.targets.get(i) else f"points to {target!r}, not {cat.targets.get(i)!r}"
    assert kind == FILE
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file on the drive"
    if st.st_size != cat.sizes[i]:
        return f"size {st.st_size} on the drive, {cat.sizes[i]} in the jobfile"
    if not mtimes_equal(st.st_mtime_ns, cat.mtimes[i], gran):
        return "modification time differs"
    return ""


def _extras(root: str, expected: set[str]) -> list[str]:
    """Everything on the drive that the volume should not hold (our own .mvcopy files aside)."""
    wanted_dirs = ancestors(expected)
    return sorted(p for p in _walk(root, "") if p not in expected and p not in wanted_dirs)


def _walk(root: str, rel: str) -> Iterator[str]:
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        for de in it:
            if not rel and (de.name.startswith(RESERVED_PREFIX) or de.name == "lost+found"):
                continue
            path = f"{rel}/{de.name}" if rel else de.name
            yield path
            if de.is_dir(follow_symlinks=False):
                yield from _walk(root, path)


def render_report(report: Report, as_json: bool = False) -> str:
    if as_json:
        doc = asdict(report)
        doc["ok"] = report.ok
        doc["format"] = "multivolumecopy-verify"
        doc["version"] = 1
        return json.dumps(doc, indent=1) + "\n"
    lines = []
    for i, path in report.missing:
        lines.append(f"missing    {i:>8}  {path}")
    for i, path, why in report.different:
        lines.append(f"different  {i:>8}  {path}: {why}")
    for i, path in report.corrupt:
        lines.append(f"corrupt    {i:>8}  {path}: content differs from what was written")
    for path in report.extra:
        lines.append(f"extra      {'-':>8}  {path}")
    where = f"volume {report.volume}" if report.volume else "the drive"
    scope = f"indexes {report.first}-{report.stop - 1}" if report.stop > report.first else "no indexes"
    verdict = "OK" if report.ok else "PROBLEMS"
    lines.append(
        f"{verdict}: {where} at {report.output}, {scope}: checked {report.checked} entries "
        f"({format_size(report.checked_bytes)}); {len(report.missing)} missing, "
        f"{len(report.different)} different, {len(report.extra)} extra"
    )
    if report.scrubbed or report.unhashed or report.recent or report.not_reached or report.corrupt:
        line = (
            f"content: read back {report.scrubbed} files ({format_size(report.scrubbed_bytes)}), "
            f"{len(report.corrupt)} corrupt"
        )
        if report.recent:
            line += f", {report.recent} checked lately and left out"
        if report.not_reached:
            line += f", {report.not_reached} left for next time (time budget)"
        if report.unhashed:
            line += f", {len(report.unhashed)} with no recorded hash (size and time checked only)"
        lines.append(line)
    return "\n".join(lines) + "\n"
