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
when the whole volume was: only after a complete scrub that found nothing wrong
(and no file it could not check for want of a recorded hash).

A verify takes the drive's lock, so it is refused while a backup writes the
drive (a scrub, which records its check times, exclusively; a plain verify
shared).  A drive mounted read-only is checked all the same, without the lock
(nobody can be writing it) and without recording anything on it.  Paths on the
drive are reached without following symlinks (:mod:`multivolumecopy.nofollow`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Callable, Optional

from . import clock
from . import jobfile as jf
from .catalog import DIR, FILE, LINK, Catalog, ancestors, format_ranges, mtimes_equal
from .drive import Drive
from .driveformat import JOBCOPY, LOCKFILE, RESERVED_PREFIX, Label
from .errors import LockedError, OutputError, UsageError
from .fsutil import path_inside
from .lock import FileLock, reading_lock
from .nofollow import Blocked, Tree
from .records import head_of, load_record, newer, peek, standing
from .sizes import count, format_size, plural

READ_CHUNK = 1024 * 1024


@dataclass
class Report:
    """What ``--verify`` found on one drive: what it checked, what is missing, different or
    extra, and with ``--checksum`` what was read back and how it compared."""

    output: str
    volume: Optional[int]
    first: int  # the indexes checked: [first, stop) given by -i/-si, or those of the volume's
    stop: int  # entries (from its first to past its last) when the volume was checked whole
    ranged: bool = True  # -i/-si gave the range; else the volume's own entries were checked
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
    read_only: bool = False  # the scrub could not record its check times on the drive
    rehashed_by_next_run: bool = False  # the jobfile says its unhashed files: a run that hashes visits it
    notes: list[str] = field(default_factory=list)  # for a person: what else happened

    @property
    def ok(self) -> bool:
        """Whether the drive passed: nothing missing, different, extra or corrupt, and no file left
        unchecked for want of a recorded hash."""
        # A file a scrub could not check (no recorded hash) is not known to be good.
        return not (self.missing or self.different or self.extra or self.corrupt or self.unhashed)


@dataclass(frozen=True)
class Scrub:
    """``--checksum``'s limits: files checked within ``max_age_days`` are left out, and the
    reading stops after ``time_budget`` seconds."""

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

    ``progress(bytes_done, bytes_total)`` is called as a scrub reads.  Raises
    :class:`LockedError` while a backup holds the drive.
    """
    job = jf.load(jobfile)
    if not os.path.isdir(output):
        raise OutputError(f"output {output} is not a directory; give the drive's mount point")
    drive = Drive(output)
    writable = scrub is not None and not _mounted_read_only(drive.root) and _open_to_record(drive)
    lock = None
    try:
        if not writable:
            lock = reading_lock(os.path.join(drive.root, LOCKFILE), f"the drive at {drive.root}")
            drive.read_state()
        try:
            tree = Tree(drive.root)
        except OSError as err:
            raise OutputError(f"cannot read the drive at {drive.root}: {err.strerror}") from None
        with tree:
            return _verify(job, jobfile, drive, tree, first, stop, scrub, writable, progress, clock)
    finally:
        drive.close()
        if lock is not None:
            if drive.label is None:
                lock.remove_if_made()  # a drive that is not ours keeps nothing of ours
            lock.release()


def _mounted_read_only(root: str) -> bool:
    try:
        return bool(os.statvfs(root).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _open_to_record(drive: Drive) -> bool:
    """Open the drive for a scrub that records its check times (locked exclusively); False
    when this process may not write it, and the scrub goes on reading only."""
    try:
        drive.open()
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return False
        raise OutputError(f"cannot open the drive at {drive.root}: {err.strerror}") from None
    return True


def _verify(
    job: jf.Job,
    jobfile: str,
    drive: Drive,
    tree: Tree,
    first: Optional[int],
    stop: Optional[int],
    scrub: Optional[Scrub],
    writable: bool,
    progress: Callable[[int, int], None],
    clock: Callable[[], float],
) -> Report:
    output = drive.root
    label = drive.label
    if label is not None:
        _check_label(job, jobfile, output, label)
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
    report = Report(output, volume, lo, hi, ranged)
    expected: set[str] = set()
    present: list[int] = []
    held = range(lo, hi) if ranged else [i for i in range(len(cat)) if cat.volumes[i] == volume]
    if not ranged:
        report.first, report.stop = (held[0], held[-1] + 1) if held else (0, 0)
    for i in held:
        path = cat.paths[i]
        report.checked += 1
        report.checked_bytes += cat.sizes[i]
        stored = drive.on_drive(path)
        if stored is None:
            continue  # the drive cannot hold it (a symlink on exFAT): it lives in the records
        expected.add(stored)
        try:
            st = tree.lstat(stored)
        except (FileNotFoundError, NotADirectoryError):
            report.missing.append((i, path))
            continue
        except Blocked as b:
            report.different.append((i, path, f"{b.where} on the drive is {b.what}, not a folder"))
            continue
        why = _difference(cat, i, st, partial(tree.readlink, stored), gran)
        if why:
            report.different.append((i, path, why))
        elif cat.kinds[i] == ord(FILE):
            present.append(i)
    if not ranged:
        report.extra = _extras(output, expected)
    if scrub is not None:
        complete = _scrub(cat, drive, tree, present, scrub, report, progress, clock)
        if not writable:
            report.read_only = True
        elif drive.label is not None:  # a drive that is not a volume gets no records of ours
            drive.commit()
        if rec is not None:
            _record_scrub(job, jobfile, rec, report, complete and not ranged, drive, present, clock)
    return report


def _record_scrub(
    job: jf.Job,
    jobfile: str,
    rec: jf.VolumeRecord,
    report: Report,
    whole: bool,
    drive: Drive,
    present: list[int],
    clock: Callable[[], float],
) -> None:
    """Tell the jobfile (kept off the drive) what a scrub of volume ``rec`` found: when it was
    verified, after a ``whole`` scrub that found it good; or its files with no hash, so that
    the next run that hashes visits it (and the report says so only when the jobfile knows)."""
    cat = job.catalog
    known = not rec.forgotten and rec.unhashed >= len(report.unhashed)
    if path_inside(jobfile, drive.root):  # a jobfile on the drive checked is not written here
        report.rehashed_by_next_run = bool(report.unhashed) and known
        return
    if whole and report.ok:
        # Every file of the volume has been read back and found intact since the oldest of
        # their checks (this one, or one --max-age left alone): that is when it was verified.
        when = min((drive.verified.get(cat.paths[i], clock()) for i in present), default=clock())
        note = _remember(jobfile, job, rec.number, verified=when)
        if note:
            report.notes.append(note)
    elif report.unhashed and not rec.forgotten:
        if not known:
            # The jobfile did not know (a drive written by an older version): the next run
            # that hashes must visit the volume, as the report then says it will.
            note = _remember(jobfile, job, rec.number, unhashed=len(report.unhashed))
            if note:
                report.notes.append(note)
            known = note is None
        report.rehashed_by_next_run = known


def _check_label(job: jf.Job, jobfile: str, output: str, label: Label) -> None:
    """Refuse a drive of another job, an old copy of a replaced volume, or one given up."""
    if label.job_id != job.job_id:
        raise OutputError(
            f"the drive at {output} belongs to another job ({label.job_id[:8]}); "
            "give the jobfile of that job with -f"
        )
    why = standing(job, label)
    if why is None:
        return
    head = peek(output)
    if head is not None and newer(head, head_of(job)):
        own = load_record(output)
        if own is not None and standing(own, label) is None:
            raise OutputError(
                f"the jobfile {jobfile} is older than the drive at {output}, which it does not know "
                f"as volume {label.volume}; give the jobfile of the last run, or the drive's own "
                f"copy (-f {os.path.join(output, JOBCOPY)})"
            )
    raise OutputError(f"the drive at {output} is {why}; set it aside")


def _scrub(
    cat: Catalog,
    drive: Drive,
    tree: Tree,
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
        held = drive.contents.get(path)
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
        held = drive.contents[path]
        digest = _sha256(tree, drive.on_drive(path) or path, progress, done, total)
        done += cat.sizes[i]
        report.scrubbed += 1
        report.scrubbed_bytes += cat.sizes[i]
        if digest == held.sha256:
            drive.verified[path] = int(clock())
        else:
            report.corrupt.append((i, path))
    return True


def _sha256(
    tree: Tree, stored: str, progress: Callable[[int, int], None], offset: int, total: int
) -> Optional[str]:
    """The file's SHA-256 (None if it cannot be read, or is reached only through a symlink),
    telling ``progress`` as it reads."""
    digest = hashlib.sha256()
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    read = 0
    try:
        fd = tree.open_regular(stored)
    except (OSError, Blocked):
        return None  # unreadable counts as corrupt
    try:
        while True:
            n = os.readv(fd, [view])
            if not n:
                break
            digest.update(view[:n])
            read += n
            progress(offset + read, total)
    except OSError:
        return None
    finally:
        os.close(fd)
    return digest.hexdigest()


def _remember(
    jobfile: str, job: jf.Job, volume: int, verified: Optional[float] = None, unhashed: int = 0
) -> Optional[str]:
    """Record in the jobfile when the volume was ``verified``, or how many files it holds with
    no hash (``unhashed``: a run that hashes then visits it); returns why it could not be."""
    try:
        with FileLock(jobfile + ".lock", f"the jobfile {jobfile}"):
            fresh = jf.load(jobfile)
            if fresh.job_id == job.job_id and volume in fresh.volumes:
                rec = fresh.volumes[volume]
                if verified is not None:
                    rec.last_verified = clock.iso(verified)
                rec.unhashed = max(rec.unhashed, unhashed)
                jf.save(jobfile, fresh)
    except (LockedError, OSError) as err:
        why = err.strerror if isinstance(err, OSError) else "a backup is using it"
        what = "the verification was" if verified is not None else "the files with no hash were"
        return f"{what} not recorded in the jobfile {jobfile} ({why})"
    return None


def _difference(cat: Catalog, i: int, st: os.stat_result, readlink: Callable[[], str], gran: int) -> str:
    kind = cat.kind(i)
    if kind == DIR:
        return "" if stat.S_ISDIR(st.st_mode) else "not a directory on the drive"
    if kind == LINK:
        if not stat.S_ISLNK(st.st_mode):
            return "not a symlink on the drive"
        target = readlink()
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
    """The report for a person (a line a problem, then the verdict); or as JSON, with
    ``as_json``."""
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
    if report.stop <= report.first:
        scope = "no indexes" if report.ranged else "no entries on it"
    else:
        span = format_ranges([(report.first, report.stop - 1)])
        scope = f"indexes {span}" if report.ranged else f"its entries (indexes {span})"
    verdict = "OK" if report.ok else "PROBLEMS"
    lines.append(
        f"{verdict}: {where} at {report.output}, {scope}: "
        f"checked {count(report.checked, 'entry', 'entries')} "
        f"({format_size(report.checked_bytes)}); {len(report.missing)} missing, "
        f"{len(report.different)} different, {len(report.extra)} extra"
    )
    if report.scrubbed or report.unhashed or report.recent or report.not_reached or report.corrupt:
        line = (
            f"content: read back {count(report.scrubbed, 'file')} ({format_size(report.scrubbed_bytes)}), "
            f"{len(report.corrupt)} corrupt"
        )
        if report.recent:
            line += f", {report.recent} checked lately and left out"
        if report.not_reached:
            line += f", {report.not_reached} left for next time (time budget)"
        if report.unhashed:
            line += f", {len(report.unhashed)} not checked"
        lines.append(line)
    if report.unhashed:
        n = len(report.unhashed)
        its = plural(n, "its", "their")
        line = (
            f"{count(n, 'file')} {plural(n, 'has', 'have')} no recorded hash (backed up with --no-hash), "
            f"so {its} content could not be checked, only {its} size and time"
        )
        if report.rehashed_by_next_run:
            line += (
                f"; the next backup run without --no-hash asks for volume {report.volume} "
                f"and hashes {plural(n, 'it', 'them')}"
            )
        lines.append(line)
    if report.read_only:
        lines.append("the drive is read-only here: the check times were not recorded on it")
    lines.extend(report.notes)
    return "\n".join(lines) + "\n"
