"""The journal: what happened on a drive since its manifest was last committed.

Between commits a run appends, before any file is renamed into place, the paths it *may*
write (an ``intent``), then each finished entry (a ``put``), each removal (a ``del``), and
from time to time a ``sync`` after ``syncfs``: the puts before a sync are on the disk.  After a
crash, :func:`replay` folds the journal into the manifest's state: a put that a sync covers is
held; a put no sync covers, or an intent with no put, names a path that is ours but whose
content is unknown (*dirty*: rewritten if it still belongs on the drive, removed if not); a
path neither the manifest nor the journal names was not put there by this job and is never
touched.  Pure: lines in, state out; the drive's files are read and written by
:class:`~multivolumecopy.drive.Drive`.  The format is in docs/formats.rst.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable
from typing import Any

from .catalog import Entry
from .driveformat import JOURNAL_FORMAT, JOURNAL_VERSION, ManifestState, row_entry


def header(generation: int) -> dict[str, Any]:
    """The first line: the manifest generation the journal sits on."""
    return {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "generation": generation}


def intent(paths: list[str], stored: dict[str, str]) -> dict[str, Any]:
    """Paths about to be written (``stored``: the names some of them get on the drive)."""
    return {"t": "intent", "paths": paths, "stored": stored}


def put(rows: Iterable[str]) -> str:
    """Finished entries, as manifest rows (text: built without ``json.dumps``)."""
    return f'{{"t": "put", "e": [{",".join(rows)}]}}'


def removed(paths: list[str]) -> dict[str, Any]:
    """Paths removed from the drive (after the unlink)."""
    return {"t": "del", "paths": paths}


SYNC: dict[str, Any] = {"t": "sync"}


def parse(data: bytes) -> list[dict[str, Any]]:
    """The records of a journal's bytes, up to the first line that is not whole: a torn last
    line, and anything after it, never happened."""
    records = []
    for line in data.split(b"\n"):
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return records


def replay(records: list[dict[str, Any]], state: ManifestState) -> bool:
    """Fold a journal's records into the manifest ``state`` it sits on.  Returns whether the
    journal held anything (the drive then needs a commit)."""
    if not records or records[0].get("format") != JOURNAL_FORMAT:
        return bool(records)
    if records[0].get("generation") != state.generation:
        return True  # written before the manifest it sits on was committed: already folded in
    pending: dict[str, Entry] = {}
    intents: set[str] = set()
    confirmed: set[str] = set()
    for rec in records[1:]:
        kind = rec.get("t")
        if kind == "intent":
            intents.update(rec["paths"])
            state.stored.update(rec.get("stored", {}))
        elif kind == "put":
            for raw in rec["e"]:
                e, _, stored = row_entry(raw)
                pending[e.path] = e
                state.verified.pop(e.path, None)
                if stored is not None:
                    state.stored[e.path] = stored
        elif kind == "del":
            for p in rec["paths"]:
                state.contents.pop(p, None)
                pending.pop(p, None)
                state.dirty.discard(p)
                intents.discard(p)
        elif kind == "sync":
            state.contents.update(pending)
            confirmed.update(pending)
            state.dirty.difference_update(pending)
            pending.clear()
    unsure = (intents | set(pending)) - confirmed
    for p in unsure:
        state.contents.pop(p, None)
    state.dirty |= unsure
    return True


def intended_not_put(records: list[dict[str, Any]], held: Container[str]) -> set[str]:
    """Paths the journal says were about to be written that no put since recorded and the
    drive does not hold: after a copy cut short, these may sit on the drive complete, with
    nobody having heard of them."""
    intended: set[str] = set()
    for rec in records[1:]:
        if rec.get("t") == "intent":
            intended.update(rec["paths"])
        elif rec.get("t") == "del":
            intended.difference_update(rec["paths"])
    return {p for p in intended if p not in held}
