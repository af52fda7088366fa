"""The run's plan, before and between drives (no I/O but the clock: a dry run makes the same).

:func:`plan_run` starts or resumes the run's state and places each entry on no volume (by the
volumes' records, :mod:`~multivolumecopy.placement`); :func:`volume_plan` is
:func:`~multivolumecopy.reconcile.plan_volume` fed with the run's candidates for one volume, from
what its drive holds (a run) or what its record says it holds (:func:`recorded_plan`, for
``--dry-run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from . import clock
from . import jobfile as jf
from .catalog import Entry
from .context import RunContext
from .placement import NEW_DRIVE, place_in, room_by_record
from .reconcile import Space, VolumePlan, plan_volume


def plan_run(ctx: RunContext, pending: set[int]) -> None:
    """The run's state and plan: a new run unless one is in progress, the volumes it must
    visit, the moves, and where each entry on no volume goes (a rewrite that no longer fits
    its volume gives up its place there first)."""
    job, opts = ctx.job, ctx.opts
    if not job.run.in_progress:
        job.run = jf.RunState(
            number=job.run.number + 1, id=clock.new_id(), state="in-progress", started=clock.now_iso()
        )
    job.run.pending_volumes = sorted(set(job.run.pending_volumes) | pending)
    if ctx.old is not None:
        old = ctx.old
        job.run.moves.update({job.catalog.paths[i]: old.paths[j] for i, j in ctx.changes.moved.items()})
    job.run.replace = sorted(set(job.run.replace) | set(opts.replace_volumes))
    room, block, given_up = room_by_record(
        job, ctx.old, ctx.changes, opts.device_padding, opts.volume_size, ctx.reserve
    )
    ctx.ledger.unplace(given_up)
    ctx.room, ctx.block = room, block
    ctx.destinations.update(place_in(job.catalog, ctx.worklist.unplaced(), room, block))


def place_overflow(ctx: RunContext, volume: int) -> None:
    """``volume`` is done in this run: what waits for a new drive (what it could not take, a
    drive holding less than its record said) goes to another volume not yet done in the run
    that has room by its record, by the same rules as new entries; the rest still waits for a
    new drive."""
    room = ctx.room
    for v in (volume, *ctx.job.run.done_volumes):
        room.pop(v, None)
    if not any(r > 0 for r in room.values()):
        return  # the common case, and every first backup: no walk of the catalog
    ctx.destinations.update(place_in(ctx.catalog, list(ctx.worklist.bound_for(NEW_DRIVE)), room, ctx.block))


def space_for(ctx: RunContext, rec: jf.VolumeRecord, free: int, inodes: Optional[int] = None) -> Space:
    """The room a volume offers to this run: ``free`` bytes, less the padding and the reserve."""
    opts = ctx.opts
    return Space(
        free=free,
        block=rec.block_size,
        padding=opts.device_padding,
        volume_size=opts.volume_size,
        reserve=ctx.reserve,
        inodes=inodes,
    )


def volume_plan(
    ctx: RunContext,
    rec: jf.VolumeRecord,
    held: Mapping[str, Entry],
    dirty: Mapping[str, int],
    space: Space,
    fresh: bool,
) -> VolumePlan:
    """plan_volume with the run's candidates for ``rec`` (fresh: those bound for a new drive)."""
    want = NEW_DRIVE if fresh else rec.number
    failed, get = ctx.failed, ctx.destinations.get
    return plan_volume(
        ctx.catalog,
        rec.number,
        held,
        dirty,
        space,
        rec.granularity_ns,
        ctx.worklist.bound_for(want),
        ctx.job.run.moves,
        comes_here=lambda i: i not in failed and get(i, NEW_DRIVE) == want,
    )


def recorded_plan(ctx: RunContext, rec: jf.VolumeRecord) -> VolumePlan:
    """A volume's plan from its record: what the jobfile says it holds (an entry marked stale
    there in some other version), and the room the record gives it."""
    old = ctx.old
    held: dict[str, Entry] = {}
    if old is not None:
        for j in old.indexes_on(rec.number):
            e = old.entry(j)
            held[e.path] = e._replace(mtime_ns=-1) if old.stale[j] else e
    return volume_plan(ctx, rec, held, {}, space_for(ctx, rec, rec.capacity - rec.used), fresh=False)
