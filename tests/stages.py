"""Running a backup's stages one by one, in-process, on plain folders as drives (no root): the
stage tests call the stage they test directly, with what the stages before it produce."""

from __future__ import annotations

from pathlib import Path

from multivolumecopy import events as ev
from multivolumecopy.context import Options, RunContext, Summary
from multivolumecopy.drive import Drive
from multivolumecopy.prepare import merge
from multivolumecopy.reconcile import VolumePlan
from multivolumecopy.runplan import plan_run, space_for, volume_plan
from multivolumecopy.scan import resolve_sources


def context(src: Path, jobfile: Path, out: Path, events: list | None = None, **options) -> RunContext:
    """The run's context after the merge and the run's plan, as a backup starts."""
    opts = Options(sources=[str(src)], outputs=[str(out)], jobfile=str(jobfile), workers=1, **options)
    got: list[ev.Event] = [] if events is None else events
    _, ctx, pending = merge(opts, resolve_sources(opts.sources), str(jobfile), got.append, Summary())
    plan_run(ctx, pending)
    return ctx


def opened(path: Path) -> Drive:
    drive = Drive(str(path))
    drive.open()
    return drive


def plan_for(ctx: RunContext, drive: Drive, number: int, fresh: bool) -> VolumePlan:
    """The volume's plan as a run makes it: from what the drive holds, with plenty of room."""
    rec = ctx.job.volumes[number]
    return volume_plan(ctx, rec, drive.contents, {}, space_for(ctx, rec, 10**12), fresh)
