"""Which volume holds a file (``--locate``), answered from the record alone.

The record is the jobfile next to the operator or any drive's copy of it
(``-f /mnt/usb/.mvcopy-jobdata.json``) when the fileserver is gone; with
``-o``, the newest among it and the copies on the drives mounted there (see
:func:`multivolumecopy.records.newest_record`).  An entry the record places on
no volume is shown as on no drive.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from . import jobfile as jf
from .catalog import FILE, Catalog
from .sizes import format_size

GLOB_CHARS = frozenset("*?[")


class Matcher:
    """A pattern with glob characters is a glob on the relative path (or on any single name,
    if it has no ``/``); a plain pattern matches as a substring."""

    def __init__(self, patterns: Iterable[str]):
        self.patterns = [p.strip("/") for p in patterns]

    def __call__(self, path: str) -> bool:
        if not self.patterns:
            return True
        name = path.rsplit("/", 1)[-1]
        for pat in self.patterns:
            if GLOB_CHARS & set(pat):
                if fnmatch.fnmatchcase(path, pat) or ("/" not in pat and fnmatch.fnmatchcase(name, pat)):
                    return True
            elif pat in path:
                return True
        return False


@dataclass(frozen=True)
class Found:
    index: int
    path: str
    kind: str
    volume: int
    size: int
    mtime: str
    saved: bool = True  # on its volume in this version (False: that volume holds an older one)


def locate(catalog: Catalog, patterns: Iterable[str]) -> Iterator[Found]:
    """The catalog's entries that match any of ``patterns``, in index order."""
    match = Matcher(patterns)
    for i, path in enumerate(catalog.paths):
        if match(path):
            yield Found(
                i,
                path,
                catalog.kind(i),
                catalog.volumes[i],
                catalog.sizes[i],
                jf.iso(catalog.mtimes[i] / 1e9),
                catalog.saved(i),
            )


def render(found: list[Found], as_json: bool) -> str:
    if as_json:
        doc = {
            "format": "multivolumecopy-locate",
            "version": 2,
            "found": [f.__dict__ for f in found],
        }
        return json.dumps(doc, indent=1) + "\n"
    lines = []
    for f in found:
        if not f.volume:
            where = "on no drive"
        elif f.saved:
            where = f"volume {f.volume}"
        else:  # this version is on no drive yet; the volume holds an older one (or none)
            where = f"on no drive (volume {f.volume} holds an older version)"
        size = format_size(f.size) if f.kind == FILE else {"d": "folder", "l": "symlink"}[f.kind]
        lines.append(f"{where:<20} {size:>10}  {f.mtime}  {f.path}")
    return "\n".join(lines) + ("\n" if lines else "")
