"""Verifying a drive against the jobfile (``--verify``).

With ``-i``/``-si`` it checks that catalog indexes ``[i, si)`` are present and
current on the drive, whichever volume they were recorded on.  Without them
it checks exactly what the jobfile says belongs on the mounted volume (read
from its label), and lists what is on the drive but should not be.
Presence and size/mtime only: the content is not read.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from typing import Optional

from . import jobfile as jf
from .catalog import DIR, FILE, LINK, ancestors
from .errors import OutputError, UsageError
from .fsutil import mtimes_equal
from .sizes import format_size
from .volume import RESERVED_PREFIX, read_label


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

    @property
    def ok(self) -> bool:
        return not (self.missing or self.different or self.extra)


def verify(jobfile: str, output: str, first: Optional[int], stop: Optional[int]) -> Report:
    job = jf.load(jobfile)
    if not os.path.isdir(output):
        raise OutputError(f"output {output} is not a directory; give the drive's mount point")
    label = read_label(output)
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
    indexes = range(lo, hi) if ranged else range(len(cat))
    report = Report(output, volume, lo, hi)
    expected: set[str] = set()
    for i in indexes:
        if not ranged and cat.volumes[i] != volume:
            continue
        path = cat.paths[i]
        expected.add(path)
        report.checked += 1
        report.checked_bytes += cat.sizes[i]
        try:
            st = os.lstat(os.path.join(output, path))
        except FileNotFoundError:
            report.missing.append((i, path))
            continue
        except NotADirectoryError:
            report.missing.append((i, path))
            continue
        why = _difference(cat, i, st, os.path.join(output, path), gran)
        if why:
            report.different.append((i, path, why))
    if not ranged:
        report.extra = _extras(output, expected)
    return report


def _difference(cat: jf.Catalog, i: int, st: os.stat_result, full: str, gran: int) -> str:
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
    extra: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for de in it:
                path = f"{rel}/{de.name}" if rel else de.name
                if not rel and de.name.startswith(RESERVED_PREFIX):
                    continue
                if path in expected or path in wanted_dirs:
                    if de.is_dir(follow_symlinks=False):
                        stack.append(path)
                    continue
                extra.append(path)
    return sorted(extra)


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
    return "\n".join(lines) + "\n"
