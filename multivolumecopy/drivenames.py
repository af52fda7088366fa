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

from .catalog import DIR, LINK
from .driveformat import RECORDED_ONLY
from .names import disambiguate, escape, escape_component
from .probe import Capabilities


class StoredNames:
    """path -> name on the drive, for the paths whose name differs; :meth:`on_drive` answers
    for every path."""

    def __init__(self, caps: Capabilities, names: Optional[dict[str, str]] = None):
        self.caps = caps
        self.names: dict[str, str] = names if names is not None else {}
        self._taken_names: Optional[dict[str, tuple[str, str]]] = None  # see _taken
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
        ``held``: the paths the drive holds (their names are taken).  Two entries never get
        one name: on a drive that changes names (escapes them, or ignores case), a name taken
        by another entry, or a folder above it taken by another folder, is made distinct."""
        if path in held or path in self.names:
            return self.on_drive(path)
        caps = self.caps
        if kind == LINK and not caps.symlinks:
            self.names[path] = RECORDED_ONLY
            return None
        stored = self.on_drive(path)
        assert stored is not None
        if self.changes_names():
            taken = self._taken(held)
            parts, got = path.split("/"), stored.split("/")
            for n in range(1, len(parts) + 1):
                owner = taken.get(self._key("/".join(got[:n])))
                if owner is not None and owner[1] != "/".join(parts[:n]):
                    # another entry's name, differing only in case or as escaped: a name of its own
                    got[n - 1] = disambiguate(got[n - 1], "/".join(parts[:n]))
                    if n < len(parts) or kind == DIR:
                        self._folder_names()["/".join(parts[:n])] = "/".join(got[:n])
            stored = "/".join(got)
            for n in range(1, len(parts) + 1):
                sub = "/".join(got[:n])
                taken.setdefault(self._key(sub), (sub, "/".join(parts[:n])))
        if stored != path:
            self.names[path] = stored
        return stored

    def forget(self, path: str) -> None:
        """``path`` is no longer on the drive: its name is free again."""
        stored = self.names.pop(path, None)
        if self._taken_names is not None and stored != RECORDED_ONLY:
            key = self._key(stored or path)
            if self._taken_names.get(key, ("", ""))[1] == path:
                del self._taken_names[key]

    def changes_names(self) -> bool:
        """Whether this drive stores some names otherwise (escaped, or made distinct in case)."""
        caps = self.caps
        return not caps.case_sensitive or caps.forbidden != "" or not caps.trailing_dot_space

    def _key(self, stored: str) -> str:
        """What two stored paths share when the drive takes them for one."""
        return stored if self.caps.case_sensitive else stored.casefold()

    def _folder_names(self) -> dict[str, str]:
        """Folders stored under a name of their own (made distinct), learnt from the stored
        names of the entries in them: a folder that only holds entries need not be one here."""
        if self._folders is None:
            self._folders = {}
            if self.names and self.changes_names():
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

    def _taken(self, held: Collection[str]) -> dict[str, tuple[str, str]]:
        """Every stored path of ours, and every folder above one: its key (see :meth:`_key`)
        -> (the stored path, the source path stored there)."""
        if self._taken_names is None:
            self._taken_names = {}
            for p in held:
                stored = self.names.get(p, p)
                if not stored:
                    continue  # in the records only
                parts, got = p.split("/"), stored.split("/")
                if len(parts) != len(got):
                    continue  # (never: a stored name has the path's depth)
                for n in range(len(parts), 0, -1):
                    sub = "/".join(got[:n])
                    self._taken_names.setdefault(self._key(sub), (sub, "/".join(parts[:n])))
        return self._taken_names
