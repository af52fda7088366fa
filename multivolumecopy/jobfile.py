"""The jobfile: what the job is, which drives it has, and where every file went.

Written next to the operator (``-f``, default ``.mvcopy-jobdata.json``) and a
copy at the root of every drive, so one surviving drive tells what all the
others hold.  JSON, one catalog row per line so it stays readable and
diffable; the format is described in docs/formats.rst.  A reader refuses a
``version`` it does not know rather than guessing.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zlib
from array import array
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from json.encoder import encode_basestring_ascii
from typing import IO, Any, Optional, Union

from . import joboptions
from .catalog import KINDS, Catalog
from .clock import now_iso
from .errors import JobfileError
from .fsutil import atomic_write, read_chunks
from .jsonstream import ROWS_PER_CHUNK, document
from .metadata import UNKNOWN_ID
from .specials import Special

FORMAT = "multivolumecopy-jobfile"
VERSION = 3
# Version 1 had no "stale" column: every placed entry was taken as current.  Version 2 had no
# "uid", "gid", "xattrs": owners and attributes are unknown (never a change), and the next run
# records them.
READS = (1, 2, 3)
DEFAULT_NAME = ".mvcopy-jobdata.json"
LOG_SUFFIX = ".log"  # the operation log beside the jobfile (sinks.OperationLog)
COLUMNS = (
    "path", "kind", "size", "mtime_ns", "mode", "volume", "target", "ino", "stale", "uid", "gid", "xattrs"
)  # fmt: skip
COLUMNS_OF = {3: COLUMNS, 2: COLUMNS[:9], 1: COLUMNS[:8]}


@dataclass
class VolumeRecord:
    """What the jobfile knows of one volume: its drive's identity, what the drive can hold, how
    full it is, and when it was last updated and verified."""

    number: int
    uuid: str
    created: str
    granularity_ns: int = 1
    block_size: int = 4096
    capacity: int = 0  # usable bytes when last filled
    used: int = 0  # bytes of our files on it (block-rounded)
    files: int = 0
    last_run: int = 0
    updated: Optional[str] = None
    fs_id: Optional[str] = None  # statvfs f_fsid and root inode, to spot a relabelled drive
    last_verified: Optional[str] = None  # last complete --verify --checksum of the volume
    capabilities: Optional[dict[str, Any]] = None  # what the drive can hold (probe.Capabilities)
    forgotten: bool = False  # given up with --forget-volume: its files were placed again
    mounted: Optional[bool] = None  # a filesystem of its own (a drive), not a folder: see is_mount_point
    labelled: bool = False  # its drive got its label: only that drive may finish it
    unhashed: int = 0  # files it holds with no recorded SHA-256: a run that hashes visits it


@dataclass
class RunState:
    """The last run's state; while it is in progress, what the same command needs to resume it
    (its volumes done and pending, the open one, the moves, the replacements)."""

    number: int = 0
    id: str = ""
    state: str = "done"  # "in-progress" or "done"
    started: Optional[str] = None
    finished: Optional[str] = None
    done_volumes: list[int] = field(default_factory=list)  # updated in this run
    pending_volumes: list[int] = field(default_factory=list)  # hold changes this run must apply
    open_volume: Optional[int] = None  # being written; must be finished before another starts
    moves: dict[str, str] = field(default_factory=dict)  # new path -> old path, renamed on its volume
    replace: list[int] = field(default_factory=list)  # --replace-volume: a blank drive becomes these

    @property
    def in_progress(self) -> bool:
        """Whether the run has not finished: the next run resumes it."""
        return self.state == "in-progress"


@dataclass
class Job:
    """A jobfile in memory: the job's sources and options, its volumes, the last run, and the
    catalog with each entry's volume."""

    job_id: str
    root: str
    sources: list[str]
    options: dict[str, Any]
    created: str
    catalog: Catalog
    volumes: dict[int, VolumeRecord] = field(default_factory=dict)
    run: RunState = field(default_factory=RunState)
    updated: Optional[str] = None
    failed: list[list[str]] = field(default_factory=list)  # [path, why] the last run could not copy
    top: Optional[dict[str, int]] = None  # one folder backed up: its mode and mtime_ns, for a restore
    specials: list[Special] = field(default_factory=list)  # FIFOs, sockets, devices: not on drives
    cached: bool = False  # loaded through a cache that matched (not written to the file)
    # The names of the owners and groups in the catalog, on the machine that scanned it:
    # {"users": {"1000": "alice"}, "groups": {...}}; --restore maps them (see metadata.py).
    owners: dict[str, dict[str, str]] = field(default_factory=dict)

    def next_volume_number(self) -> int:
        """The number a new volume gets: one past the highest ever used."""
        return max(self.volumes, default=0) + 1  # forgotten numbers are not reused


FILES_LINE = b' "files": [\n'  # the line after the head: the rows follow, one a line


def dump_chunks(job: Job) -> Iterator[bytes]:
    """Serialise ``job`` a few thousand rows at a time (a million-file catalog is about 100 MB
    of text, never held whole).  Non-ASCII is ``\\u``-escaped so names that are not UTF-8
    (kept by Python as lone surrogates) round-trip."""
    head = {
        "format": FORMAT,
        "version": VERSION,
        "job_id": job.job_id,
        "root": job.root,
        "sources": job.sources,
        "options": job.options,
        "created": job.created,
        "updated": job.updated,
        "run": asdict(job.run),
        "volumes": [asdict(v) for v in sorted(job.volumes.values(), key=lambda v: v.number)],
        "failed": job.failed,
        "top": job.top,
        "specials": [sp.to_row() for sp in job.specials],
        "owners": job.owners,
        "xattrs_read": job.catalog.xattrs_known,
        "columns": list(COLUMNS),
    }
    cat = job.catalog
    dump = encode_basestring_ascii  # what json.dumps does with a str, without its overhead
    paths, targets, kinds, sizes, mtimes, modes, volumes, inodes, stale = (
        cat.paths,
        cat.targets,
        cat.kinds,
        cat.sizes,
        cat.mtimes,
        cat.modes,
        cat.volumes,
        cat.inodes,
        cat.stale,
    )
    uids, gids, xattrs = cat.uids, cat.gids, cat.xattrs

    def rows(indexes: Sequence[int]) -> list[str]:
        # An attribute list is written as the JSON it is (metadata.encode): no escaping twice.
        return [
            f'[{dump(paths[i])},"{chr(kinds[i])}",{sizes[i]},{mtimes[i]},{modes[i]},{volumes[i]},'
            f"{dump(targets[i]) if i in targets else 'null'},{inodes[i]},{stale[i]},"
            f"{_id(uids[i])},{_id(gids[i])},{xattrs.get(i, 'null')}]"
            for i in indexes
        ]

    return document(head, "files", range(len(paths)), rows)


def _id(n: int) -> str:
    return "null" if n == UNKNOWN_ID else str(n)


def save(path: str, job: Job, copy_first: Optional[Callable[[str], None]] = None) -> None:
    """Write the jobfile atomically, a chunk at a time, then its catalog cache.

    ``copy_first`` is given the complete new jobfile (a temporary file) before it replaces the
    old one: a drive's copy written then is never older than the jobfile that says the drive
    is done (a crash in between leaves the jobfile saying the volume is still open)."""
    job.updated = now_iso()
    written = [0, 0]  # size, CRC-32

    def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            written[0] += len(chunk)
            written[1] = zlib.crc32(chunk, written[1])
            yield chunk

    atomic_write(path, counted(dump_chunks(job)), before_replace=copy_first)
    _write_cache(path, job.catalog, written[0], written[1])


def write_cache(path: str, catalog: Catalog) -> None:
    """Write the catalog cache of the jobfile at ``path`` as it is on disk; ``catalog`` must be
    the one loaded from it, unchanged."""
    size, crc = 0, 0
    try:
        for chunk in read_chunks(path):
            size += len(chunk)
            crc = zlib.crc32(chunk, crc)
    except OSError:
        return
    _write_cache(path, catalog, size, crc)


def _write_cache(path: str, cat: Catalog, size: int, crc: int) -> None:
    chunks = _cache_chunks(cat, size, crc)
    try:
        atomic_write(path + CACHE_SUFFIX, chunks, durable=False)
    except OSError:
        pass  # no cache: the next load parses the jobfile, and any old cache no longer matches it
    finally:
        chunks.close()  # drops its views of the columns at once, whatever happened


def load(path: str) -> Job:
    """The jobfile at ``path``, its catalog read from the cache when the cache matches the file.
    Raises :class:`JobfileError` for one missing, unreadable, damaged or of an unknown version."""
    try:
        with open(path, "rb") as fh:
            cached = _cached_catalog(path, fh)
            fh.seek(0)
            return _parse(fh, path, cached)
    except FileNotFoundError:
        raise JobfileError(f"jobfile {path} does not exist; check -f/--jobfile") from None
    except OSError as err:
        raise JobfileError(f"cannot read jobfile {path}: {err.strerror}") from None


def loads(raw: bytes, path: str = "jobfile") -> Job:
    """A jobfile from its bytes (a drive's copy, say); ``path`` names it in errors."""
    return _parse(io.BytesIO(raw), path)


def load_head(path: str) -> dict[str, Any]:
    """The jobfile at ``path`` without its rows: the job's sources and options, read before the
    scan (so a run for another job, or one giving other options, is refused before it starts).
    Raises :class:`JobfileError` as :func:`load` does, and for options this version does not
    know."""
    try:
        with open(path, "rb") as fh:
            lines: list[bytes] = []
            for line in fh:
                if line == FILES_LINE:  # our layout: the rows follow, and are not needed
                    lines = [b"".join(lines).rstrip().rstrip(b",") + b"}"]
                    break
                lines.append(line)
            head = b"".join(lines)
    except FileNotFoundError:
        raise JobfileError(f"jobfile {path} does not exist; check -f/--jobfile") from None
    except OSError as err:
        raise JobfileError(f"cannot read jobfile {path}: {err.strerror}") from None
    doc = _decode(head, path)
    _check_format(doc, path)
    options = doc.get("options") or {}
    if (
        not isinstance(options, dict)
        or joboptions.malformed(options)
        or not isinstance(doc.get("root"), str)
        or not isinstance(doc.get("sources"), list)
    ):
        raise _damaged(path)
    strange = joboptions.unknown(options)
    if strange:
        raise JobfileError(
            f"jobfile {path} records job options this multivolumecopy does not know "
            f"({', '.join(strange)}); run the job with the multivolumecopy that made it, or a newer one"
        )
    return {**doc, "options": options}


def _parse(fh: IO[bytes], path: str, cached: Optional[Catalog] = None) -> Job:
    """Read a jobfile as this module writes it, the rows a chunk at a time, so reading never
    holds the whole text nor a list per row at once; anything laid out otherwise (still
    valid JSON, say reformatted by a tool) is parsed whole.  With the catalog ``cached`` (from
    a cache that matches these very bytes), only the head is parsed."""
    head_lines = []
    for line in fh:
        if line == FILES_LINE:
            break
        head_lines.append(line)
    else:
        return _checked(_decode(b"".join(head_lines), path), path, None)
    head = _decode(b"".join(head_lines).rstrip().rstrip(b",") + b"}", path)
    if cached is not None:
        job = _checked(head, path, cached)
        job.cached = True
        return job
    cat = Catalog()
    chunk: list[bytes] = []
    tail: list[bytes] = []
    try:
        for line in fh:
            if tail or not line.startswith(b"["):
                tail.append(line.strip())
                continue
            chunk.append(line)
            if len(chunk) == ROWS_PER_CHUNK:
                _add_rows(cat, _decode(b"[" + b"".join(chunk).rstrip().rstrip(b",") + b"]", path))
                chunk = []
        if chunk:
            _add_rows(cat, _decode(b"[" + b"".join(chunk).rstrip().rstrip(b",") + b"]", path))
    except (ValueError, TypeError, IndexError):
        raise _damaged(path) from None
    if [t for t in tail if t] != [b"]", b"}"]:
        raise _corrupt(path)  # cut short, perhaps at the end of a row
    return _checked(head, path, cat)


# -- the catalog cache ------------------------------------------------------------------
#
# Parsing the JSON rows is the floor of reading a jobfile in Python, and every command reads
# one first; the same columns in binary read far faster (see docs/TECHNICAL_DECISIONS.rst, "The
# catalog cache").  ``<jobfile>.cache`` holds them, with the size and CRC-32
# of the exact jobfile bytes it was made from: a jobfile changed in any way (edited by hand,
# restored from a drive, written by another version) no longer matches and is parsed.  The
# cache is derived and safe to delete; the jobfile stays the record.  Layout: docs/formats.rst.

CACHE_SUFFIX = ".cache"
CACHE_FORMAT = "multivolumecopy-catalog-cache"
CACHE_VERSION = 3  # 3 added uids, gids, xattr_indexes, xattrs
_COLUMNS = (
    ("sizes", "q"),
    ("mtimes", "q"),
    ("modes", "I"),
    ("volumes", "i"),
    ("inodes", "Q"),
    ("uids", "I"),
    ("gids", "I"),
)


def _cache_sections(cat: Catalog) -> Iterator[tuple[str, Union[bytes, memoryview]]]:
    """The columns in binary, one section at a time (never all at once: 80 MB a million);
    the number columns as views of their arrays, not copies (a save can come at the run's
    peak of memory)."""
    for start in range(0, len(cat.paths), ROWS_PER_CHUNK):
        yield "paths", _joined(cat.paths[start : start + ROWS_PER_CHUNK])
    yield "kinds", memoryview(cat.kinds)
    yield "stale", memoryview(cat.stale)
    for name, typecode in _COLUMNS:
        column = getattr(cat, name)
        assert column.typecode == typecode
        yield name, memoryview(column).cast("B")  # gone with the save: then the column may grow
    with_target = sorted(cat.targets)
    yield "target_indexes", array("q", with_target).tobytes()
    yield "targets", _joined([cat.targets[i] for i in with_target])
    with_xattrs = sorted(cat.xattrs)
    yield "xattr_indexes", array("q", with_xattrs).tobytes()
    yield "xattrs", _joined([cat.xattrs[i] for i in with_xattrs])


def _cache_chunks(cat: Catalog, size: int, crc: int) -> Generator[Union[bytes, memoryview], None, None]:
    """The sections, then the header that lists them, then the header's length (8 bytes): the
    header comes last so that no section waits in memory for the sums it carries."""
    lengths: list[list[Any]] = []
    body_crc = 0
    for name, data in _cache_sections(cat):
        lengths.append([name, len(data)])
        body_crc = zlib.crc32(data, body_crc)
        yield data
    header = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "jobfile_size": size,
        "jobfile_crc32": crc,
        "entries": len(cat.paths),
        "byteorder": sys.byteorder,
        "body_crc32": body_crc,
        "sections": lengths,
    }
    text = json.dumps(header).encode("ascii")
    yield text + len(text).to_bytes(8, "little")


def _joined(texts: list[str]) -> bytes:
    # NUL is the one character no path or symlink target holds.
    return "\0".join(texts).encode("utf-8", "surrogateescape")


def _split(data: bytes) -> list[str]:
    return data.decode("utf-8", "surrogateescape").split("\0") if data else []


def _cached_catalog(path: str, jobfile: IO[bytes]) -> Optional[Catalog]:
    """The catalog from ``path``'s cache if the cache was made from exactly the bytes of
    ``jobfile`` (read to its end here); otherwise None, and the jobfile is parsed."""
    try:
        with open(path + CACHE_SUFFIX, "rb") as cache:
            end = cache.seek(-8, os.SEEK_END)
            length = int.from_bytes(cache.read(8), "little")
            if not 0 < length <= min(end, 1 << 20):
                return None
            cache.seek(end - length)
            header = json.loads(cache.read(length))
            cache.seek(0)
            if (header.get("format"), header.get("version"), header.get("byteorder")) != (
                CACHE_FORMAT,
                CACHE_VERSION,
                sys.byteorder,
            ) or os.fstat(jobfile.fileno()).st_size != header["jobfile_size"]:
                return None
            crc = 0
            while chunk := jobfile.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
            if crc != header["jobfile_crc32"]:
                return None
            return _read_cache(cache, header, end - length)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no cache, or not one this version wrote whole: parse the jobfile


def _read_cache(cache: IO[bytes], header: dict[str, Any], body_end: int) -> Optional[Catalog]:
    cat = Catalog()
    n = header["entries"]
    body_crc = 0
    target_indexes = array("q")
    xattr_indexes = array("q")
    for name, length in header["sections"]:
        data = cache.read(length)
        if len(data) != length:
            return None
        body_crc = zlib.crc32(data, body_crc)
        if name == "paths":
            cat.paths.extend(_split(data))
        elif name == "kinds":
            cat.kinds = bytearray(data)
        elif name == "stale":
            cat.stale = bytearray(data)
        elif name == "target_indexes":
            target_indexes.frombytes(data)
        elif name == "targets":
            cat.targets = dict(zip(target_indexes, _split(data)))
        elif name == "xattr_indexes":
            xattr_indexes.frombytes(data)
        elif name == "xattrs":
            cat.xattrs = dict(zip(xattr_indexes, _split(data)))
        else:
            column = array(dict(_COLUMNS)[name])
            column.frombytes(data)
            setattr(cat, name, column)
    columns = [cat.kinds, cat.stale] + [getattr(cat, name) for name, _ in _COLUMNS]
    if (
        body_crc != header["body_crc32"]
        or cache.tell() != body_end
        or len(cat.paths) != n
        or any(len(c) != n for c in columns)
        or len(cat.targets) != len(target_indexes)
        or len(cat.xattrs) != len(xattr_indexes)
        or cat.kinds.translate(None, "".join(KINDS).encode("ascii"))
    ):
        return None
    return cat


def _decode(text: bytes, path: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise _corrupt(path) from None


def _corrupt(path: str) -> JobfileError:
    return JobfileError(
        f"jobfile {path} is corrupt or truncated (not valid JSON); restore it from a drive's "
        f"copy ({DEFAULT_NAME} at the drive's root) or move it away to start a new job"
    )


def _damaged(path: str) -> JobfileError:
    return JobfileError(
        f"jobfile {path} is damaged (a field is missing or of the wrong type); restore it "
        f"from a drive's copy ({DEFAULT_NAME} at the drive's root)"
    )


def _check_format(doc: Any, path: str) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise JobfileError(f"{path} is not a multivolumecopy jobfile; check -f/--jobfile")
    version = doc.get("version")
    if version not in READS:
        raise JobfileError(
            f"jobfile {path} has format version {version!r}, this multivolumecopy reads versions "
            f"{' and '.join(map(str, READS))}; use the multivolumecopy that wrote it (or a newer one)"
        )


def _checked(doc: Any, path: str, cat: Optional[Catalog]) -> Job:
    _check_format(doc, path)
    version = doc["version"]
    try:
        if list(doc["columns"]) != list(COLUMNS_OF[version]):
            raise ValueError("unknown columns")
        if cat is None:
            cat = Catalog()
            _add_rows(cat, doc["files"])
        cat.xattrs_known = version >= 3 and bool(doc.get("xattrs_read", True))
        return _from_doc(doc, cat)
    except (KeyError, TypeError, ValueError, IndexError):
        raise _damaged(path) from None


def _add_rows(cat: Catalog, rows: list[Any]) -> None:
    """Append rows to the catalog column by column: an object per row would cost more time and
    memory than the file.  Rows of version 1 have no "stale" column, rows of versions 1 and 2
    no "uid", "gid" and "xattrs" (the owner is then unknown)."""
    width = len(rows[0]) if rows else len(COLUMNS)
    if width not in (len(c) for c in COLUMNS_OF.values()) or any(len(r) != width for r in rows):
        raise ValueError("row")
    paths = [r[0] for r in rows]
    if not all(isinstance(p, str) for p in paths):
        raise ValueError("path")
    kinds = "".join(r[1] for r in rows)
    if len(kinds) != len(rows) or set(kinds) - set(KINDS):
        raise ValueError("kind")
    base = len(cat.paths)
    cat.paths.extend(paths)
    cat.kinds.extend(kinds.encode("ascii"))
    # array.extend refuses anything but integers: the type check comes free.
    cat.sizes.extend([r[2] for r in rows])
    cat.mtimes.extend([r[3] for r in rows])
    cat.modes.extend([r[4] for r in rows])
    cat.volumes.extend([r[5] or 0 for r in rows])
    cat.targets.update({base + k: str(r[6]) for k, r in enumerate(rows) if r[6] is not None})
    cat.inodes.extend([r[7] for r in rows])
    if width > len(COLUMNS_OF[1]):
        flags = bytes([r[8] for r in rows])  # refuses anything but 0-255
        if flags.translate(None, b"\x00\x01"):
            raise ValueError("stale")
        cat.stale.extend(flags)
    else:
        cat.stale.extend(bytes(len(rows)))
    if width == len(COLUMNS):
        cat.uids.extend([UNKNOWN_ID if r[9] is None else r[9] for r in rows])
        cat.gids.extend([UNKNOWN_ID if r[10] is None else r[10] for r in rows])
        dumps = json.dumps
        cat.xattrs.update(
            {base + k: dumps(r[11], separators=(",", ":")) for k, r in enumerate(rows) if r[11]}
        )
    else:
        cat.uids.extend([UNKNOWN_ID] * len(rows))
        cat.gids.extend([UNKNOWN_ID] * len(rows))


def _from_doc(doc: dict[str, Any], cat: Catalog) -> Job:
    volumes = {}
    for v in doc["volumes"]:
        rec = VolumeRecord(**v)
        volumes[rec.number] = rec
    return Job(
        job_id=str(doc["job_id"]),
        root=str(doc["root"]),
        sources=list(doc["sources"]),
        options=dict(doc.get("options") or {}),
        created=str(doc["created"]),
        updated=doc.get("updated"),
        catalog=cat,
        volumes=volumes,
        run=RunState(**doc["run"]),
        failed=[[str(p), str(why)] for p, why in doc.get("failed", [])],
        top=_top(doc.get("top")),
        specials=[Special.from_row(row) for row in doc.get("specials") or []],
        owners={str(k): {str(i): str(n) for i, n in v.items()} for k, v in (doc.get("owners") or {}).items()},
    )


def _top(doc: Any) -> Optional[dict[str, int]]:
    """The top folder's mode and time, if the jobfile has them (written since 2026-12)."""
    if not isinstance(doc, dict):
        return None
    return {"mode": int(doc["mode"]), "mtime_ns": int(doc["mtime_ns"])}
