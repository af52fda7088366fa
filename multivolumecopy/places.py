"""What sits at a place on a drive, looked at without ever going through a symlink or a file
that took a folder's place: the checks made before anything is written, removed or changed
there.  One :class:`Places` a visit of a drive, caching what it has seen of each folder."""

from __future__ import annotations

import errno
import os
import stat
from typing import Callable, Optional


class Places:
    """Looks at places on the drive at ``root``; ``failed`` turns an unexpected OSError into the
    error the run reports (the drive failing)."""

    def __init__(self, root: str, failed: Callable[[OSError], Exception]):
        self.root = root
        self.failed = failed
        self._real_folders: dict[str, bool] = {}  # folder -> a real folder there (or none yet)
        self._listings: dict[str, set[str]] = {}  # folder -> its names, case-folded

    def path(self, rel: str) -> str:
        """The full path of ``rel`` on the drive."""
        return os.path.join(self.root, rel)

    def blocker(self, rel: str) -> Optional[str]:
        """The first folder above ``rel`` that is not a real folder there (a symlink, or a file
        not ours), or None when the way is clear (missing folders are made)."""
        parts = rel.split("/")[:-1]
        for n in range(1, len(parts) + 1):
            parent = "/".join(parts[:n])
            if not self._real_folder(parent):
                return parent
        return None

    def what_is(self, rel: str) -> str:
        """What sits at ``rel``, in a word, for a person."""
        try:
            mode = os.lstat(self.path(rel)).st_mode
        except OSError:
            return "nothing"
        if stat.S_ISLNK(mode):
            return "symlink"
        if stat.S_ISDIR(mode):
            return "folder"
        return "file" if stat.S_ISREG(mode) else "special file"

    def occupant(self, rel: str) -> Optional[os.stat_result]:
        """``lstat`` of what sits at ``rel``, or None if the place is free.  Raises
        ``NotADirectoryError`` when a folder above it is not a real one.

        Each folder is listed once (its names case-folded) instead of one ``lstat`` a file,
        and a name is only looked at when something like it is there (so a drive or folder
        that ignores case still finds ``A.txt`` in the way of ``a.txt``)."""
        parent, _, name = rel.rpartition("/")
        if parent and self.blocker(rel) is not None:
            raise NotADirectoryError(errno.ENOTDIR, "a folder above it on the drive is not a folder", rel)
        names = self._listings.get(parent)
        if names is None:
            try:
                names = {n.casefold() for n in os.listdir(self.path(parent) if parent else self.root)}
            except FileNotFoundError:
                names = set()
            except OSError as err:
                raise self.failed(err) from None
            self._listings[parent] = names
        if name.casefold() not in names:
            return None
        try:
            return os.lstat(self.path(rel))
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise
        except OSError as err:
            raise self.failed(err) from None

    def _real_folder(self, folder: str) -> bool:
        ok = self._real_folders.get(folder)
        if ok is not None:
            return ok
        grand = os.path.dirname(folder)
        if grand and not self._real_folder(grand):
            self._real_folders[folder] = False
            return False
        try:
            ok = stat.S_ISDIR(os.lstat(self.path(folder)).st_mode)
        except FileNotFoundError:
            ok = True  # it will be made
        except NotADirectoryError:
            ok = False
        except OSError as err:
            raise self.failed(err) from None
        self._real_folders[folder] = ok
        return ok
