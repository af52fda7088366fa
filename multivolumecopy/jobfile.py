"""The jobfile: what the job is, which drives it has, and where every file went.

Written next to the operator (``-f``, default ``.mvcopy-jobdata.json``) and a
copy at the root of every drive, so one surviving drive tells what all the
others hold.  JSON, one catalog row per line so it stays readable and
diffable; the format is described in docs/formats.rst.  A reader refuses a
``version`` it does not know rather than guessing.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from json.encoder import encode_basestring_ascii
from typing import IO, Any, Optional

from .catalog import KINDS, Catalog
from .errors import JobfileError
from .fsutil import atomic_write

FORMAT = "multivolumecopy-jobfile"
VERSION = 1
DEFAULT_NAME = ".mvcopy-jobdata.json"
COLUMNS = ("path", "kind", "size", "mtime_ns", "mode", "volume", "target", "ino")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).isoformat(timespec="seconds")


def epoch(text: str) -> float:
    return _dt.datetime.fromisoformat(text).timestamp()


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class VolumeRecord:
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


@dataclass
class RunState:
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
        return self.state == "in-progress"


@dataclass
class Job:
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

    def next_volume_number(self) -> int:
        return max(self.volumes, default=0) + 1  # forgotten numbers are not reused


ROWS_PER_CHUNK = 16384  # rows serialised, written or parsed at a time: memory stays flat
FILES_LINE = b' "files": [\n'


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
        "columns": list(COLUMNS),
    }
    text = json.dumps(head, indent=1)
    yield (text[: text.rfind("}")].rstrip() + ",\n").encode("ascii") + FILES_LINE
    cat = job.catalog
    dump = encode_basestring_ascii  # what json.dumps does with a str, without its overhead
    targets, kinds, sizes, mtimes, modes, volumes, inodes = (
        cat.targets,
        cat.kinds,
        cat.sizes,
        cat.mtimes,
        cat.modes,
        cat.volumes,
        cat.inodes,
    )
    paths = cat.paths
    for start in range(0, len(paths), ROWS_PER_CHUNK):
        rows = [
            f'[{dump(paths[i])},"{chr(kinds[i])}",{sizes[i]},{mtimes[i]},{modes[i]},{volumes[i]},'
            f"{dump(targets[i]) if i in targets else 'null'},{inodes[i]}]"
            for i in range(start, min(start + ROWS_PER_CHUNK, len(paths)))
        ]
        last = start + ROWS_PER_CHUNK >= len(paths)
        yield (",\n".join(rows) + ("\n" if last else ",\n")).encode("ascii")
    yield b" ]\n}\n"


def save(path: str, job: Job) -> None:
    """Write the jobfile atomically, a chunk at a time."""
    job.updated = now_iso()
    atomic_write(path, dump_chunks(job))


def load(path: str) -> Job:
    try:
        with open(path, "rb") as fh:
            return _parse(fh, path)
    except FileNotFoundError:
        raise JobfileError(f"jobfile {path} does not exist; check -f/--jobfile") from None
    except OSError as err:
        raise JobfileError(f"cannot read jobfile {path}: {err.strerror}") from None


def loads(raw: bytes, path: str = "jobfile") -> Job:
    return _parse(io.BytesIO(raw), path)


def _parse(fh: IO[bytes], path: str) -> Job:
    """Read a jobfile as this module writes it, the rows a chunk at a time, so reading never
    holds the whole text nor a list per row at once; anything laid out otherwise (still
    valid JSON, say reformatted by a tool) is parsed whole."""
    head_lines = []
    for line in fh:
        if line == FILES_LINE:
            break
        head_lines.append(line)
    else:
        return _checked(_decode(b"".join(head_lines), path), path, None)
    head = _decode(b"".join(head_lines).rstrip().rstrip(b",") + b"}", path)
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


def _checked(doc: Any, path: str, cat: Optional[Catalog]) -> Job:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise JobfileError(f"{path} is not a multivolumecopy jobfile; check -f/--jobfile")
    version = doc.get("version")
    if version != VERSION:
        raise JobfileError(
            f"jobfile {path} has format version {version!r}, this multivolumecopy reads version "
            f"{VERSION}; use the multivolumecopy that wrote it (or a newer one)"
        )
    try:
        if list(doc["columns"]) != list(COLUMNS):
            raise ValueError("unknown columns")
        if cat is None:
            cat = Catalog()
            _add_rows(cat, doc["files"])
        return _from_doc(doc, cat)
    except (KeyError, TypeError, ValueError, IndexError):
        raise _damaged(path) from None


def _add_rows(cat: Catalog, rows: list[Any]) -> None:
    """Append rows to the catalog column by column: an object per row would cost more time and
    memory than the file."""
    if any(len(r) != len(COLUMNS) for r in rows):
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
    )
