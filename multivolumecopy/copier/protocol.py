"""What the parent and the copy workers say to each other: a batch of items to copy, and for
each item an outcome.  Only the parent touches the catalog and the drive's records; a worker
sees its batch and nothing else.

A batch crosses its pipe as plain tuples, and each side names the fields again when it
unpickles: a named tuple pickled as it is carries a reference to its class and is rebuilt
through a call, a cost paid for every file (see docs/performance.rst, "The copy protocol on
the wire").
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from ..metadata import UNKNOWN_ID


class Status(str, enum.Enum):
    """What became of one item."""

    OK = "ok"
    NO_SPACE = "no-space"  # the drive is full: it goes to the next volume
    NOT_DONE = "not-done"  # not attempted (the run stopped): it goes to the next volume
    VANISHED = "vanished"  # the source disappeared since the scan
    FAILED = "failed"  # the source could not be read, or the drive refused this one file
    CONFLICT = "conflict"  # something not ours is in the way on the drive
    DRIVE_ERROR = "drive-error"  # the drive failed (EIO, EROFS, gone): the run stops


class CopyItem(NamedTuple):
    """One entry to copy."""

    catalog_index: int  # how the outcome is matched to it
    rel: str  # its path below the sources' root
    kind: str  # FILE, DIR or LINK
    size: int
    mtime_ns: int
    mode: int
    link_target: Optional[str]  # a symlink's target
    dest: Optional[str]  # where it goes on the drive, where that differs from ``rel``
    uid: int = UNKNOWN_ID  # owner and group (UNKNOWN_ID: not kept)
    gid: int = UNKNOWN_ID
    xattrs: Optional[str] = None  # ACLs and extended attributes (metadata.encode)

    @property
    def place(self) -> str:
        """Its path on the drive."""
        return self.dest or self.rel


class Outcome(NamedTuple):
    """What became of one item."""

    catalog_index: int
    status: Status
    size: int = 0  # as copied (the source may have changed since the scan)
    mtime_ns: int = 0
    detail: str = ""  # why, for a person
    reported: int = 0  # bytes already told in Progress messages (large files)
    sha256: Optional[str] = None  # of what was written; None when not hashing
    lost: int = 0  # metadata.LOST_* flags: what the drive (or this user) refused of its metadata


def outcome(catalog_index: int, status: Status, detail: str = "") -> Outcome:
    """An outcome with nothing copied."""
    return Outcome(catalog_index, status, 0, 0, detail, 0, None, 0)


_new_item = tuple.__new__


@dataclass(frozen=True)
class CopyBatch:
    """Items for one worker, and where they go."""

    batch_id: int
    src_root: str
    dst_root: str
    tmpdir: str
    items: tuple[CopyItem, ...]
    volume_key: str = ""  # changes with every drive, so workers forget the folders they made
    hash: bool = True  # record the SHA-256 of what is written, read in the same pass as the copy
    root_id: tuple[int, int] = (0, 0)  # st_dev, st_ino of dst_root: the drive must still be there
    keep: tuple[bool, bool, bool] = (True, True, True)  # metadata.Keep: owner, ACLs, attributes

    def __reduce__(self) -> tuple[Any, ...]:
        rows = tuple(map(tuple, self.items))
        fields = (self.batch_id, self.src_root, self.dst_root, self.tmpdir, rows)
        return (_batch_from_wire, (*fields, self.volume_key, self.hash, self.root_id, self.keep))


def _batch_from_wire(
    batch_id: int, src: str, dst: str, tmp: str, rows: tuple[tuple[Any, ...], ...], *rest: Any
) -> CopyBatch:
    return CopyBatch(batch_id, src, dst, tmp, tuple([_new_item(CopyItem, r) for r in rows]), *rest)


@dataclass(frozen=True)
class BatchDone:
    """A worker's answer for a whole batch: an outcome for each of its items, in order."""

    batch_id: int
    outcomes: tuple[Outcome, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        # (A status is pickled once a batch: pickle memoizes the members it has written.)
        return (_done_from_wire, (self.batch_id, tuple(map(tuple, self.outcomes))))


def _done_from_wire(batch_id: int, rows: tuple[tuple[Any, ...], ...]) -> BatchDone:
    return BatchDone(batch_id, tuple([_new_item(Outcome, r) for r in rows]))


@dataclass(frozen=True)
class Progress:
    """Bytes copied of large files still in hand: the progress bar moves before they end."""

    nbytes: int


def make_batches(
    items: Iterator[CopyItem],
    src_root: str,
    dst_root: str,
    tmpdir: str,
    volume_key: str,
    hash: bool = True,
    root_id: tuple[int, int] = (0, 0),
    keep: tuple[bool, bool, bool] = (True, True, True),
    max_items: int = 1024,
    max_bytes: int = 16 * 1024 * 1024,
    fold_at: int = 256,
) -> Iterator[CopyBatch]:
    """Group small files so interprocess traffic is paid per batch, not per file.  Past
    ``fold_at`` items a batch ends where a folder does, so that a new folder is most often
    written whole by one batch and renamed into place once (see staging.py)."""
    batch: list[CopyItem] = []
    size = 0
    n = 0
    for item in items:
        if batch and (
            len(batch) >= max_items
            or size + item.size > max_bytes
            or (len(batch) >= fold_at and folder_of(item) != folder_of(batch[-1]))
        ):
            yield CopyBatch(n, src_root, dst_root, tmpdir, tuple(batch), volume_key, hash, root_id, keep)
            n += 1
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield CopyBatch(n, src_root, dst_root, tmpdir, tuple(batch), volume_key, hash, root_id, keep)


def folder_of(item: CopyItem) -> str:
    """The folder an item goes into on the drive, with its trailing ``/`` ("" at the root)."""
    place = item.place
    return place[: place.rfind("/") + 1]
