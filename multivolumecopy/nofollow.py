"""Working below a directory without ever going through a symlink.

A restore run as root into a folder a user controls must not let that user
redirect it: a symlink planted where a folder of the tree goes would otherwise
have files written, chmod-ed and renamed wherever it points.  So does a drive
whose folder was swapped for a symlink, on the reading side.  As tar and rsync
do since their CVEs, every step below the top directory is taken by descriptor:
each folder is opened ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent, and
every file operation is made relative to the folder's descriptor (``*at``
calls, ``follow_symlinks=False``).  The top directory itself is the user's
choice and may be a symlink.

Files are visited in catalog order, so the descriptors of the current folder's
chain are kept open and reused: a folder's files cost one ``open`` each, not one
per level.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from typing import Optional

# Folders are opened only to be walked through (O_PATH needs no read permission) and never
# through a symlink: O_NOFOLLOW on the last component, and each component is the last.
_WALK = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Regular files to read; O_NONBLOCK so that a FIFO planted in a file's place cannot hang us.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A file of ours, made fresh: never an existing file, never through a symlink.
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Blocked(Exception):
    """Something that is not what the tree needs sits at ``where`` (relative to the top):
    ``what`` says what it is, for a person (``a symlink (to '/etc')``)."""

    def __init__(self, where: str, what: str):
        super().__init__(f"{where} is {what}")
        self.where = where
        self.what = what


def what_is(dir_fd: int, name: str) -> str:
    """What sits at ``name`` in the folder ``dir_fd``, for a person."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return "nothing"
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if stat.S_ISLNK(st.st_mode):
        try:
            return f"a symlink (to {os.readlink(name, dir_fd=dir_fd)!r})"
        except OSError:
            return "a symlink"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if stat.S_ISREG(st.st_mode):
        return "a file"
    return "a special file"


class Tree:
    """The folders below ``root``, entered by descriptor; never through a symlink."""

    def __init__(self, root: str):
        self.root = root
        # The top directory is the caller's choice: it may be a symlink, and is followed.
        self.top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._chain: list[tuple[str, int]] = []  # the folders entered last, outermost first

    def folder(self, rel: str) -> int:
        """A descriptor of the folder ``rel`` (``""``: the top), valid until the next call.

        Raises :class:`Blocked` when a component is not a real folder (a symlink is never
        followed), ``FileNotFoundError`` when one does not exist.
        """
        parts = rel.split("/") if rel else []
        keep = 0
        chain = self._chain
        while keep < len(chain) and keep < len(parts) and chain[keep][0] == parts[keep]:
            keep += 1
        for _, fd in chain[keep:]:
            os.close(fd)
        del chain[keep:]
        parent = chain[-1][1] if chain else self.top
        for k in range(keep, len(parts)):
            name = parts[k]
            try:
                fd = os.open(name, _WALK, dir_fd=parent)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Blocked("/".join(parts[: k + 1]), what_is(parent, name)) from None
                raise
            chain.append((name, fd))
            parent = fd
        return parent

    def own_folder(self, rel: str) -> int:
        """Like :meth:`folder`, but a descriptor of the caller's own, to close (for holding two
        folders at once)."""
        return os.dup(self.folder(rel))

    def lstat(self, rel: str) -> os.stat_result:
        """``lstat`` of ``rel``, reached without following a symlink on the way."""
        parent, _, name = rel.rpartition("/")
        return os.stat(name, dir_fd=self.folder(parent), follow_symlinks=False)

    def readlink(self, rel: str) -> str:
        """The target of the symlink ``rel``, reached without following a symlink on the way."""
        parent, _, name = rel.rpartition("/")
        return os.readlink(name, dir_fd=self.folder(parent))

    def open_regular(self, rel: str) -> int:
        """A descriptor for reading the regular file ``rel``.  Raises :class:`Blocked` for a
        symlink (never followed) or anything but a regular file, there or on the way."""
        parent, _, name = rel.rpartition("/")
        pfd = self.folder(parent)
        try:
            fd = os.open(name, _READ, dir_fd=pfd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise Blocked(rel, what_is(pfd, name)) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Blocked(rel, what_is(pfd, name))
        return fd

    def close(self) -> None:
        """Close every descriptor the tree holds, the top's included."""
        for _, fd in self._chain:
            os.close(fd)
        self._chain = []
        if self.top >= 0:
            os.close(self.top)
            self.top = -1

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unlink_quietly(name: str, dir_fd: int) -> None:
    """Remove ``name`` from the folder (a symlink there is removed, not followed)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


_RENAME_NOREPLACE = 1
_libc: Optional[ctypes.CDLL] = None


def rename_into_place(src_fd: int, src: str, dst_fd: int, dst: str, replace: bool = False) -> None:
    """Rename ``src`` to ``dst`` (both relative to their folders' descriptors).  Unless
    ``replace``, never replaces anything: raises ``FileExistsError`` if ``dst`` exists,
    atomically where the kernel has ``renameat2`` (else checked just before)."""
    if replace:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(_libc, "renameat2", None)
    if func is not None:
        if func(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), dst)
    # No renameat2 here (an old kernel, a filesystem without it): look, then rename.
    try:
        os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


# Timestamp granularities told apart, finest first (ns): as fsutil's probe, made through a
# descriptor so that a link planted at the probe's name is never followed.
_GRANULARITIES = (1, 1_000, 1_000_000, 10_000_000, 1_000_000_000, 2_000_000_000)


def mtime_granularity(dir_fd: int) -> int:
    """How finely the filesystem of the folder ``dir_fd`` keeps modification times (ns)."""
    name = f".mvcopy-probe-{os.getpid()}"
    wanted = 1_600_000_001_987_654_321  # odd at every unit told apart
    unlink_quietly(name, dir_fd)
    fd = os.open(name, CREATE, 0o600, dir_fd=dir_fd)
    try:
        os.utime(fd, ns=(wanted, wanted))
        got = os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
        unlink_quietly(name, dir_fd)
    return next((g for g in _GRANULARITIES if abs(got - wanted) < g), _GRANULARITIES[-1])
