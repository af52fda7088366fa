"""Special files: FIFOs, sockets and device nodes.

They hold no data a drive could keep, and making one on a backup drive (a device node on a
USB disk) is what nobody wants there.  So the scan leaves them out *by design* (not a
failure: the run still exits 0), and records each in the jobfile (``specials``: kind, mode,
device number, owner, group and time); ``--restore`` makes them again (a FIFO and a socket
node as any user, a device node as root), as ``rsync -a`` and ``cp -a`` do for a copy.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any, Optional

from .metadata import UNKNOWN_ID, Keep
from .metadata import read as read_xattrs

SPECIAL = "special file (FIFO, socket or device): recorded, not copied; --restore makes it again"

# kind name -> the file type bits of its mode
TYPES = {"fifo": stat.S_IFIFO, "socket": stat.S_IFSOCK, "char": stat.S_IFCHR, "block": stat.S_IFBLK}
_NAMES = {bits: name for name, bits in TYPES.items()}


@dataclass(frozen=True)
class Special:
    """One special file of the sources, as the jobfile records it (a row: ``[path, kind, mode,
    rdev, uid, gid, mtime_ns, xattrs]``; ``rdev`` 0 but for devices; ``xattrs`` its extended
    attributes and ACLs as :mod:`~multivolumecopy.metadata` writes them, or null)."""

    path: str
    kind: str  # fifo, socket, char, block
    mode: int  # permission bits
    rdev: int
    uid: int
    gid: int
    mtime_ns: int
    xattrs: Optional[str] = None

    def to_row(self) -> list[Any]:
        """The jobfile's row for it."""
        return [self.path, self.kind, self.mode, self.rdev, self.uid, self.gid, self.mtime_ns, self.xattrs]

    @classmethod
    def from_row(cls, row: list[Any]) -> Special:
        """From a jobfile row; raises ValueError for a row that is not one."""
        path, kind, mode, rdev, uid, gid, mtime_ns, xattrs = row
        if kind not in TYPES or not (xattrs is None or isinstance(xattrs, str)):
            raise ValueError(f"special file kind {kind!r}")
        return cls(str(path), str(kind), int(mode), int(rdev), int(uid), int(gid), int(mtime_ns), xattrs)

    @property
    def is_device(self) -> bool:
        """A character or block device node (making one needs root)."""
        return self.kind in ("char", "block")


def special_at(full: str, rel: str, keep: Keep) -> Optional[Special]:
    """The record of the special file at ``full`` (``rel`` in the catalog's terms), with the
    metadata ``keep`` says; None if nothing special is there now."""
    try:
        st = os.lstat(full)
    except OSError:
        return None
    kind = _NAMES.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        return None
    rdev = st.st_rdev if kind in ("char", "block") else 0
    uid, gid = (st.st_uid, st.st_gid) if keep.owner else (UNKNOWN_ID, UNKNOWN_ID)
    try:
        xattrs = read_xattrs(full, keep) if keep.any_attributes else None
    except OSError:
        xattrs = None
    return Special(rel, kind, stat.S_IMODE(st.st_mode), rdev, uid, gid, st.st_mtime_ns, xattrs)


def describe(specials: list[Special]) -> str:
    """``2 FIFOs, 1 socket and 1 device node``, for a person."""
    fifos = sum(1 for s in specials if s.kind == "fifo")
    sockets = sum(1 for s in specials if s.kind == "socket")
    devices = len(specials) - fifos - sockets
    parts = [
        f"{n} {word}{'' if n == 1 else 's'}"
        for n, word in ((fifos, "FIFO"), (sockets, "socket"), (devices, "device node"))
        if n
    ]
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] if parts else "none"


def make(dir_fd: int, name: str, sp: Special) -> bool:
    """Make ``sp`` as ``name`` in the folder ``dir_fd`` (mode 0600: its metadata is the
    caller's to set); returns whether one of its kind and device was already there (left as
    it is).  Raises FileExistsError when something else is in the way, OSError when it cannot
    be made (a device node without root)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_IFMT(st.st_mode) == TYPES[sp.kind] and (not sp.is_device or st.st_rdev == sp.rdev):
            return True
        raise FileExistsError(name)
    if sp.kind == "fifo":
        os.mkfifo(name, 0o600, dir_fd=dir_fd)
    else:
        os.mknod(name, TYPES[sp.kind] | 0o600, sp.rdev, dir_fd=dir_fd)
    return False
