"""Times and ids as the records write them: ISO 8601 in UTC to the second, and random ids."""

from __future__ import annotations

import datetime as _dt


def now_iso() -> str:
    """Now, as the records write a time."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def iso(epoch_seconds: float) -> str:
    """A time since the epoch, as the records write it."""
    return _dt.datetime.fromtimestamp(epoch_seconds, _dt.timezone.utc).isoformat(timespec="seconds")


def epoch(text: str) -> float:
    """A time the records wrote, in seconds since the epoch."""
    return _dt.datetime.fromisoformat(text).timestamp()


def new_id() -> str:
    """A new job or volume id (128 random bits, hex)."""
    import uuid  # here: it imports platform, and most runs make no new id

    return uuid.uuid4().hex
