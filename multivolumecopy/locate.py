"""Which volume holds a file (``--locate``), answered from the record alone.

The record is the jobfile next to the operator or any drive's copy of it
(``-f /mnt/usb/.mvcopy-jobdata.json``) when the fileserver is gone; with
``-o``, the newest among it and the copies on the drives mounted there (see
:func:`multivolumecopy.records.newest_record`).  An entry the record places on
no volume is shown as on no drive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from . import clock
from .catalog import FILE, Catalog
from .patterns import Matcher
from .sizes import format_size


@dataclass(frozen=True)
class Found:
    """An entry ``--locate`` matched: where the record places it (``volume`` 0: on no drive),
    its size and time."""

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
                clock.iso(catalog.mtimes[i] / 1e9),
                catalog.saved(i),
            )


def render(found: list[Found], as_json: bool) -> str:
    """The matches for a person (where, size, time and path, a line each); or as JSON, with
    ``as_json``."""
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
