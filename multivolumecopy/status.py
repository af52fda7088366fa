"""``--status``: how current the backup is, for a person and for monitoring (Nagios codes).

For each volume: when it was last updated and last verified, how full it is; and whether the
last run finished.  Exit 0 OK, 1 WARNING (a volume older than ``--max-age``, or the last run
left files uncopied, or a run in progress for longer than ``--max-age``), 2 CRITICAL (a volume
older than twice ``--max-age``, or an unreadable jobfile).  A run in progress is reported as
such: the volumes it is still updating are not counted as out of date.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from . import clock, joboptions
from . import jobfile as jf
from .sizes import count, format_size, numbered, plural

OK, WARNING, CRITICAL = 0, 1, 2
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}
DEFAULT_MAX_AGE_DAYS = 35.0


@dataclass
class VolumeStatus:
    """One volume in ``--status``: when it was updated and verified, how full it is, and its
    state with why."""

    number: int
    updated: Optional[str]
    verified: Optional[str]
    used: int
    capacity: int
    files: int
    state: str = "OK"
    note: str = ""


@dataclass
class Status:
    """What ``--status`` found: the Nagios code, a summary line, the run's state, each volume,
    and the messages."""

    code: int
    summary: str
    run: dict
    volumes: list[VolumeStatus] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)  # the job's: what a run that gives none uses
    parity: Optional[dict[str, Any]] = None  # parity.parity_status: a job with a parity drive


def add_parity(st: Status, info: Optional[dict[str, Any]], now: float, max_age_days: float) -> None:
    """Add what the parity does not protect: WARNING when something is unprotected and the
    parity drive was last updated longer ago than ``max_age_days`` (or never)."""
    st.parity = info
    if info is None:
        return
    if info["current"]:
        msg = f"parity {info['drive']} current"
    else:
        parts = [
            f"volume {v}: {count(x['unprotected_files'], 'file')} ({format_size(x['unprotected_bytes'])}), "
            + "; ".join(x["why"])
            for v, x in info["volumes"].items()
            if x["unprotected_files"]
        ]
        msg = f"parity {info['drive']} does not protect " + ", ".join(parts)
        updated = info["updated"]
        if updated is None or now - clock.epoch(updated) > max_age_days * 86400:
            st.code = max(st.code, WARNING)
    st.messages.append(msg)
    st.summary += "; " + msg


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"


def status(job: jf.Job, now: float, max_age_days: float = DEFAULT_MAX_AGE_DAYS) -> Status:
    """How current the backup recorded in ``job`` is at ``now`` (epoch seconds), judged by
    ``max_age_days``."""
    limit = max_age_days * 86400
    code = OK
    messages: list[str] = []
    run = job.run
    busy = set(run.pending_volumes) - set(run.done_volumes) if run.in_progress else set()
    if run.in_progress:
        since = now - clock.epoch(run.started) if run.started else 0.0
        msg = f"run {run.number} in progress for {_days(since)}"
        still = sorted(busy) or ([run.open_volume] if run.open_volume else [])
        if still:
            msg += f", {numbered('volume', still)} still to update"
        if since > limit:
            code = max(code, WARNING)
            days = plural(max_age_days, "day")
            msg += f" (longer than --max-age {max_age_days:g} {days}: is it waiting for a drive?)"
        messages.append(msg)
    elif run.number:
        messages.append(f"last run {run.number} finished {run.finished or 'at an unknown time'}")
    if job.failed:
        code = max(code, WARNING)
        messages.append(
            f"the last run could not copy {count(len(job.failed), 'file')} (listed in the jobfile)"
        )
    vols = []
    for v, rec in sorted(job.volumes.items()):
        if rec.forgotten:
            continue
        vs = VolumeStatus(v, rec.updated, rec.last_verified, rec.used, rec.capacity, rec.files)
        if v in busy or v == run.open_volume:
            vs.note = "being updated by the run in progress"
        elif rec.updated is None:
            vs.state, vs.note = "WARNING", "never finished"
            code = max(code, WARNING)
        else:
            age = now - clock.epoch(rec.updated)
            vs.note = f"updated {_days(age)} ago"
            if age > 2 * limit:
                vs.state = "CRITICAL"
                code = max(code, CRITICAL)
            elif age > limit:
                vs.state = "WARNING"
                code = max(code, WARNING)
        vols.append(vs)
    stale = [v.number for v in vols if v.state != "OK"]
    if stale:
        messages.append(
            f"out of date: {numbered('volume', stale)} "
            f"(--max-age {max_age_days:g} {plural(max_age_days, 'day')})"
        )
    entries = count(sum(v.files for v in vols), "entry", "entries")
    summary = f"{count(len(vols), 'volume')}, {entries}; " + "; ".join(messages)
    options = {**job.options, **joboptions.job_values(job.options)}
    return Status(code, summary, asdict(run), vols, messages, options)


def render(st: Status, as_json: bool) -> str:
    """The status for a monitor (a Nagios line, then a line a volume); or as JSON, with
    ``as_json``."""
    if as_json:
        doc = {"format": "multivolumecopy-status", "version": 1, "status": NAMES[st.code], **asdict(st)}
        return json.dumps(doc, indent=1) + "\n"
    lines = [f"MULTIVOLUMECOPY {NAMES[st.code]} - {st.summary}"]
    for v in st.volumes:
        full = f"{100 * v.used / v.capacity:.0f}% full" if v.capacity else "size unknown"
        lines.append(
            f"  volume {v.number}: {v.state}, {v.note}; last verified {v.verified or 'never'}; "
            f"{count(v.files, 'entry', 'entries')}, {format_size(v.used)}, {full}"
        )
    lines.append(f"  job options: {joboptions.describe(st.options)}")
    return "\n".join(lines) + "\n"
