"""Staged folders: one rename a new folder instead of one a file.

A rename costs about as much as the rest of a small file's copy (two folders changed, and a lock
for the whole filesystem when they differ).  So when a batch reaches a folder the drive does not
have yet, what goes into it (files, links, subfolders, as deep as the batch goes) is written
under its own names into a staging folder in the batch's temporary folder, and the staging folder
is renamed into place once, when the batch leaves it.  Nothing partial is ever under a final
name: the staging folder holds only complete files when it moves.  If the folder has appeared
meanwhile (another batch of the same folder, another worker making parents), each entry is moved
into it on its own, as one copied alone would be.  The numbers: docs/TECHNICAL_DECISIONS.rst,
"Staged folders: one rename a new folder".
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from typing import Optional

from .. import faults
from ..catalog import DIR
from ..fsutil import rename_noreplace
from .drivepaths import GONE, drive_refused, drive_there, make_dir, make_parents
from .protocol import CopyBatch, CopyItem, Outcome, Status, folder_of, outcome
from .state import STATE


@dataclass
class Group:
    """A folder being staged: where it goes, where it is built, and what is complete in it."""

    rel: str  # the staged folder on the drive, relative to its root
    path: str  # the staging folder
    # Each complete entry: its position in the outcomes, its path under rel ("": the folder
    # itself), whether it is a folder.
    done: list[tuple[int, str, bool]]

    @property
    def prefix(self) -> str:
        """What the drive path of every entry inside the staged folder starts with."""
        return self.rel + "/"


def open_group(batch: CopyBatch, tmpdir: str, item: CopyItem) -> Optional[Group]:
    """A staging folder for the folder ``item`` makes (a folder) or goes into (a file or link),
    when the drive has no such folder yet (as far as this worker knows); else None."""
    if item.kind == DIR:
        dest = item.place
    else:
        dest = folder_of(item)[:-1]
        if not dest:
            return None
    full = f"{batch.dst_root}/{dest}"
    if full in STATE.made_dirs:
        return None
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        pass
    except OSError:
        return None  # the copy itself will meet the error and report it
    else:
        if stat.S_ISDIR(st.st_mode):
            STATE.made_dirs.add(full)  # there already: what goes in is renamed into it one by one
        return None
    path = f"{tmpdir}/{item.catalog_index}.d"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:  # left by a killed run of the same process id and batch number
        shutil.rmtree(path, ignore_errors=True)
        try:
            os.mkdir(path, 0o700)
        except OSError:
            return None
    except OSError:
        return None
    return Group(dest, path, [])


def commit_group(batch: CopyBatch, group: Group, outcomes: list[Outcome]) -> bool:
    """Move a staged folder into place: at once if the drive still has no such folder, else
    entry by entry.  Returns whether the batch must stop (the drive is full or failing)."""
    if not group.done:
        return False
    if not drive_there(batch):  # pulled meanwhile: make no parents on the bare mount point
        for k, (pos, _name, _is_dir) in enumerate(group.done):
            index = outcomes[pos].catalog_index
            outcomes[pos] = (
                outcome(index, Status.DRIVE_ERROR, GONE) if k == 0 else outcome(index, Status.NOT_DONE)
            )
        return True
    final = f"{batch.dst_root}/{group.rel}"
    try:
        make_parents(batch.dst_root, group.rel)
        faults.point("before-folder-rename")
        rename_noreplace(group.path, final)
        STATE.made_dirs.add(final)
        return False
    except OSError:
        pass  # there now (or the drive refuses): one entry at a time tells each what happened
    stop = False
    for pos, name, is_dir in group.done:  # in the batch's order: a folder before what is in it
        index = outcomes[pos].catalog_index
        rel = f"{group.rel}/{name}" if name else group.rel
        there = f"{batch.dst_root}/{rel}"
        if stop:
            outcomes[pos] = outcome(index, Status.NOT_DONE)
            continue
        try:
            make_parents(batch.dst_root, rel)
            if not is_dir:
                os.rename(f"{group.path}/{name}", there)
            elif make_dir(there):
                STATE.made_dirs.add(there)
            else:
                outcomes[pos] = outcome(index, Status.CONFLICT, "a file is in the way on the drive")
        except OSError as err:
            outcomes[pos] = drive_refused(batch, index, err)
            stop = outcomes[pos].status in (Status.NO_SPACE, Status.DRIVE_ERROR)
    return stop
