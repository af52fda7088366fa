"""JSON written a chunk at a time: the jobfile, a drive's manifest and the change report all
list a row for each of up to millions of entries, and none is ever held as one string.

Two shapes: :func:`document`, a header object whose last field is a list of rows written one
a line (the jobfile's ``files``, the manifest's ``entries``), which readers can take back a
chunk of lines at a time; and :func:`stream`, any nested dict and list, indented, for reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar

ROWS_PER_CHUNK = 16384  # rows made, written or parsed at a time: memory stays flat
CHUNK_BYTES = 1 << 20  # a report's text handed on about a MiB at a time

T = TypeVar("T")


def document(
    head: dict[str, Any], key: str, items: Sequence[T], rows: Callable[[Sequence[T]], list[str]]
) -> Iterator[bytes]:
    """``head`` (indented) with a last field ``key``: the rows that ``rows`` makes of ``items``,
    ROWS_PER_CHUNK at a time, one a line (each ending in a comma but the last), then `` ]``
    and ``}`` on lines of their own."""
    text = json.dumps(head, indent=1)
    yield (text[: text.rfind("}")].rstrip() + f",\n {encode_basestring_ascii(key)}: [\n").encode("ascii")
    for start in range(0, len(items), ROWS_PER_CHUNK):
        made = rows(items[start : start + ROWS_PER_CHUNK])
        last = start + ROWS_PER_CHUNK >= len(items)
        yield (",\n".join(made) + ("\n" if last else ",\n")).encode("ascii")
    yield b" ]\n}\n"


def stream(doc: Any) -> Iterator[bytes]:
    """``doc`` as indented JSON, each item of a list on a line of its own, in chunks of about
    CHUNK_BYTES.  ``json.dumps(indent=...)`` runs in pure Python (see docs/performance.rst,
    "Writing JSON rows"); this writes lists of strings with the C encoder, a chunk of items at
    a time."""
    buffered: list[str] = []
    size = 0
    for part in _parts(doc, 0):
        buffered.append(part)
        size += len(part)
        if size >= CHUNK_BYTES:
            yield "".join(buffered).encode("ascii")
            buffered, size = [], 0
    buffered.append("\n")
    yield "".join(buffered).encode("ascii")


def _parts(value: object, depth: int) -> Iterator[str]:
    pad = "\n" + " " * (depth + 1)
    if isinstance(value, dict) and value:
        yield "{"
        for n, (key, item) in enumerate(value.items()):
            yield f"{',' if n else ''}{pad}{encode_basestring_ascii(str(key))}: "
            yield from _parts(item, depth + 1)
        yield "\n" + " " * depth + "}"
    elif isinstance(value, list) and value:
        yield "["
        for start in range(0, len(value), ROWS_PER_CHUNK):
            part = value[start : start + ROWS_PER_CHUNK]
            items = (encode_basestring_ascii(v) if isinstance(v, str) else json.dumps(v) for v in part)
            yield ("," if start else "") + pad + ("," + pad).join(items)
        yield "\n" + " " * depth + "]"
    else:
        yield json.dumps(value)
