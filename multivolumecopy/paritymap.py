"""Parity planning (pure: no I/O): each volume's parity address space, the runs of blocks its
files hold there, and which blocks of the parity drive are dirty.

The design is in docs/TECHNICAL_DECISIONS.rst ("Parity").  A volume's files each hold a run of
``BLOCK``-byte blocks; parity block ``j`` is the XOR over the volumes of their block ``j``.  A
:class:`Row` is one file in its run; a volume's rows are what the map beside the jobfile
wants the parity to include (:func:`allocate` keeps them stable across runs), and the parity
drive's record lists the rows it does include.  Ranges of blocks are ``(start, stop)`` pairs,
sorted and disjoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, Optional

BLOCK = 4096  # bytes in a parity block (why 4 KiB: docs/TECHNICAL_DECISIONS.rst, "Parity")
WINDOW = 2048  # blocks computed at a time (8 MiB)

Range = tuple[int, int]  # blocks [start, stop)


class Row(NamedTuple):
    """One file of a volume and its run of blocks: what its drive holds (size, time, SHA-256)."""

    path: str
    start: int
    nblocks: int
    size: int
    mtime_ns: int
    sha256: Optional[str]

    @property
    def stop(self) -> int:
        """The block past the run."""
        return self.start + self.nblocks

    @property
    def key(self) -> tuple[int, int, int, Optional[str]]:
        """What the row puts into the parity: the same bytes at the same blocks (its path does
        not matter: a file renamed in place changes no parity byte)."""
        return (self.start, self.nblocks, self.size, self.sha256)


class File(NamedTuple):
    """A regular file a drive holds, as the allocation needs it."""

    path: str
    size: int
    mtime_ns: int
    sha256: Optional[str]


def blocks_for(size: int) -> int:
    """Blocks a file of ``size`` bytes takes."""
    return -(-size // BLOCK)


def allocate(old: Sequence[Row], files: Iterable[File]) -> list[Row]:
    """The rows of a volume holding ``files``, given its rows ``old`` (from the last time it was
    closed): a file that still fits its run keeps its start (a shrunk one frees its tail), a new
    path with the size and hash of a path gone from the volume takes that run (a move), and
    the rest get first-fit runs in what is free.  Rows are returned sorted by start."""
    files = list(files)
    by_path = {r.path: r for r in old}
    present = {f.path for f in files}
    gone: dict[tuple[int, Optional[str]], list[Row]] = {}
    for r in old:
        if r.path not in present and r.sha256 is not None and r.nblocks:
            gone.setdefault((r.size, r.sha256), []).append(r)
    rows: list[Row] = []
    later: list[File] = []
    for f in files:
        need = blocks_for(f.size)
        had = by_path.get(f.path)
        if need == 0:
            rows.append(Row(f.path, 0, 0, f.size, f.mtime_ns, f.sha256))
        elif had is not None and had.nblocks and need <= had.nblocks:
            rows.append(Row(f.path, had.start, need, f.size, f.mtime_ns, f.sha256))
        else:
            later.append(f)
    taken = [(r.start, r.stop) for r in rows if r.nblocks]
    moved: list[File] = []
    for f in later:
        candidates = gone.get((f.size, f.sha256)) if f.sha256 is not None else None
        if candidates:
            r = candidates.pop(0)
            rows.append(Row(f.path, r.start, r.nblocks, f.size, f.mtime_ns, f.sha256))
            taken.append((r.start, r.stop))
        else:
            moved.append(f)
    free = _FreeRuns(merge(taken))
    for f in moved:
        start = free.take(blocks_for(f.size))
        rows.append(Row(f.path, start, blocks_for(f.size), f.size, f.mtime_ns, f.sha256))
    rows.sort(key=lambda r: (r.start, r.nblocks, r.path))
    return rows


class _FreeRuns:
    """The holes between taken runs, and the space past the last one, handed out first fit."""

    def __init__(self, taken: list[Range]):
        self.holes: list[Range] = []
        at = 0
        for a, b in taken:
            if a > at:
                self.holes.append((at, a))
            at = max(at, b)
        self.end = at

    def take(self, n: int) -> int:
        for k, (a, b) in enumerate(self.holes):
            if b - a >= n:
                if b - a == n:
                    del self.holes[k]
                else:
                    self.holes[k] = (a + n, b)
                return a
        start = self.end
        self.end += n
        return start


def merge(ranges: Iterable[Range]) -> list[Range]:
    """``ranges`` sorted, with empty ones dropped and touching or overlapping ones joined."""
    out: list[Range] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def subtract(ranges: Sequence[Range], minus: Sequence[Range]) -> list[Range]:
    """The blocks of ``ranges`` not in ``minus`` (both merged)."""
    out: list[Range] = []
    k = 0
    for a, b in ranges:
        while k < len(minus) and minus[k][1] <= a:
            k += 1
        j = k
        at = a
        while j < len(minus) and minus[j][0] < b:
            if minus[j][0] > at:
                out.append((at, minus[j][0]))
            at = max(at, minus[j][1])
            j += 1
        if at < b:
            out.append((at, b))
    return out


def overlaps(ranges: Sequence[Range], start: int, stop: int) -> bool:
    """Whether any block of ``[start, stop)`` is in ``ranges`` (merged)."""
    lo, hi = 0, len(ranges)
    while lo < hi:  # the first range ending after start
        mid = (lo + hi) // 2
        if ranges[mid][1] <= start:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ranges) and ranges[lo][0] < stop and start < stop


def size_in_blocks(volumes: Mapping[int, Sequence[Row]]) -> int:
    """The parity file's length in blocks: past the last run of any volume."""
    return max((r.stop for rows in volumes.values() for r in rows), default=0)


def dirty(
    included: Mapping[int, Sequence[Row]], wanted: Mapping[int, Sequence[Row]], invalid: Sequence[Range]
) -> list[Range]:
    """The blocks whose parity must be computed (again): where a volume's rows the parity
    includes differ from those the map wants (by run, size and hash), and what is invalid."""
    found: list[Range] = list(invalid)
    for v in set(included) | set(wanted):
        have = {r.key for r in included.get(v, ()) if r.nblocks}
        want = {r.key for r in wanted.get(v, ()) if r.nblocks}
        found.extend((start, start + n) for start, n, _, _ in have ^ want)
    return merge(found)


def over(rows: Sequence[Row], ranges: Sequence[Range]) -> list[Row]:
    """The rows (sorted by start) with a block in ``ranges``."""
    return [r for r in rows if r.nblocks and overlaps(ranges, r.start, r.stop)]


def windows(ranges: Sequence[Range], size: int = WINDOW) -> Iterator[Range]:
    """``ranges`` cut into pieces of at most ``size`` blocks, in order."""
    for a, b in ranges:
        while a < b:
            yield a, min(b, a + size)
            a = min(b, a + size)


def unprotected(
    wanted: Sequence[Row], included: Sequence[Row], invalid: Sequence[Range]
) -> tuple[list[Row], list[Row]]:
    """A volume's rows the parity does not protect: those it does not include in that version
    (not computed yet, or left out; a time changed counts, as a rebuild gives back only the
    version its record has), and those it includes over an invalid block."""
    have = set(included)
    missing = [r for r in wanted if r not in have]
    broken = [r for r in wanted if r in have and r.nblocks and overlaps(invalid, r.start, r.stop)]
    return missing, broken
