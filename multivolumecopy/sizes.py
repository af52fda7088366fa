"""Numbers for people: byte sizes parsed and printed (``--device-padding 500M``, ``--volume-size
4G``), durations parsed, and counts of things worded (``1 entry``, ``2 entries``, ``volumes 2
and 4``): every message with a count takes its plural from :func:`plural`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from .errors import UsageError

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1000,
    "KIB": 1024,
    "M": 1024**2,
    "MB": 1000**2,
    "MIB": 1024**2,
    "G": 1024**3,
    "GB": 1000**3,
    "GIB": 1024**3,
    "T": 1024**4,
    "TB": 1000**4,
    "TIB": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str, option: str = "size") -> int:
    """``"500M"`` -> 524288000.  Bare K/M/G/T are binary (as in ``df -h``); KB/MB are decimal."""
    match = _SIZE_RE.match(text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise UsageError(
            f"{option} {text!r} is not a size; write a number with an optional unit "
            "such as 500M, 4G or 2TB (K/M/G/T are powers of 1024, KB/MB/GB/TB of 1000)"
        )
    return int(Fraction(match.group(1)) * _UNITS[unit])  # exact: no float rounding of large sizes


def exact_size(n: int) -> str:
    """``524288000`` -> ``"500M"``: the shortest text :func:`parse_size` reads back as exactly
    ``n`` (a whole number of a unit, binary units first, or plain bytes)."""
    texts = [
        f"{n // _UNITS[u]}{u}"
        for u in ("T", "G", "M", "K", "TB", "GB", "MB", "KB")
        if n and n % _UNITS[u] == 0
    ]
    return min([*texts, str(n)], key=len)


def format_size(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; exact bytes below 1 KiB."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024.0
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.I)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str = "duration") -> float:
    """``"90"`` or ``"90s"`` -> 90.0; ``"30m"``, ``"2h"``, ``"1d"``."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise UsageError(f"{option} {text!r} is not a duration; write seconds, or a number with s, m, h or d")
    return float(match.group(1)) * _SECONDS[match.group(2).lower()]


def plural(n: float, one: str, many: str = "") -> str:
    """The word that goes with ``n``: ``one`` for exactly 1, else ``many`` (by default ``one`` + s).
    Verbs and pronouns agree through it too: ``plural(n, "belongs", "belong")``."""
    return one if n == 1 else many or one + "s"


def count(n: int, one: str, many: str = "") -> str:
    """``1 file``, ``2 files``; ``count(n, "entry", "entries")``."""
    return f"{n} {plural(n, one, many)}"


def numbered(one: str, numbers: Sequence[int], none: str = "none") -> str:
    """``volume 3``, ``volumes 2 and 4``, ``volumes 1, 4 and 5``; ``none`` for no numbers."""
    if not numbers:
        return none
    names = [str(n) for n in numbers]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    return f"{plural(len(names), one)} {listed}"
