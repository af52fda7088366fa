"""What a drive holds, in memory: path -> :class:`~multivolumecopy.catalog.Entry`, packed.

A drive can hold a million files: each entry is kept as one small ``bytes`` (kind, size,
mtime, mode, and the SHA-256 in binary), about half what a tuple of Python objects takes (see
docs/TECHNICAL_DECISIONS.rst, "The catalog in memory").  The close of a volume reads the
manifest rows, the bytes used and the sums straight from the packed rows.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, MutableMapping
from json.encoder import encode_basestring_ascii as _jstr
from typing import Any, Optional

from .catalog import FILE, LINK, Entry, same_version
from .fsutil import round_up

_PACKED = struct.Struct("<cqqIQ")  # kind, size, mtime_ns, mode, meta; then 32 bytes of SHA-256 or none
_SIZE_AT = struct.Struct("<q")  # the size, at offset 1 of a packed row


class DriveContents(MutableMapping[str, Entry]):
    """What a drive holds: path -> :class:`Entry`, each kept as one small ``bytes`` (kind,
    size, mtime, mode, and the SHA-256 in binary; the module docstring says why).  Symlink
    targets, and digests that do not round-trip as lowercase hex (a hand-edited manifest),
    are kept aside as they are.  Entries come back without ``ino`` (manifests have none)."""

    __slots__ = ("_rows", "_aside")

    def __init__(self) -> None:
        self._rows: dict[str, bytes] = {}
        self._aside: dict[str, tuple[Optional[str], Optional[str]]] = {}  # path -> (target, sha256)

    def __setitem__(self, path: str, e: Entry) -> None:
        digest = b""
        aside = e.target is not None
        if e.sha256 is not None:
            try:
                digest = bytes.fromhex(e.sha256)
            except (ValueError, TypeError):
                aside = True
            if len(digest) != 32 or digest.hex() != e.sha256:
                digest, aside = b"", True
        try:
            self._rows[path] = (
                _PACKED.pack(e.kind.encode("ascii"), e.size, e.mtime_ns, e.mode, e.meta) + digest
            )
        except struct.error as err:  # a number out of range, from a damaged manifest
            raise ValueError(str(err)) from None
        if aside:
            self._aside[path] = (e.target, e.sha256)
        else:
            self._aside.pop(path, None)

    def _entry(self, path: str, raw: bytes) -> Entry:
        kind, size, mtime_ns, mode, target, sha256, meta = self._fields(path, raw)
        return Entry(path, kind, size, mtime_ns, mode, target, sha256, meta=meta)

    def _fields(self, path: str, raw: bytes) -> tuple[str, int, int, int, Optional[str], Optional[str], int]:
        """kind, size, mtime_ns, mode, target, sha256, meta of a packed row."""
        kind, size, mtime_ns, mode, meta = _PACKED.unpack_from(raw)
        aside = self._aside.get(path) if self._aside else None
        if aside is not None:
            target, sha256 = aside
        else:
            target, sha256 = None, raw[_PACKED.size :].hex() or None
        return kind.decode("ascii"), size, mtime_ns, mode, target, sha256, meta

    def manifest_rows(
        self, paths: Iterable[str], verified: dict[str, int], names: dict[str, str]
    ) -> list[str]:
        """The manifest rows of ``paths`` as JSON text, straight from the packed rows (no
        ``Entry`` per file: a commit writes one row for everything the drive holds)."""
        rows, fields = self._rows, self._fields
        out = []
        for p in paths:
            kind, size, mtime_ns, mode, target, sha256, meta = fields(p, rows[p])
            out.append(
                manifest_row(
                    p, kind, size, mtime_ns, mode, target, sha256, verified.get(p), names.get(p), meta
                )
            )
        return out

    def file_bytes(self, block: int) -> int:
        """What the files take on a drive of ``block``-byte blocks, read from the packed rows."""
        file, size_at = ord(FILE), _SIZE_AT.unpack_from
        return sum(round_up(size_at(raw, 1)[0], block) for raw in self._rows.values() if raw[0] == file)

    def unhashed_files(self) -> set[str]:
        """Files with no recorded SHA-256 (adopted by an older version, or copied with --no-hash)."""
        # A digest that is not plain hex is kept aside and not packed: such a row is counted too.
        # A hard link's row (its target kept aside) packs its digest: it is hashed.
        file, size = ord(FILE), _PACKED.size
        return {p for p, raw in self._rows.items() if raw[0] == file and len(raw) == size}

    def paths_of_kind(self, kind: str) -> Iterator[str]:
        """The paths of the entries of ``kind``, read from the packed rows."""
        code = ord(kind)
        return (path for path, raw in self._rows.items() if raw[0] == code)

    def __getitem__(self, path: str) -> Entry:
        return self._entry(path, self._rows[path])

    def current(
        self,
        path: str,
        kind: str,
        size: int,
        mtime_ns: int,
        mode: int,
        target: Optional[str],
        granularity: int,
        meta: int = 0,
    ) -> bool:
        """Whether the drive holds this version of ``path`` (kind, size, time, mode, a
        symlink's target, and the metadata digest ``meta`` unless the drive's record has none:
        a drive written before owners were kept; a folder's time is not compared).  Read from
        the packed row: the close of a volume asks it of every entry the volume holds."""
        raw = self._rows.get(path)
        if raw is None:
            return False
        fast = granularity <= 1 and kind == FILE and not self._aside
        if fast and raw[: _PACKED.size] == _PACKED.pack(b"f", size, mtime_ns, mode, meta):
            return True
        have, have_size, have_mtime, have_mode, have_target, _, have_meta = self._fields(path, raw)
        if kind != LINK and have_mode != mode:
            return False
        if have_meta and have_meta != meta:
            return False
        return same_version(
            have, have_size, have_mtime, have_target, kind, size, mtime_ns, target, granularity
        )

    def digests(self, paths: Iterable[str]) -> Iterator[tuple[str, str]]:
        """(path, SHA-256) of the files among ``paths`` that have one, read straight from the
        packed rows: the sums file of a big drive without an ``Entry`` per file."""
        rows, aside, file, size = self._rows, self._aside, FILE.encode("ascii"), _PACKED.size
        for path in paths:
            raw = rows[path]
            if raw[:1] != file:
                continue
            odd = aside.get(path) if aside else None
            sha256 = odd[1] if odd is not None else raw[size:].hex()
            if sha256:
                yield path, sha256

    def get(self, path: str, default: Any = None) -> Any:
        """The entry at ``path``, or ``default``: the mapping's own ``get`` would raise and catch a
        ``KeyError`` for every path the drive does not hold."""
        raw = self._rows.get(path)
        return default if raw is None else self._entry(path, raw)

    def __delitem__(self, path: str) -> None:
        del self._rows[path]
        self._aside.pop(path, None)

    def __contains__(self, path: object) -> bool:
        return path in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def manifest_row(
    path: str,
    kind: str,
    size: int,
    mtime_ns: int,
    mode: int,
    target: Optional[str],
    sha256: Optional[str],
    verified: Optional[int],
    stored: Optional[str],
    meta: int = 0,
) -> str:
    """A manifest or journal row as JSON text, built directly rather than by ``json.dumps``,
    which is slower (see docs/performance.rst, "Writing JSON rows"): a drive's manifest has a
    row for every file it holds."""
    target = "null" if target is None else _jstr(target)
    sha = "null" if sha256 is None else _jstr(sha256)
    when = "null" if verified is None else int(verified)
    name = "null" if stored is None else _jstr(stored)
    digest = f'"{meta:016x}"' if meta else "null"
    return f'[{_jstr(path)},"{kind}",{size},{mtime_ns},{mode},{target},{sha},{when},{name},{digest}]'
