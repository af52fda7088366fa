"""What a drive can hold: probed once, when a blank drive becomes a volume.

USB drives are mostly exFAT, sometimes FAT32 or NTFS. Rather than guess from
the filesystem's name, the probe tries each thing in the drive's temporary
directory and looks at what happened.  The result is kept in the jobfile's
volume record and in the drive's manifest, and drives the adaptations in
:mod:`multivolumecopy.names`, :mod:`multivolumecopy.drivenames` and
:mod:`multivolumecopy.writer`.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import asdict, dataclass
from typing import Any, Optional

from .fsutil import probe_mtime_granularity, unescape_mount

# Characters Windows filesystems refuse in names; which ones a given drive refuses is probed.
CANDIDATES = ':?*"<>|\\'
FAT_MAX_FILE = 4 * 1024**3 - 1


@dataclass(frozen=True)
class Capabilities:
    """What a drive's filesystem can hold, as probed: symlinks, permission bits, names differing
    in case, the characters names may not hold, a trailing dot or space, the largest file, and
    how finely it keeps times."""

    symlinks: bool = True
    modes: bool = True  # permission bits are kept
    case_sensitive: bool = True
    forbidden: str = ""  # characters names cannot hold
    trailing_dot_space: bool = True  # names may end in "." or " "
    max_file: Optional[int] = None  # largest file, where the filesystem has a limit
    granularity_ns: int = 1

    def to_json(self) -> dict[str, Any]:
        """As a JSON object: the jobfile's volume record and the manifest keep it."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Optional[dict[str, Any]]) -> Capabilities:
        """From :meth:`to_json`'s object; none (a record that has none) is a drive that holds
        everything."""
        return cls(**doc) if doc else cls()

    def limits(self) -> list[str]:
        """What this drive cannot hold, for a person."""
        said = []
        if not self.symlinks:
            said.append("no symlinks (recorded, restored by --restore)")
        if not self.modes:
            said.append("no permission bits (recorded, restored by --restore)")
        if not self.case_sensitive:
            said.append("names differing only in case collide")
        if self.forbidden or not self.trailing_dot_space:
            chars = " ".join(self.forbidden) + ("" if self.trailing_dot_space else " (trailing . or space)")
            said.append(f"names cannot hold {chars.strip()}")
        if self.max_file is not None:
            said.append(f"files up to {self.max_file} bytes")
        return said


def probe(root: str, workdir: str) -> Capabilities:
    """Try what the drive at ``root`` can hold, inside ``workdir`` (a directory of ours on it)."""
    lab = os.path.join(workdir, f"probe-{os.getpid()}")
    shutil.rmtree(lab, ignore_errors=True)
    os.makedirs(lab)
    try:
        return Capabilities(
            symlinks=_can_symlink(lab),
            modes=_keeps_modes(lab),
            case_sensitive=_case_sensitive(lab),
            forbidden="".join(c for c in CANDIDATES if not _can_name(lab, f"a{c}b")),
            trailing_dot_space=_can_name(lab, "end.") and _can_name(lab, "end "),
            max_file=FAT_MAX_FILE if _fs_type(root) in ("vfat", "msdos", "fat") else None,
            granularity_ns=probe_mtime_granularity(lab),
        )
    finally:
        shutil.rmtree(lab, ignore_errors=True)


def _can_symlink(lab: str) -> bool:
    try:
        os.symlink("target", os.path.join(lab, "link"))
    except OSError:
        return False
    return os.path.islink(os.path.join(lab, "link"))


def _keeps_modes(lab: str) -> bool:
    path = os.path.join(lab, "mode")
    with open(path, "w"):
        pass
    try:
        os.chmod(path, 0o640)
    except OSError:
        return False
    return (os.stat(path).st_mode & 0o777) == 0o640


def _case_sensitive(lab: str) -> bool:
    with open(os.path.join(lab, "CaSe"), "w"):
        pass
    return not os.path.lexists(os.path.join(lab, "cAsE"))


def _can_name(lab: str, name: str) -> bool:
    path = os.path.join(lab, name)
    try:
        with open(path, "w"):
            pass
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.ENOENT, errno.EILSEQ, errno.EPERM, errno.EACCES):
            return False
        raise
    ok = name in os.listdir(lab)  # some drivers accept a name and store another
    if os.path.lexists(path):
        os.unlink(path)
    return ok


def _fs_type(root: str) -> str:
    best, kind = "", ""
    real = os.path.realpath(root)
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                point = unescape_mount(parts[1])
                if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, kind = point, parts[2]
    except OSError:
        pass
    return kind
