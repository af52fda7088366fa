"""The restore's destination (``--to``): folders, symlinks and files put in place below it.

Run as root into a folder a user controls, a restore must not let that user
redirect it: nothing is ever written, chmod-ed, timed or renamed through a
symlink the restore did not make.  Every folder below ``--to`` is entered by
descriptor without following links (:class:`multivolumecopy.nofollow.Tree`),
files are made ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a temporary name in
their folder and renamed into place without replacing anything, and a
folder's mode and times are set through a descriptor of the folder itself.
``--to`` itself is the user's choice and may be a symlink.

Whatever is in the way (a symlink, a file where a folder goes, a different
file) is left as it is and reported: :class:`NotPlaced` says what is there.
Only what this restore put in place may be replaced by it (when a newer record
wants another version).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from typing import Callable, Optional

from . import metadata
from .catalog import mtimes_equal
from .errors import OutputError
from .nofollow import CREATE, Blocked, Tree, mtime_granularity, rename_into_place, unlink_quietly, what_is
from .specials import Special, make

CHUNK = 1024 * 1024
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
Meta = tuple[int, int, Optional[str]]  # uid, gid (metadata.UNKNOWN_ID: leave), attributes


class NotPlaced(Exception):
    """An entry could not be put in place; the message says why, for a person."""


class Unreadable(Exception):
    """The source of a file could not be read (the message is the system's reason)."""


class Destination:
    """The folder ``--to`` of a restore, written below only through descriptors and never through
    a symlink the restore did not make (see the module docstring)."""

    def __init__(self, to: str, on_bytes: Callable[[int], None] = lambda n: None):
        """Open (making it if needed) the folder ``to``; ``on_bytes(n)`` is told as files are
        written.  Raises :class:`OutputError` if it cannot be made or written in."""
        self.to = os.path.abspath(to)
        self.on_bytes = on_bytes
        self.mine: set[str] = set()  # files and symlinks this restore put in place
        self.lost = 0  # metadata.LOST_* flags: what was refused here (a user without root...)
        try:
            os.makedirs(self.to, exist_ok=True)
            self.tree = Tree(self.to)
        except OSError as err:
            raise OutputError(f"cannot create --to {to}: {err.strerror}") from None
        try:
            self.granularity = mtime_granularity(self.tree.top)
        except OSError as err:
            self.tree.close()
            raise OutputError(f"cannot write in --to {to}: {err.strerror}") from None

    def close(self) -> None:
        """Let go of the descriptors held below ``--to``."""
        self.tree.close()

    # -- folders -----------------------------------------------------------------------

    def make_dir(self, path: str) -> None:
        """Make the folder ``path`` (mode 0700 until :meth:`finish_dir`), or find it there."""
        pfd, name = self._parent(path)
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            what = what_is(pfd, name)
            if what != "a folder":
                raise NotPlaced(
                    f"{what} is in the way of this folder{_unfollowed(what)}: move it away to restore "
                    "what goes there"
                ) from None
        except OSError as err:
            raise _write_error(os.path.join(self.to, path), err) from None

    def _apply(
        self, target: metadata.Target, meta: Optional[Meta], mode: Optional[int], link: bool = False
    ) -> None:
        """Owner, attributes (exactly), then the mode; what is refused is noted, not raised."""
        uid, gid, xattrs = meta or (metadata.UNKNOWN_ID, metadata.UNKNOWN_ID, None)
        self.lost |= metadata.apply(target, uid, gid, xattrs, mode, is_link=link)

    def finish_dir(self, path: str, mode: int, mtime_ns: int, meta: Optional[Meta] = None) -> None:
        """Give a folder its owner, ACLs, attributes, mode and times (last: every entry made in
        it changes its time).  A folder that is not there as a real folder is left alone: it was
        reported."""
        try:
            pfd, name = self._parent(path)
            fd = os.open(name, _OPEN_DIR, dir_fd=pfd)
        except (NotPlaced, OSError):
            return
        try:
            self._apply(fd, meta, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def finish_top(self, mode: int, mtime_ns: int) -> None:
        """Give ``--to`` itself the mode and time of the folder that was backed up."""
        try:
            os.fchmod(self.tree.top, mode)
            os.utime(self.tree.top, ns=(mtime_ns, mtime_ns))
        except OSError as err:
            raise _write_error(self.to, err) from None

    # -- symlinks ----------------------------------------------------------------------

    def link(self, path: str, target: str, mtime_ns: int, tag: int, meta: Optional[Meta] = None) -> bool:
        """Make the symlink ``path`` (with its own owner and attributes); returns whether one
        was already there, intact.  ``tag`` names its temporary (an index: unique in the run)."""
        pfd, name = self._parent(path)
        replace = path in self.mine
        try:
            if os.readlink(name, dir_fd=pfd) == target:
                return True
            if not replace:
                raise NotPlaced(_in_the_way(pfd, name))
        except FileNotFoundError:
            pass
        except OSError:
            raise NotPlaced(_in_the_way(pfd, name)) from None
        tmp = _temporary(tag)
        unlink_quietly(tmp, pfd)
        try:
            os.symlink(target, tmp, dir_fd=pfd)
            # The attribute calls take no dir_fd: the folder's descriptor, by /proc, and the
            # link itself not followed.
            self._apply(f"/proc/self/fd/{pfd}/{tmp}", meta, None, link=True)
            os.utime(tmp, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
            rename_into_place(pfd, tmp, pfd, name, replace)
        except OSError as err:
            unlink_quietly(tmp, pfd)
            if isinstance(err, FileExistsError):
                raise NotPlaced(_in_the_way(pfd, name)) from None
            raise NotPlaced(f"cannot make the symlink: {err.strerror}") from None
        self.mine.add(path)
        return False

    # -- special files -----------------------------------------------------------------

    def special(self, sp: Special, meta: Meta) -> bool:
        """Make the FIFO, socket or device node ``sp`` with its owner, attributes (``meta``, as
        far as this user may give them), mode and time; returns whether it was already there
        (then left as it is)."""
        pfd, name = self._parent(sp.path)
        try:
            if make(pfd, name, sp):
                return True
            # The attribute calls take no dir_fd: the folder's descriptor, by /proc, and the
            # node itself, which no call here follows (it is no symlink: just made).
            self._apply(f"/proc/self/fd/{pfd}/{name}", meta, sp.mode)
            os.utime(name, ns=(sp.mtime_ns, sp.mtime_ns), dir_fd=pfd, follow_symlinks=False)
        except FileExistsError:
            raise NotPlaced(_in_the_way(pfd, name)) from None
        except OSError as err:
            why = "a device node can be made by root only" if err.errno == errno.EPERM else err.strerror
            raise NotPlaced(f"cannot make the {sp.kind} node: {why}") from None
        return False

    # -- files -------------------------------------------------------------------------

    def intact(self, path: str, size: int, mtime_ns: int) -> bool:
        """Whether a regular file of that size and time is already at ``path``."""
        try:
            st = self.tree.lstat(path)
        except (Blocked, OSError):
            return False
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_size == size
            and mtimes_equal(st.st_mtime_ns, mtime_ns, self.granularity)
        )

    def check_free(self, path: str) -> None:
        """Raise :class:`NotPlaced` unless ``path`` can be written: its folder reached, nothing
        there (or only what this restore put there)."""
        pfd, name = self._parent(path)
        if path in self.mine:
            return
        try:
            os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        raise NotPlaced(_in_the_way(pfd, name))

    def hard_link(self, path: str, leader: str, tag: int) -> bool:
        """Make ``path`` a hard link of ``leader`` (already restored); False where that cannot
        be (another filesystem, a folder blocked): then copy it instead."""
        lparent, _, lname = leader.rpartition("/")
        try:
            lfd = self.tree.own_folder(lparent)
        except (Blocked, OSError):
            return False
        tmp = _temporary(tag)
        try:
            pfd, name = self._parent(path)
            unlink_quietly(tmp, pfd)
            os.link(lname, tmp, src_dir_fd=lfd, dst_dir_fd=pfd, follow_symlinks=False)
            try:
                rename_into_place(pfd, tmp, pfd, name, path in self.mine)
            except OSError:
                unlink_quietly(tmp, pfd)
                raise
        except (NotPlaced, OSError):
            return False
        finally:
            os.close(lfd)
        self.mine.add(path)
        return True

    def put_file(
        self,
        path: str,
        source: int,
        mode: int,
        mtime_ns: int,
        tag: int,
        check: Callable[[str, int], Optional[str]],
        meta: Optional[Meta] = None,
    ) -> int:
        """Copy the open file ``source`` to ``path`` under a temporary name; ``check(sha256,
        size)`` says what is wrong with what was read, if anything, before it is given its mode
        and times and renamed into place.  Returns the size.  Raises :class:`NotPlaced`
        (nothing is left under the final name), :class:`Unreadable` (reading ``source``), or
        :class:`OutputError` (writing: no space, say)."""
        pfd, name = self._parent(path)
        final = os.path.join(self.to, path)
        tmp = _temporary(tag)
        unlink_quietly(tmp, pfd)
        try:
            fd = os.open(tmp, CREATE, 0o600, dir_fd=pfd)
        except OSError as err:
            raise _write_error(final, err) from None
        try:
            digest, size = self._copy(source, fd, final)
            why = check(digest, size)
            if why is not None:
                raise NotPlaced(why)
            self._apply(fd, meta, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        except BaseException:
            unlink_quietly(tmp, pfd)
            raise
        finally:
            os.close(fd)
        try:
            rename_into_place(pfd, tmp, pfd, name, path in self.mine)
        except OSError as err:
            unlink_quietly(tmp, pfd)
            if isinstance(err, FileExistsError):
                raise NotPlaced(_in_the_way(pfd, name)) from None
            raise NotPlaced(f"cannot put it in place: {err.strerror}") from None
        self.mine.add(path)
        return size

    def _copy(self, source: int, fd: int, final: str) -> tuple[str, int]:
        """Copy and hash in one pass; returns the SHA-256 and the size read."""
        digest = hashlib.sha256()
        view = memoryview(bytearray(CHUNK))
        size = 0
        while True:
            try:
                n = os.readv(source, [view])
            except OSError as err:
                raise Unreadable(err.strerror) from None
            if not n:
                return digest.hexdigest(), size
            digest.update(view[:n])
            done = 0
            try:
                while done < n:
                    done += os.write(fd, view[done:n])
            except OSError as err:
                raise _write_error(final, err) from None
            size += n
            self.on_bytes(n)

    # -- the way there -----------------------------------------------------------------

    def _parent(self, path: str) -> tuple[int, str]:
        """The descriptor of ``path``'s folder (valid until the next walk) and its name."""
        parent, _, name = path.rpartition("/")
        try:
            return self.tree.folder(parent), name
        except Blocked as b:
            raise NotPlaced(
                f"{b.where} is {b.what}, not a folder{_unfollowed(b.what)}: move it away to restore "
                "what goes there"
            ) from None
        except FileNotFoundError:
            raise NotPlaced("its folder could not be made (see above)") from None


def _temporary(tag: int) -> str:
    return f".mvcopy-restore-{tag}.tmp"


def _unfollowed(what: str) -> str:
    return "; it was not followed" if what.startswith("a symlink") else ""


def _in_the_way(dir_fd: int, name: str) -> str:
    what = what_is(dir_fd, name)
    if what == "a file":
        return "a different file is already at that place; move it away to restore it"
    return f"{what} is already at that place{_unfollowed(what)}: move it away to restore it"


def _write_error(final: str, err: OSError) -> OutputError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"cannot write {final}: {err.strerror}; free some space where --to is")
    return OutputError(f"cannot write {final}: {err.strerror}; check --to")
