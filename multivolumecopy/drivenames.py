"""Where each entry is stored on a drive: the name it has there, where that differs from its
path (see :mod:`multivolumecopy.names` for how a name is escaped or made distinct), or none
at all for an entry the drive holds only in its records (a symlink on exFAT).

The manifest records each stored name that differs from its path; a folder stored under a
name of its own (``photos~1a2b3c4d`` beside ``Photos`` on a drive that ignores case) is
learnt back from the names of the entries in it, so what goes in it later goes below it too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Optional

from .catalog import DIR, LINK, ancestors
from .driveformat import RECORDED_ONLY
from .names import disambiguate, escape, escape_component
from .probe import Capabilities


class StoredNames:
    """path -> name on the drive, for the paths whose name differs; :meth:`on_drive` answers
    for every path."""

    def __init__(self, caps: Capabilities, names: Optional[dict[str, str]] = None):
        self.caps = caps
        self.names: dict[str, str] = names if names is not None else {}
        self._folded: Optional[dict[str, str]] = None  # see _case_folded
        self._folders: Optional[dict[str, str]] = None  # see _folder_names

    def __bool__(self) -> bool:
        return bool(self.names)

    def get(self, path: str) -> Optional[str]:
        """The name recorded for ``path``, if one is ("" for records only)."""
        return self.names.get(path)

    def on_drive(self, path: str) -> Optional[str]:
        """Where ``path`` is on the drive (relative), or None for an entry the drive holds only
        in its records (a symlink on a drive without symlinks).  Below a folder stored under
        another name, a path is stored below that name."""
        stored = self.names.get(path)
        if stored is not None:
            return None if stored == RECORDED_ONLY else stored
        folders = self._folder_names()
        if folders:
            parent = path.rpartition("/")[0]
            while parent:
                base = folders.get(parent)
                if base is not None:
                    return f"{base}/{escape(path[len(parent) + 1 :], self.caps)}"
                parent = parent.rpartition("/")[0]
        return escape(path, self.caps)  # directories above our entries are escaped alike

    def name_for(self, path: str, kind: str, held: Collection[str]) -> Optional[str]:
        """Choose (and remember) where a new entry goes on this drive; None: records only.
        ``held``: the paths the drive holds (their names are taken)."""
        if path in held or path in self.names:
            return self.on_drive(path)
        caps = self.caps
        if kind == LINK and not caps.symlinks:
            self.names[path] = RECORDED_ONLY
            return None
        stored = self.on_drive(path)
        assert stored is not None
        if not caps.case_sensitive:
            folded = self._case_folded(held)
            there = folded.get(stored.casefold())
            if there is not None and there != stored:
                stored = disambiguate(stored, path)  # another entry, differing only in case
            folded[stored.casefold()] = stored
            for folder in ancestors([stored]):
                folded.setdefault(folder.casefold(), folder)
            if kind == DIR and stored != escape(path, caps):
                self._folder_names()[path] = stored
        if stored != path:
            self.names[path] = stored
        return stored

    def forget(self, path: str) -> None:
        """``path`` is no longer on the drive: its name is free again."""
        stored = self.names.pop(path, None)
        if self._folded is not None:
            self._folded.pop((stored or path).casefold(), None)

    def _folder_names(self) -> dict[str, str]:
        """Folders stored under a name of their own (disambiguated), learnt from the stored
        names of the entries in them: a folder that only holds entries need not be one here."""
        if self._folders is None:
            self._folders = {}
            if self.names and not self.caps.case_sensitive:
                for path, stored in self.names.items():
                    if stored and stored != path:
                        self._learn_folders(path, stored)
        return self._folders

    def _learn_folders(self, path: str, stored: str) -> None:
        parts, got = path.split("/"), stored.split("/")
        if len(parts) != len(got):
            return
        assert self._folders is not None
        for n in range(1, len(parts)):
            if got[n - 1] != escape_component(parts[n - 1], self.caps):
                self._folders["/".join(parts[:n])] = "/".join(got[:n])

    def _case_folded(self, held: Collection[str]) -> dict[str, str]:
        """On a drive that ignores case: every stored path of ours, and every folder above one,
        case-folded, to the stored path."""
        if self._folded is None:
            self._folded = {}
            for p in held:
                stored = self.names.get(p, p)
                if stored:
                    self._folded[stored.casefold()] = stored
            for folder in ancestors(list(self._folded.values())):
                self._folded.setdefault(folder.casefold(), folder)
        return self._folded
