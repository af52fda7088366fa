"""Which drive is this?  A drive is known by its label, never by the operator's word: this
stage decides whether the drive at an output is a volume of the job the run may use now, a
blank drive that becomes one (and labels it), or a drive to refuse, and says why.

The policy: a job whose volumes are drives never takes a bare mount point (an empty bay) for
one; a drive of another job, a volume given up or replaced, an old copy of a volume, a volume
already done in this run, are refused; while a volume is open (being filled), only its drive
goes on with it (a blank one may take its place only if it was never labelled); a blank drive
becomes a new volume only when one is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Optional

from . import clock
from . import events as ev
from . import jobfile as jf
from .context import RunContext
from .drive import Drive, drive_error
from .driveformat import DATA, Label, filesystem_id
from .fsutil import block_size, is_mount_point
from .probe import Capabilities, probe
from .worklist import volumes_text


class Refused(Exception):
    """This drive cannot be used now; the message says why."""


def no_drive_at(job: jf.Job, output: str) -> Optional[str]:
    """Why ``output`` holds no drive, or None.  A job whose volumes are drives never takes a bare
    mount point (a plain folder on the filesystem of its parent) for one: that is a bay with no
    drive in it, and writing there would fill the server's own disk."""
    if is_mount_point(output) or not any(rec.mounted and not rec.forgotten for rec in job.volumes.values()):
        return None
    return f"no drive is mounted at {output} (it is a plain folder on the filesystem of its parent)"


def identify(ctx: RunContext, drive: Drive, save: Callable[[], None]) -> tuple[int, bool]:
    """Which volume the (opened) drive is, and whether it was blank; a blank drive is labelled
    (``save`` records the jobfile before the label and after it).  Raises Refused."""
    job = ctx.job
    run = job.run
    label = drive.label
    if label is None:
        return _label_blank(ctx, drive, save), True
    if label.job_id != job.job_id:
        raise Refused(
            f"it is volume {label.volume} of another job (job {label.job_id[:8]}, backing up "
            f"{label.job_root or 'unknown sources'}); insert a drive of this job or a blank one"
        )
    if label.role != DATA:
        raise Refused(f"it is the parity drive P{label.volume} of this job; insert a data drive")
    number = label.volume
    known = job.volumes.get(number)
    if known is not None and known.forgotten and known.uuid == label.volume_uuid:
        raise Refused(
            f"volume {number} was given up (--forget-volume) and its files placed elsewhere; "
            "set this drive aside, or wipe it to use it as a blank one"
        )
    if number in run.replace and known is not None and known.uuid == label.volume_uuid:
        raise Refused(f"volume {number} is being replaced (--replace-volume): insert a blank drive")
    if known is not None and known.uuid != label.volume_uuid:
        raise Refused(
            f"it says it is volume {number}, but the jobfile knows volume {number} as another "
            "drive (different volume id); it may be an old copy: set it aside"
        )
    if number in run.done_volumes:
        raise Refused(f"volume {number} was already updated in this run")
    if run.open_volume and run.open_volume != number:
        raise Refused(f"it is volume {number}, but volume {run.open_volume} is not finished")
    if known is None:
        # The jobfile lags behind the drive (a crash right after labelling): learn it back.
        caps = probe_drive(drive)
        known = job.volumes[number] = jf.VolumeRecord(
            number=number,
            uuid=label.volume_uuid,
            created=label.created,
            granularity_ns=caps.granularity_ns,
            block_size=block_size(drive.root),
            fs_id=filesystem_id(drive.root),
            capabilities=caps.to_json(),
            mounted=is_mount_point(drive.root),
            labelled=True,
        )
    elif known.capabilities is None:
        known.capabilities = probe_drive(drive).to_json()
    if known.mounted is None:  # a volume labelled before this was recorded
        known.mounted = is_mount_point(drive.root)
    drive.caps = Capabilities.from_json(known.capabilities)
    return number, False


def _label_blank(ctx: RunContext, drive: Drive, save: Callable[[], None]) -> int:
    """A blank drive: the volume it becomes, once labelled; or Refused."""
    job = ctx.job
    run = job.run
    ident = filesystem_id(drive.root)
    for v in run.done_volumes:
        if job.volumes[v].fs_id == ident:
            raise Refused(f"it looks like volume {v} (finished in this run) with its label removed")
    if run.open_volume:
        # A crash between recording a new volume and labelling its drive leaves a volume with
        # nothing on record: a blank drive may take its place (under a new id, so a drive
        # labelled in that window is later refused as an old copy).  Once its drive is
        # labelled (and so may hold files no record names yet), only that drive finishes it.
        opened = job.volumes[run.open_volume]
        if opened.labelled or job.catalog.volumes.count(run.open_volume):
            raise Refused(f"it is a blank drive, but volume {run.open_volume} is not finished")
        number = run.open_volume
    elif run.replace:
        number = run.replace[0]  # --replace-volume: the blank drive becomes that volume
    elif not ctx.worklist.new_drive_needed():
        wanted = ctx.worklist.pending_volumes()
        if wanted:
            raise Refused(f"it is a blank drive, but {volumes_text(wanted)}, not a new one")
        raise Refused("it is a blank drive, but no new volume is needed")
    else:
        number = job.next_volume_number()
    caps = probe_drive(drive)
    rec = jf.VolumeRecord(
        number=number,
        uuid=clock.new_id(),
        created=clock.now_iso(),
        granularity_ns=caps.granularity_ns,
        block_size=block_size(drive.root),
        fs_id=ident,
        capabilities=caps.to_json(),
        mounted=is_mount_point(drive.root),
    )
    job.volumes[number] = rec
    if not rec.mounted:
        ctx.emit(
            ev.Note(
                f"{drive.root} is a folder, not a mounted drive: volume {number} is that folder "
                "(a job whose volumes are drives refuses a bare mount point)"
            )
        )
    run.open_volume = number
    if number in run.replace:
        run.replace.remove(number)
        run.pending_volumes = sorted(set(run.pending_volumes) | {number})
    save()  # before the label: a crash in between leaves a volume with no files
    drive.write_label(Label(job.job_id, number, rec.uuid, rec.created, job.root))
    rec.labelled = True
    save()  # after it: from now on only this drive may finish the volume
    return number


def probe_drive(drive: Drive) -> Capabilities:
    """What the drive can hold; it stays the drive's answer for as long as the volume lives."""
    try:
        os.makedirs(drive.tmpdir, exist_ok=True)
        caps = probe(drive.root, drive.tmpdir)
    except OSError as err:
        raise drive_error(drive.root, err) from None
    drive.caps = caps
    return caps
