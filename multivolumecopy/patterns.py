"""The patterns a person gives: ``--exclude`` globs, and the PATTERNs of ``--locate`` and
``--restore``.  Both match a path relative to the job's root, and a pattern without ``/`` also
matches any single name (as rsync does); a locate or restore pattern without a glob character
matches as a substring."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

GLOB_CHARS = frozenset("*?[")


def _glob(path: str, name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(path, pattern) or ("/" not in pattern and fnmatch.fnmatchcase(name, pattern))


class Excluder:
    """``--exclude`` globs: whether a relative path is left out of the job."""

    def __init__(self, patterns: Iterable[str]):
        self.patterns = tuple(p.rstrip("/") for p in patterns if p.strip("/"))

    def __call__(self, rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(_glob(rel, name, pat) for pat in self.patterns)


class Matcher:
    """``--locate`` and ``--restore`` patterns: a glob if it holds a glob character, else a
    substring; no pattern matches everything."""

    def __init__(self, patterns: Iterable[str]):
        self.patterns = [p.strip("/") for p in patterns]

    def __call__(self, path: str) -> bool:
        if not self.patterns:
            return True
        name = path.rsplit("/", 1)[-1]
        for pat in self.patterns:
            if GLOB_CHARS & set(pat):
                if _glob(path, name, pat):
                    return True
            elif pat in path:
                return True
        return False
