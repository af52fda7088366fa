"""Places on the drive, as a worker makes and checks them: whether the drive is still the one
the batch was meant for, folders made private until the volume's close, and the outcome of an
entry the drive refused."""

from __future__ import annotations

import errno
import os
import stat

from ..fsutil import is_drive_gone, is_no_space
from .protocol import CopyBatch, Outcome, Status, outcome
from .state import STATE

GONE = "the drive is gone (unmounted or replaced)"


def drive_there(batch: CopyBatch) -> bool:
    """Whether dst_root is still the drive the batch was meant for (not the bare mount point)."""
    if batch.root_id == (0, 0):
        return True
    try:
        st = os.stat(batch.dst_root)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == batch.root_id


def make_dir(path: str) -> bool:
    """Make a folder (private until the volume is closed); False if a file is in the way."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    return True


def drive_refused(batch: CopyBatch, index: int, err: OSError) -> Outcome:
    """The Outcome of an entry whose write or rename on the drive failed with ``err``."""
    if err.errno == errno.ENOENT and not drive_there(batch):
        return outcome(index, Status.DRIVE_ERROR, GONE)
    if is_no_space(err):
        return outcome(index, Status.NO_SPACE, err.strerror or "")
    if is_drive_gone(err):
        return outcome(index, Status.DRIVE_ERROR, err.strerror or str(err))
    if err.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY):
        return outcome(index, Status.CONFLICT, "something else is in the way on the drive")
    return outcome(index, Status.FAILED, f"the drive refused it: {err.strerror or err}")


def make_parents(root: str, rel: str) -> None:
    """Make the folders above ``rel`` on the drive at ``root`` (private, as :func:`mkdirs` makes
    them), unless this worker already knows them."""
    cut = rel.rfind("/")
    if cut < 0:
        return
    full = f"{root}/{rel[:cut]}"
    if full in STATE.made_dirs:
        return
    mkdirs(root, rel[:cut])
    STATE.made_dirs.add(full)


def mkdirs(root: str, rel: str) -> None:
    """``os.makedirs`` with every new level private (0o700; the workers' umask is 0): a folder's
    own mode is set when the volume is closed."""
    path = root
    for part in rel.split("/"):
        path = f"{path}/{part}"
        if path in STATE.made_dirs:
            continue
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
