"""Names on a drive that cannot hold the source's names as they are.

A name with a character the drive refuses (``:`` ``?`` ``*`` ... on exFAT and
FAT) is stored with that character written ``%XX`` (its UTF-8 bytes in hex);
a name ending in ``.`` or space has that last character escaped the same way.
A name the drive would take for another entry's (differing only in case on a
case-insensitive drive, or escaping to it: ``a:b`` beside ``a%3Ab``) gets ``~`` and 8
hex digits of a hash of its path before its extension.  The drive's manifest records every
stored name that differs from the original (column ``stored``), and ``--restore`` puts the
original back; a copy-back by hand gets the stored names.
"""

from __future__ import annotations

import hashlib

from .probe import Capabilities


def escape_component(name: str, caps: Capabilities) -> str:
    """One name (no ``/``) as this drive can hold it."""
    out = []
    for n, ch in enumerate(name):
        last = n == len(name) - 1
        if ch in caps.forbidden or (last and not caps.trailing_dot_space and ch in ". "):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape")))
        else:
            out.append(ch)
    return "".join(out)


def escape(path: str, caps: Capabilities) -> str:
    """The path as this drive can hold it (the same path on a drive that holds anything)."""
    if caps.forbidden == "" and caps.trailing_dot_space:
        return path
    return "/".join(escape_component(part, caps) for part in path.split("/"))


def disambiguate(stored: str, original: str) -> str:
    """A stored path made distinct from another entry's that the drive takes for the same."""
    head, _, name = stored.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    tag = hashlib.sha1(original.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    name = f"{stem}~{tag}{dot}{ext}"
    return f"{head}/{name}" if head else name
