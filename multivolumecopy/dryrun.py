"""``--dry-run``: what a run would do to each volume, computed the way the run computes it
(the change classification and the placement), touching no drive and writing nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from . import jobfile as jf
from .catalog import FILE, NO_VOLUME, Catalog
from .changes import Changes
from .placement import NEW_DRIVE
from .sizes import format_size


@dataclass
class VolumeWork:
    copy: list[str] = field(default_factory=list)
    rewrite: list[str] = field(default_factory=list)
    rename: list[list[str]] = field(default_factory=list)  # [old, new]
    delete: list[str] = field(default_factory=list)
    bytes: int = 0  # to be written


@dataclass
class DryRun:
    run: int
    volumes: dict[int, VolumeWork]
    new_drive: VolumeWork  # what needs a drive this job does not have yet

    def insert(self) -> list[int]:
        return sorted(v for v, w in self.volumes.items() if w.copy or w.rewrite or w.rename or w.delete)


def dry_run_report(
    job: jf.Job, old: Optional[Catalog], ch: Changes, targets: dict[int, int], pending: set[int]
) -> DryRun:
    cat = job.catalog
    vols: dict[int, VolumeWork] = {v: VolumeWork() for v in sorted(pending)}
    new_drive = VolumeWork()

    def work(v: int) -> VolumeWork:
        return new_drive if v == NEW_DRIVE else vols.setdefault(v, VolumeWork())

    for i, v in targets.items():
        w = work(v)
        w.copy.append(cat.paths[i])
        w.bytes += cat.sizes[i] if cat.kinds[i] == ord(FILE) else 0
    for i in ch.changed:
        w = work(cat.volumes[i])
        w.rewrite.append(cat.paths[i])
        w.bytes += cat.sizes[i]
    for i in cat.indexes_on(NO_VOLUME):  # no existing volume has room: a new drive
        if i not in targets:
            new_drive.copy.append(cat.paths[i])
            new_drive.bytes += cat.sizes[i] if cat.kinds[i] == ord(FILE) else 0
    if old is not None:
        moved_from = set(ch.moved.values())
        for i, j in ch.moved.items():
            work(old.volumes[j]).rename.append([old.paths[j], cat.paths[i]])
        for j in ch.deleted:
            if j not in moved_from:
                work(old.volumes[j]).delete.append(old.paths[j])
    for w in (*vols.values(), new_drive):
        w.copy.sort()
        w.rewrite.sort()
        w.delete.sort()
    run = job.run.number if job.run.in_progress else job.run.number + 1
    return DryRun(run, vols, new_drive)


def render(dry: DryRun, as_json: bool) -> str:
    if as_json:
        doc = {
            "format": "multivolumecopy-dry-run",
            "version": 1,
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
            f"delete {len(w.delete)} ({format_size(w.bytes)} to write)"
        )
    if dry.new_drive.copy:
        lines.append(
            f"a new drive: {len(dry.new_drive.copy)} entries ({format_size(dry.new_drive.bytes)}) "
            "that no volume has room for"
        )
    insert = dry.insert()
    lines.append(
        "volumes to insert: "
        + (", ".join(map(str, insert)) if insert else "none")
        + ("; and a blank drive" if dry.new_drive.copy else "")
    )
    return "\n".join(lines) + "\n"
