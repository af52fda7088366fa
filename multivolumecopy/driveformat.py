"""What the tool keeps on a drive, as files: their names, the label, the rows of the manifest
and of the journal, and the sums file.

Everything lives at the drive's root under names starting with ``.mvcopy``::

    .mvcopy-label.json     which job and volume this drive is (written once)
    .mvcopy-manifest.json  what the drive holds, as of the last commit
    .mvcopy-journal        what happened since: intents, puts, deletes, sync points
    .mvcopy-tmp/           partial copies and new folders being built (a folder per batch);
                           emptied on every open
    .mvcopy-jobdata.json   a copy of the jobfile
    .mvcopy-sha256sums     what ``sha256sum -c`` checks
    .mvcopy-changes.json   what the last run that visited the drive did to it
    .mvcopy-lock           flock'd while a run uses the drive

The layouts, with their version fields, are in docs/formats.rst; a reader refuses a version it
does not know.  How they are used to keep a drive consistent through crashes is in
:mod:`multivolumecopy.drive` and :mod:`multivolumecopy.journal`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from .catalog import KINDS, Entry
from .contents import DriveContents, manifest_row
from .errors import OutputError
from .probe import Capabilities

LABEL = ".mvcopy-label.json"
MANIFEST = ".mvcopy-manifest.json"
JOURNAL = ".mvcopy-journal"
TMPDIR = ".mvcopy-tmp"
LOCKFILE = ".mvcopy-lock"
JOBCOPY = ".mvcopy-jobdata.json"
SUMS = ".mvcopy-sha256sums"
CHANGES = ".mvcopy-changes.json"
RESERVED_PREFIX = ".mvcopy"

LABEL_FORMAT = "multivolumecopy-label"
MANIFEST_FORMAT = "multivolumecopy-manifest"
JOURNAL_FORMAT = "multivolumecopy-journal"
VERSION = 1  # of the label
MANIFEST_VERSION = 2  # 2 added the "meta" column (and journal rows carry it)
MANIFEST_READS = (1, 2)
JOURNAL_VERSION = 2
MANIFEST_COLUMNS = (
    "path", "kind", "size", "mtime_ns", "mode", "target", "sha256", "verified", "stored", "meta"
)  # fmt: skip
DATA, PARITY = "data", "parity"  # a label's role (added within version 1: no role is a data drive)
RECORDED_ONLY = ""  # "stored" value of an entry the drive cannot hold (a symlink on exFAT)


@dataclass(frozen=True)
class Label:
    """What ``.mvcopy-label.json`` says: which job and volume the drive is, the volume's id (so a
    replaced drive's old copy is told apart), and the job's root, for a person."""

    job_id: str
    volume: int
    volume_uuid: str
    created: str
    job_root: str = ""
    role: str = DATA  # PARITY: the job's parity drive number ``volume`` (P1), no data of its own

    def to_json(self) -> bytes:
        """The label file's bytes: indented JSON with its format and version."""
        doc = {"format": LABEL_FORMAT, "version": VERSION, **asdict(self)}
        if self.role == DATA:
            del doc["role"]  # a data drive's label as it always was
        return (json.dumps(doc, indent=1) + "\n").encode("ascii")


def read_label(root: str) -> Optional[Label]:
    """The drive's label, or None for a drive this tool has never written to."""
    path = os.path.join(root, LABEL)
    doc = _read_json(
        path, "label", "check the drive with fsck, or move the label away to use the drive as a blank one"
    )
    if doc is _MISSING:
        return None
    if not isinstance(doc, dict) or doc.get("format") != LABEL_FORMAT:
        raise OutputError(f"{path} is not a multivolumecopy label; move it away or use another drive")
    if doc.get("version") != VERSION:
        raise OutputError(
            f"the label {path} has format version {doc.get('version')!r}; this multivolumecopy "
            f"reads version {VERSION}: use the version that wrote the drive"
        )
    try:
        return Label(
            job_id=str(doc["job_id"]),
            volume=int(doc["volume"]),
            volume_uuid=str(doc["volume_uuid"]),
            created=str(doc["created"]),
            job_root=str(doc.get("job_root", "")),
            role=str(doc.get("role", DATA)),
        )
    except (KeyError, TypeError, ValueError):
        raise OutputError(f"the label {path} is damaged; move it away or use another drive") from None


_MISSING = object()


def _read_json(path: str, what: str, advice: str) -> Any:
    """The JSON document at ``path``, ``_MISSING`` if there is no such file; OutputError (with
    ``advice``) if it cannot be read or parsed."""
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        return _MISSING
    except (OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else "not valid JSON"
        raise OutputError(f"the {what} {path} is unreadable ({why}); {advice}") from None


def filesystem_id(root: str) -> str:
    """Filesystem id plus the root directory's inode: the same for one drive across mounts."""
    st = os.stat(root)
    try:
        fsid = os.statvfs(root).f_fsid
    except (OSError, AttributeError):
        fsid = st.st_dev
    return f"{fsid:x}:{st.st_ino}"


def entry_row(e: Entry, verified: Optional[int] = None, stored: Optional[str] = None) -> str:
    """A manifest or journal row of ``e`` as JSON text."""
    return manifest_row(
        e.path, e.kind, e.size, e.mtime_ns, e.mode, e.target, e.sha256, verified, stored, e.meta
    )


def row_entry(row: list[Any]) -> tuple[Entry, Optional[int], Optional[str]]:
    """A manifest or journal row: the entry, when its content was last verified (epoch s), and
    the name it is stored under when that differs from its path.  A row of version 1 has no
    ``meta``: the drive's copy was given no owner or attributes that its record knows of."""
    if len(row) == len(MANIFEST_COLUMNS):
        path, kind, size, mtime, mode, target, sha256, verified, stored, meta = row
    else:
        path, kind, size, mtime, mode, target, sha256, verified, stored = row
        meta = None
    if kind not in KINDS or not isinstance(path, str):
        raise ValueError(kind)
    digest = int(meta, 16) if meta is not None else 0
    entry = Entry(path, kind, int(size), int(mtime), int(mode), target, sha256, meta=digest)
    return entry, verified, stored


def sums_line(sha256: str, stored: str) -> str:
    """One line of a file ``sha256sum -c`` reads (for the name on the drive), escaped as
    coreutils does; text, encoded a chunk of lines at a time as the file system's names are
    (UTF-8, bytes that are not kept as surrogates)."""
    if "\\" in stored or "\n" in stored or "\r" in stored:
        stored = stored.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{sha256}  {stored}\n"
    return f"{sha256}  {stored}\n"


@dataclass
class ManifestState:
    """What a drive's manifest says: what it holds, when each file was last checked, the names
    entries are stored under where they differ from their paths, what is ours with unknown
    content (dirty), the commit's generation, the run that made it, and what the drive can
    hold."""

    contents: DriveContents = field(default_factory=DriveContents)
    verified: dict[str, int] = field(default_factory=dict)  # path -> epoch seconds
    stored: dict[str, str] = field(default_factory=dict)  # path -> its name on the drive
    dirty: set[str] = field(default_factory=set)
    generation: int = 0
    run: int = 0
    caps: Capabilities = field(default_factory=Capabilities)


def read_manifest(path: str) -> Optional[ManifestState]:
    """The manifest at ``path``; None for a drive labelled and never committed (nothing of it is
    trusted yet).  Raises OutputError for one that cannot be read or trusted."""
    doc = _read_json(path, "manifest", "run fsck on the drive, or give the volume up and back it up again")
    if doc is _MISSING:
        return None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != MANIFEST_FORMAT
        or doc.get("version") not in MANIFEST_READS
    ):
        version = doc.get("version") if isinstance(doc, dict) else None
        raise OutputError(
            f"the manifest {path} has an unknown format or version ({version!r}); "
            "use the multivolumecopy that wrote the drive"
        )
    state = ManifestState()
    try:
        if list(doc["columns"]) != list(MANIFEST_COLUMNS[: 9 if doc["version"] == 1 else None]):
            raise ValueError("columns")
        state.caps = Capabilities.from_json(doc.get("capabilities"))
        for raw in doc["entries"]:
            e, verified, stored = row_entry(raw)
            state.contents[e.path] = e
            if verified is not None:
                state.verified[e.path] = int(verified)
            if stored is not None:
                state.stored[e.path] = stored
        state.dirty = {str(p) for p in doc.get("dirty", [])}
        state.generation = int(doc["generation"])
        state.run = int(doc.get("run", 0))
    except (KeyError, TypeError, ValueError):
        raise OutputError(f"the manifest {path} is damaged; run fsck on the drive") from None
    return state


def manifest_head(
    label: Optional[Label], generation: int, run: int, updated: str, caps: Capabilities, dirty: set[str]
) -> dict[str, Any]:
    """The manifest's fields but its entries (written after them, a row a line)."""
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "job_id": label.job_id if label else None,
        "volume": label.volume if label else None,
        "volume_uuid": label.volume_uuid if label else None,
        "generation": generation,
        "run": run,
        "updated": updated,
        "columns": list(MANIFEST_COLUMNS),
        "capabilities": caps.to_json(),
        "dirty": sorted(dirty),
    }
