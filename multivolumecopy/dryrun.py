"""``--dry-run``: what a run would do to each volume, touching no drive and writing nothing.

The run's own plan (the change classification, the placement, then
:func:`multivolumecopy.reconcile.plan_volume` for each volume it must visit), fed with what
each volume holds and offers according to its record, where the run asks the drive: the two
differ only where a drive differs from its record (files changed on it by hand, a move whose
content turns out to differ, a drive that has less room than recorded).  Entries no existing
volume takes are what a new drive (or the volume being filled for the first time) gets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from . import events as ev
from . import jobfile as jf
from .catalog import FILE
from .context import Options, Summary
from .placement import NEW_DRIVE
from .prepare import adopt_job_options, check_jobfile_folder, merge
from .reconcile import VolumePlan
from .runplan import place_overflow, plan_run, recorded_plan
from .scan import resolve_sources
from .sizes import count, format_size


@dataclass
class VolumeWork:
    """What a run would do to one volume, or to a new drive: the paths it would copy, rewrite,
    rename, delete and re-mode, and the bytes it would write."""

    copy: list[str] = field(default_factory=list)
    rewrite: list[str] = field(default_factory=list)
    rename: list[list[str]] = field(default_factory=list)  # [old, new]
    delete: list[str] = field(default_factory=list)
    chmod: list[str] = field(default_factory=list)  # kept; only the mode is set
    bytes: int = 0  # to be written


@dataclass
class DryRun:
    """What ``--dry-run`` found: the number the run would have, the volumes it would ask for, and
    what would need a new drive."""

    run: int
    volumes: dict[int, VolumeWork]  # every volume the run would ask for
    new_drive: VolumeWork  # what needs a drive this job does not have yet

    def insert(self) -> list[int]:
        """The volumes the operator would insert, in order (a blank drive besides, when
        ``new_drive`` has something to copy)."""
        return sorted(self.volumes)


def dry_run(opts: Options, emit: ev.Emit) -> DryRun:
    """What a run would do, volume by volume; touches no drive and writes nothing.

    The run's stages (the merge, :func:`~multivolumecopy.runplan.plan_run`, a volume plan for
    each volume to visit) with each volume's contents and room taken from its record, and the
    plans recorded instead of carried out."""
    sources = resolve_sources(opts.sources)
    jobfile = os.path.abspath(opts.jobfile)
    check_jobfile_folder(jobfile, opts.jobfile)  # the run would refuse it: so does its preview
    opts = adopt_job_options(opts, sources, jobfile, emit, dry=True)
    _, ctx, pending = merge(opts, sources, jobfile, emit, Summary())
    job = ctx.job
    number = job.run.number if job.run.in_progress else job.run.number + 1
    plans: dict[int, VolumePlan] = {}
    taken: set[int] = set()
    if job.run.in_progress or pending or ctx.worklist.any_unplaced():
        plan_run(ctx, pending)
        first = {job.run.open_volume} if job.run.open_volume else set()
        # Volumes in number order; one that overflow is placed on joins those to visit.
        while visit := (set(ctx.worklist.pending_volumes()) | first) - set(plans):
            v = min(visit)
            rec = job.volumes[v]
            plan = plans[v] = recorded_plan(ctx, rec) if rec.capacity else VolumePlan(v)
            if not rec.capacity:
                continue  # never finished: it is filled like a new drive
            taken.update(plan.fill)
            ctx.ledger.unplace(plan.overflow)
            for i in [*plan.overflow, *ctx.worklist.bound_for(v)]:
                if i not in taken:
                    ctx.destinations[i] = NEW_DRIVE
            place_overflow(ctx, v)
        plans = {v: plan for v, plan in plans.items() if job.volumes[v].capacity}
    left = [i for i in ctx.worklist.unplaced() if i not in taken]
    return dry_run_report(job, number, plans, left)


def dry_run_report(job: jf.Job, run: int, plans: dict[int, VolumePlan], unplaced: list[int]) -> DryRun:
    """The report of ``plans`` (volume -> its plan); ``unplaced``: the entries left for a new
    drive."""
    cat = job.catalog

    def written(indexes: list[int]) -> int:
        return sum(cat.sizes[i] for i in indexes if cat.kinds[i] == ord(FILE))

    vols = {}
    for v, plan in sorted(plans.items()):
        vols[v] = VolumeWork(
            copy=sorted(cat.paths[i] for i in plan.fill),
            rewrite=sorted(cat.paths[i] for i in plan.recopy),
            rename=sorted([old, cat.paths[k]] for old, k in plan.rename),
            delete=sorted(plan.purge),
            chmod=sorted(cat.paths[i] for i in plan.chmod),
            bytes=written(plan.fill) + written(plan.recopy),
        )
    new_drive = VolumeWork(copy=sorted(cat.paths[i] for i in unplaced), bytes=written(unplaced))
    return DryRun(run, vols, new_drive)


def render(dry: DryRun, as_json: bool) -> str:
    """The dry run for a person, a line a volume; or as JSON, with ``as_json``."""
    if as_json:
        doc = {
            "format": "multivolumecopy-dry-run",
            "version": 2,
            "run": dry.run,
            "insert": dry.insert(),
            "volumes": {str(v): w.__dict__ for v, w in sorted(dry.volumes.items())},
            "new_drive": dry.new_drive.__dict__,
        }
        return json.dumps(doc, indent=1) + "\n"
    lines = [f"dry run of run {dry.run}: nothing is written"]
    for v, w in sorted(dry.volumes.items()):
        lines.append(
            f"volume {v}: copy {len(w.copy)}, rewrite {len(w.rewrite)}, rename {len(w.rename)}, "
            f"delete {len(w.delete)}, set the mode of {len(w.chmod)} ({format_size(w.bytes)} to write)"
        )
    if dry.new_drive.copy:
        lines.append(
            f"a new drive: {count(len(dry.new_drive.copy), 'entry', 'entries')} "
            f"({format_size(dry.new_drive.bytes)}) "
            "that no volume has room for"
        )
    insert = dry.insert()
    lines.append(
        "volumes to insert: "
        + (", ".join(map(str, insert)) if insert else "none")
        + ("; and a blank drive" if dry.new_drive.copy else "")
    )
    return "\n".join(lines) + "\n"
