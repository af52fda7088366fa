"""The time left in a copy, from a per-file cost and a per-byte cost fitted while it runs.

Copying many small files is paid per file (opening, creating, the metadata), copying large ones
per byte; a rate in bytes alone says a run of small files will take many times longer than it
does.  The progress bars (``progress.py``) feed an :class:`Estimator` samples of
``(elapsed seconds, files done, bytes done)``; it keeps the increments between recent samples
and fits ``seconds = a * files + b * bytes`` to them by least squares, each cost kept only
where the increments show it (never below zero).

Pure: no clock inside (the caller passes the elapsed time), so tests give exact samples.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple, Optional

WINDOW = 120  # increments kept: at SPACING apart, the last half minute or more
SPACING = 0.25  # seconds: a sample closer than this to the last one kept is left out
MIN_ROWS = 3  # increments needed before two costs are fitted; fewer give one rate
COLLINEAR = 0.01  # 1 - r^2 of files and bytes below this: the two costs cannot be told apart
FILE_BYTES = 64 * 1024  # bytes that cost as much as a file, taken when the data cannot tell


class Costs(NamedTuple):
    """Seconds a file and seconds a byte."""

    per_file: float
    per_byte: float

    def seconds(self, files: int, nbytes: int) -> float:
        """What ``files`` files of ``nbytes`` bytes in all cost."""
        return self.per_file * files + self.per_byte * nbytes


class Estimator:
    """Seconds left for what remains, fitted to the recent progress of one bar."""

    def __init__(self, window: int = WINDOW, spacing: float = SPACING):
        self.spacing = spacing
        self._rows: deque[tuple[float, int, int]] = deque(maxlen=window)  # seconds, files, bytes
        self._last: Optional[tuple[float, int, int]] = None
        self._costs: Optional[Costs] = None
        self._fitted = True  # the cached costs match the rows

    def add(self, elapsed: float, files: int, nbytes: int) -> bool:
        """A sample: ``files`` and ``nbytes`` done after ``elapsed`` seconds.  Returns whether it
        was kept (a sample within ``spacing`` of the last one kept is left out; the next one
        kept covers its progress)."""
        last = self._last
        if last is not None:
            dt, df, db = elapsed - last[0], files - last[1], nbytes - last[2]
            if 0 <= dt < self.spacing and df >= 0 and db >= 0:
                return False
            if dt >= 0 and df >= 0 and db >= 0:
                self._rows.append((dt, df, db))
                self._fitted = False
            # else the counts or the clock went back: a new start, nothing learnt across it
        self._last = (elapsed, files, nbytes)
        return True

    def pause(self) -> None:
        """The time until the next sample is not copying (a drive swap, a volume's sync and the
        next one's plan): the next sample starts afresh."""
        self._last = None

    def costs(self) -> Optional[Costs]:
        """The fitted costs, or None before anything was done between two samples."""
        if not self._fitted:
            self._costs = fit(list(self._rows))
            self._fitted = True
        return self._costs

    def seconds_left(self, files: int, nbytes: int) -> Optional[float]:
        """Seconds to copy ``files`` more files holding ``nbytes``, or None when nothing is known
        yet."""
        costs = self.costs()
        return None if costs is None else costs.seconds(max(files, 0), max(nbytes, 0))

    def byte_rate(self) -> Optional[float]:
        """Bytes a second over the kept increments, or None before any time has passed."""
        seconds = sum(row[0] for row in self._rows)
        return sum(row[2] for row in self._rows) / seconds if seconds > 0 else None


# Student's t, two-sided 95 %, by degrees of freedom (rows less two); 2.0 from 30 on.
T95 = (0.0, 12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13)


def fit(rows: list[tuple[float, int, int]]) -> Optional[Costs]:
    """``a`` and ``b`` (both >= 0) with ``seconds ~ a * files + b * bytes`` over the increments
    ``rows`` (seconds, files, bytes); None without rows, or when nothing was done in them.

    Least squares through the origin, and each cost kept only where the rows show it: above
    zero by more than its standard error times Student's t (95 %).  Tiny files hide the cost of
    a byte under the noise of the clock; a cost fitted to that noise and carried to larger files
    said three times the time left or more in one synthetic run in twenty (in one in twenty
    with the test, 9 % off or more).  With one cost shown, it alone is fitted; with neither,
    too few rows, or files and bytes in (nearly) one ratio in every row (files all of one size,
    batches of one mix), one rate is (:func:`one_rate`)."""
    if not rows:
        return None
    n = len(rows)
    ff = sum(float(f) * f for _, f, _ in rows)
    bb = sum(float(b) * b for _, _, b in rows)
    fb = sum(float(f) * b for _, f, b in rows)
    det = ff * bb - fb * fb
    if n >= MIN_ROWS and ff > 0 and bb > 0 and det > COLLINEAR * ff * bb:
        ft = sum(t * f for t, f, _ in rows)
        bt = sum(t * b for t, _, b in rows)
        tt = sum(t * t for t, _, _ in rows)
        a = (ft * bb - bt * fb) / det
        b = (bt * ff - ft * fb) / det
        residual = max(tt - 2 * (a * ft + b * bt) + a * a * ff + 2 * a * b * fb + b * b * bb, 0.0)
        variance = residual / (n - 2)
        t = T95[n - 2] if n - 2 < len(T95) else 2.0
        shows_files = a > 0 and a * a >= t * t * variance * bb / det
        shows_bytes = b > 0 and b * b >= t * t * variance * ff / det
        if shows_files and shows_bytes:
            return Costs(a, b)
        if shows_files:
            return Costs(ft / ff, 0.0)
        if shows_bytes:
            return Costs(0.0, bt / bb)
    return one_rate(rows)


def one_rate(rows: list[tuple[float, int, int]]) -> Optional[Costs]:
    """One rate for ``rows``, on a unit of one file or ``FILE_BYTES`` bytes; None when nothing
    was done in them.

    Files far smaller than ``FILE_BYTES`` are then paid by the file, far larger ones by the
    byte, and a rest like what was done is predicted exactly whatever the true split.  (A rate
    by the file alone, or by the byte alone, chosen by the files' average size, is as exact for
    a rest like the past and wrong by the whole of the other cost for a different rest: bytes
    alone, learnt on photos and notes together, gave a tree of small files after them a
    fortieth of its time.)"""
    seconds = sum(row[0] for row in rows)
    units = sum(row[1] + row[2] / FILE_BYTES for row in rows)
    if units <= 0:
        return None  # time passed and nothing was done: no cost to go by
    per_file = seconds / units
    return Costs(per_file, per_file / FILE_BYTES)
