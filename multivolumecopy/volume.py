"""What the tool keeps on a drive: its label, manifest and journal.

Everything lives at the drive's root under names starting with ``.mvcopy``::

    .mvcopy-label.json     which job and volume this drive is (written once)
    .mvcopy-manifest.json  what the drive holds, as of the last commit
    .mvcopy-journal        what happened since: intents, puts, deletes, sync points
    .mvcopy-tmp/           partial copies and new folders being built (a folder per batch);
                           emptied on every open
    .mvcopy-jobdata.json   a copy of the jobfile
    .mvcopy-lock           flock'd while a run uses the drive

The manifest is the drive's commit point.  Between commits the journal
records, before any file is renamed into place, the paths the run *may*
write (an intent), then each finished file (a put) and each purge (a delete).
A sync point (``syncfs`` then a ``sync`` record) makes earlier puts
trustworthy.  After a crash, a put that no sync point covers, or an intent
with no put, names a path that is ours but whose content is unknown: it is
marked *dirty*, copied again if it still belongs here and removed if not.
A path that neither the manifest nor the journal names was not put there by
this job and is never touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import struct
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import asdict, dataclass
from json.encoder import encode_basestring_ascii as _jstr
from typing import IO, Any, Optional, Union

from .catalog import DIR, FILE, KINDS, LINK, Entry, ancestors, same_version, sort_key
from .clock import now_iso
from .errors import DriveError, OutputError
from .fsutil import (
    atomic_write,
    fsync_dir,
    is_drive_gone,
    is_no_space,
    read_chunks,
    remove_stale_temporaries,
    round_up,
    syncfs,
)
from .jsonstream import ROWS_PER_CHUNK, document
from .lock import FileLock
from .names import disambiguate, escape
from .names import escape_component as _escape_one
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
VERSION = 1
MANIFEST_COLUMNS = ("path", "kind", "size", "mtime_ns", "mode", "target", "sha256", "verified", "stored")
RECORDED_ONLY = ""  # "stored" value of an entry the drive cannot hold (a symlink on exFAT)


@dataclass(frozen=True)
class Label:
    job_id: str
    volume: int
    volume_uuid: str
    created: str
    job_root: str = ""

    def to_json(self) -> bytes:
        doc = {"format": LABEL_FORMAT, "version": VERSION, **asdict(self)}
        return (json.dumps(doc, indent=1) + "\n").encode("ascii")


def read_label(root: str) -> Optional[Label]:
    """The drive's label, or None for a drive this tool has never written to."""
    path = os.path.join(root, LABEL)
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise OutputError(
            f"the label {path} is unreadable ({_why(err)}); check the drive with fsck, "
            "or move the label away to use the drive as a blank one"
        ) from None
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
        )
    except (KeyError, TypeError, ValueError):
        raise OutputError(f"the label {path} is damaged; move it away or use another drive") from None


def _why(err: BaseException) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else "not valid JSON"


def fs_identity(root: str) -> str:
    """Filesystem id plus the root directory's inode: the same for one drive across mounts."""
    st = os.stat(root)
    try:
        fsid = os.statvfs(root).f_fsid
    except (OSError, AttributeError):
        fsid = st.st_dev
    return f"{fsid:x}:{st.st_ino}"


def _entry_row(e: Entry, verified: Optional[int] = None, stored: Optional[str] = None) -> str:
    """A manifest or journal row as JSON text, built directly: ``json.dumps`` per row took
    twice as long, and a drive's manifest has a row for every file it holds."""
    return _row(e.path, e.kind, e.size, e.mtime_ns, e.mode, e.target, e.sha256, verified, stored)


def _row(
    path: str,
    kind: str,
    size: int,
    mtime_ns: int,
    mode: int,
    target: Optional[str],
    sha256: Optional[str],
    verified: Optional[int],
    stored: Optional[str],
) -> str:
    target = "null" if target is None else _jstr(target)
    sha = "null" if sha256 is None else _jstr(sha256)
    when = "null" if verified is None else int(verified)
    name = "null" if stored is None else _jstr(stored)
    return f'[{_jstr(path)},"{kind}",{size},{mtime_ns},{mode},{target},{sha},{when},{name}]'


def _row_entry(row: list[Any]) -> tuple[Entry, Optional[int], Optional[str]]:
    """A manifest or journal row: the entry, when its content was last verified (epoch s), and
    the name it is stored under when that differs from its path."""
    path, kind, size, mtime, mode, target, sha256, verified, stored = row
    if kind not in KINDS or not isinstance(path, str):
        raise ValueError(kind)
    return Entry(path, kind, int(size), int(mtime), int(mode), target, sha256), verified, stored


def sums_line(sha256: str, stored: str) -> str:
    """One line of a file ``sha256sum -c`` reads (for the name on the drive), escaped as
    coreutils does; text, encoded a chunk of lines at a time as the file system's names are
    (UTF-8, bytes that are not kept as surrogates)."""
    if "\\" in stored or "\n" in stored or "\r" in stored:
        stored = stored.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{sha256}  {stored}\n"
    return f"{sha256}  {stored}\n"


_PACKED = struct.Struct("<cqqI")  # kind, size, mtime_ns, mode; then 32 bytes of SHA-256 or none
_SIZE_AT = struct.Struct("<q")  # the size, at offset 1 of a packed row


class Held(MutableMapping[str, Entry]):
    """What a drive holds: path -> :class:`Entry`, each kept as one small ``bytes`` (kind,
    size, mtime, mode, and the SHA-256 in binary), about 150 bytes an entry with the map
    where a tuple of Python objects took 290: a drive can hold a million files.  Symlink
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
            self._rows[path] = _PACKED.pack(e.kind.encode("ascii"), e.size, e.mtime_ns, e.mode) + digest
        except struct.error as err:  # a number out of range, from a damaged manifest
            raise ValueError(str(err)) from None
        if aside:
            self._aside[path] = (e.target, e.sha256)
        else:
            self._aside.pop(path, None)

    def _entry(self, path: str, raw: bytes) -> Entry:
        return Entry(path, *self._fields(path, raw))

    def _fields(self, path: str, raw: bytes) -> tuple[str, int, int, int, Optional[str], Optional[str]]:
        """kind, size, mtime_ns, mode, target, sha256 of a packed row."""
        kind, size, mtime_ns, mode = _PACKED.unpack_from(raw)
        aside = self._aside.get(path) if self._aside else None
        if aside is not None:
            target, sha256 = aside
        else:
            target, sha256 = None, raw[_PACKED.size :].hex() or None
        return kind.decode("ascii"), size, mtime_ns, mode, target, sha256

    def manifest_rows(
        self, paths: Iterable[str], verified: dict[str, int], names: dict[str, str]
    ) -> list[str]:
        """The manifest rows of ``paths`` as JSON text, straight from the packed rows (no
        ``Entry`` per file: a commit writes one row for everything the drive holds)."""
        rows, fields = self._rows, self._fields
        return [_row(p, *fields(p, rows[p]), verified.get(p), names.get(p)) for p in paths]

    def file_bytes(self, block: int) -> int:
        """What the files take on a drive of ``block``-byte blocks, read from the packed rows."""
        file, size_at = ord(FILE), _SIZE_AT.unpack_from
        return sum(round_up(size_at(raw, 1)[0], block) for raw in self._rows.values() if raw[0] == file)

    def unhashed_files(self) -> set[str]:
        """Files with no recorded SHA-256 (adopted by an older version, or copied with --no-hash)."""
        file, size = ord(FILE), _PACKED.size
        found = {p for p, raw in self._rows.items() if raw[0] == file and len(raw) == size}
        if self._aside:  # a digest kept aside is one that is not plain hex: not usable either way
            found |= {
                p for p, (_, sha) in self._aside.items() if p in self._rows and self._rows[p][0] == file
            }
        return found

    def paths_of_kind(self, kind: str) -> Iterator[str]:
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
    ) -> bool:
        """Whether the drive holds this version of ``path`` (kind, size, time, mode and a
        symlink's target; a folder's time is not compared).  Read from the packed row: the
        close of a volume asks it of every entry the volume holds."""
        raw = self._rows.get(path)
        if raw is None:
            return False
        if granularity <= 1 and kind == FILE and not self._aside:
            return raw[: _PACKED.size] == _PACKED.pack(b"f", size, mtime_ns, mode)
        have, have_size, have_mtime, have_mode, have_target, _ = self._fields(path, raw)
        if kind != LINK and have_mode != mode:
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


class Drive:
    """One mounted drive (or directory) used as a volume; the parent process's view of it."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.label: Optional[Label] = None
        self.held = Held()
        self.verified: dict[str, int] = {}  # path -> when its content was last checked (epoch s)
        self.names: dict[str, str] = {}  # path -> name on the drive, where they differ
        self.caps = Capabilities()
        self._folded: Optional[dict[str, str]] = None  # see _case_folded
        self._folders: Optional[dict[str, str]] = None  # see _folder_names
        self.dirty: set[str] = set()
        self.generation = 0
        self.run_number = 0
        self._lock: Optional[FileLock] = None
        self._journal: Optional[IO[bytes]] = None
        self._made_lock = False
        self.identity: tuple[int, int] = (0, 0)  # st_dev, st_ino of the root when opened

    # -- opening -----------------------------------------------------------------

    def open(self) -> None:
        """Lock the drive, read its label, recover its state, clear leftovers."""
        lock_path = os.path.join(self.root, LOCKFILE)
        self._made_lock = not os.path.lexists(lock_path)
        self._lock = FileLock(lock_path, f"the drive at {self.root}")
        self._lock.acquire()
        st = os.stat(self.root)
        self.identity = (st.st_dev, st.st_ino)
        try:
            for name in (LABEL, MANIFEST, SUMS, JOBCOPY, CHANGES):
                remove_stale_temporaries(self.path(name))
            self.label = read_label(self.root)
            if self.label is not None:
                self._recover()
        except BaseException:
            self.close()
            raise

    def read_state(self) -> None:
        """Label, manifest and journal, replayed in memory only: for looking, not writing."""
        self.label = read_label(self.root)
        if self.label is not None:
            self._read_manifest()
            self._replay_journal()

    def close(self) -> None:
        if self._journal is not None:
            try:
                self._journal.close()
            except OSError:
                pass
            self._journal = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            if self._made_lock and self.label is None:
                # A drive we looked at and did not use keeps nothing of ours.
                try:
                    os.unlink(os.path.join(self.root, LOCKFILE))
                except OSError:
                    pass

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    @property
    def tmpdir(self) -> str:
        return os.path.join(self.root, TMPDIR)

    def _recover(self) -> None:
        self._read_manifest()
        replayed = self._replay_journal()
        had_leftovers = self._clear_tmp()
        if replayed or had_leftovers:
            self.commit()

    def _read_manifest(self) -> None:
        path = self.path(MANIFEST)
        try:
            with open(path, "rb") as fh:
                doc = json.loads(fh.read())
        except FileNotFoundError:
            return  # labelled but never committed: nothing is trusted yet
        except (OSError, ValueError) as err:
            raise OutputError(
                f"the manifest {path} is unreadable ({_why(err)}); run fsck on the drive, "
                "or give the volume up and back it up again"
            ) from None
        if doc.get("format") != MANIFEST_FORMAT or doc.get("version") != VERSION:
            raise OutputError(
                f"the manifest {path} has an unknown format or version ({doc.get('version')!r}); "
                "use the multivolumecopy that wrote the drive"
            )
        try:
            if list(doc["columns"]) != list(MANIFEST_COLUMNS):
                raise ValueError("columns")
            self.caps = Capabilities.from_json(doc.get("capabilities"))
            for row in doc["entries"]:
                e, verified, stored = _row_entry(row)
                self.held[e.path] = e
                if verified is not None:
                    self.verified[e.path] = int(verified)
                if stored is not None:
                    self.names[e.path] = stored
            self.dirty = {str(p) for p in doc.get("dirty", [])}
            self.generation = int(doc["generation"])
            self.run_number = int(doc.get("run", 0))
        except (KeyError, TypeError, ValueError):
            raise OutputError(f"the manifest {path} is damaged; run fsck on the drive") from None

    def _replay_journal(self) -> bool:
        path = self.path(JOURNAL)
        try:
            with open(path, "rb") as fh:
                lines = fh.read().split(b"\n")
        except FileNotFoundError:
            return False
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                break  # a torn last line: everything after it never happened
        if not records or records[0].get("format") != JOURNAL_FORMAT:
            return bool(records)
        if records[0].get("generation") != self.generation:
            return True  # written before the manifest it sits on was committed: already folded in
        pending: dict[str, Entry] = {}
        intents: set[str] = set()
        confirmed: set[str] = set()
        for rec in records[1:]:
            kind = rec.get("t")
            if kind == "intent":
                intents.update(rec["paths"])
                self.names.update(rec.get("stored", {}))
            elif kind == "put":
                for row in rec["e"]:
                    e, _, stored = _row_entry(row)
                    pending[e.path] = e
                    self.verified.pop(e.path, None)
                    if stored is not None:
                        self.names[e.path] = stored
            elif kind == "del":
                for p in rec["paths"]:
                    self.held.pop(p, None)
                    pending.pop(p, None)
                    self.dirty.discard(p)
                    intents.discard(p)
            elif kind == "sync":
                self.held.update(pending)
                confirmed.update(pending)
                self.dirty.difference_update(pending)
                pending.clear()
        unsure = (intents | set(pending)) - confirmed
        for p in unsure:
            self.held.pop(p, None)
        self.dirty |= unsure
        return True

    def _clear_tmp(self) -> bool:
        tmp = self.tmpdir
        try:
            leftovers = os.listdir(tmp)
        except FileNotFoundError:
            return False
        for name in leftovers:
            p = os.path.join(tmp, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        return bool(leftovers)

    # -- writing -----------------------------------------------------------------

    def check_present(self) -> None:
        """The drive is still the one we opened: not unmounted (the path would then lead to the
        empty mount point on another filesystem) and not replaced."""
        try:
            st = os.stat(self.root)
            same = (st.st_dev, st.st_ino) == self.identity
        except OSError:
            same = False
        if not same:
            raise DriveError(
                f"the drive at {self.root} is gone (unmounted or replaced) in the middle of the run; "
                "what was committed is kept: mount it again and run the same command"
            )

    def write_label(self, label: Label) -> None:
        self.check_present()
        self._guard(atomic_write, self.path(LABEL), label.to_json())
        self.label = label

    def prepare(self) -> None:
        """Create the temp directory and start a journal on top of the current manifest."""
        self.check_present()
        self._guard(os.makedirs, self.tmpdir, exist_ok=True)
        if self._journal is None:
            self._journal = self._guard(open, self.path(JOURNAL), "wb", buffering=1 << 16)
            self._append({"format": JOURNAL_FORMAT, "version": VERSION, "generation": self.generation})
            self._flush(durable=True)

    def intent(self, paths: list[str]) -> None:
        """Record, durably, the paths about to be written: before any of them is renamed in."""
        if paths:
            for start in range(0, len(paths), ROWS_PER_CHUNK):  # records of bounded size
                part = paths[start : start + ROWS_PER_CHUNK]
                renamed = {p: self.names[p] for p in part if p in self.names}
                self._append({"t": "intent", "paths": part, "stored": renamed})
            self._flush(durable=True)

    def put(self, entries: list[Entry]) -> None:
        for e in entries:
            self.held[e.path] = e
            self.dirty.discard(e.path)
        for e in entries:
            self.verified.pop(e.path, None)
        names = self.names
        rows = ",".join([_entry_row(e, None, names.get(e.path)) for e in entries])
        self._append_text(f'{{"t": "put", "e": [{rows}]}}')

    def forget(self, paths: list[str]) -> None:
        """Record that ``paths`` were removed from the drive (after the unlink)."""
        for p in paths:
            self.held.pop(p, None)
            self.dirty.discard(p)
            stored = self.names.pop(p, None)
            if self._folded is not None:
                self._folded.pop((stored or p).casefold(), None)
        if paths:
            self._append({"t": "del", "paths": paths})

    def mark_unfinished(self) -> None:
        """After a copy that was cut short (an interrupt, a worker that died): a path the journal
        says was about to be written and that no put records may sit on the drive, complete,
        with nobody having heard of it.  It is ours, of unknown content (dirty), as a crash's
        replay would say: rewritten if it still belongs here, else removed."""
        if self._journal is None:
            return
        self._flush(durable=False)
        try:
            with open(self.path(JOURNAL), "rb") as fh:
                lines = fh.read().split(b"\n")
        except OSError:
            return  # the commit that follows says what is wrong with the drive
        intended: set[str] = set()
        for line in lines[1:]:
            try:
                rec = json.loads(line)
            except ValueError:
                break
            if rec.get("t") == "intent":
                intended.update(rec["paths"])
            elif rec.get("t") == "del":
                intended.difference_update(rec["paths"])
        self.dirty |= {p for p in intended if p not in self.held}

    def sync_point(self) -> None:
        """Make every put so far durable and trusted."""
        if self._journal is None:
            return
        self._flush(durable=False)
        self.check_present()
        self._guard(syncfs, self.root)
        self._append({"t": "sync"})
        self._flush(durable=True)

    def commit(self, run_number: Optional[int] = None, order: Optional[Iterable[str]] = None) -> None:
        """Fold everything into a new manifest (the commit point) and start an empty journal.

        ``order``: paths in index order naming everything the drive holds (the catalog's, for
        this volume), which spares sorting a key for every path; anything it leaves out, and
        the order is not used."""
        if self._journal is not None:
            self._flush(durable=False)
        self.check_present()
        self._guard(syncfs, self.root)
        if run_number is not None:
            self.run_number = run_number
        self.generation += 1
        doc = {
            "format": MANIFEST_FORMAT,
            "version": VERSION,
            "job_id": self.label.job_id if self.label else None,
            "volume": self.label.volume if self.label else None,
            "volume_uuid": self.label.volume_uuid if self.label else None,
            "generation": self.generation,
            "run": self.run_number,
            "updated": now_iso(),
            "columns": list(MANIFEST_COLUMNS),
            "capabilities": self.caps.to_json(),
            "dirty": sorted(self.dirty),
        }
        # Paths in index order, and their entries made a chunk at a time: all of a big drive's
        # entries as tuples at once would cost twice what the drive's record takes.
        names, verified, held = self.names, self.verified, self.held
        paths = [p for p in order if p in held] if order is not None else []
        if len(paths) != len(held):
            paths = sorted(held, key=sort_key)

        def manifest() -> Iterator[bytes]:
            return document(doc, "entries", paths, lambda part: held.manifest_rows(part, verified, names))

        def sums() -> Iterator[bytes]:
            for start in range(0, len(paths), ROWS_PER_CHUNK):
                part = held.digests(paths[start : start + ROWS_PER_CHUNK])
                text = "".join([sums_line(sha256, names.get(p, p)) for p, sha256 in part])
                yield text.encode("utf-8", "surrogateescape")

        self._guard(atomic_write, self.path(SUMS), sums())
        self._guard(atomic_write, self.path(MANIFEST), manifest())
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        try:
            os.unlink(self.path(JOURNAL))
        except FileNotFoundError:
            pass
        self._guard(fsync_dir, self.root)
        try:
            self._clear_tmp()  # the copy workers' emptied folders
        except OSError:
            pass  # cleared when the drive is next opened

    def write_jobcopy(self, jobfile: str) -> bool:
        """A copy of the jobfile at ``jobfile``; False when the drive has no room for it (the
        older copy is then removed: it would tell a restore of files the drive no longer
        holds).  Raises DriveError or OutputError for any other failure."""
        self.check_present()
        for _attempt in (1, 2):
            try:
                atomic_write(self.path(JOBCOPY), read_chunks(jobfile))
                return True
            except OSError as err:
                if not is_no_space(err):
                    self.check_present()
                    raise drive_error(self.root, err) from None
            try:
                os.unlink(self.path(JOBCOPY))  # frees its room for the second try
            except FileNotFoundError:
                pass
            except OSError as err:
                raise drive_error(self.root, err) from None
        return False

    def write_record(self, name: str, data: Union[bytes, Iterable[bytes]]) -> None:
        """A record of ours at the drive's root (raises OSError as is, like write_jobcopy)."""
        self.check_present()
        atomic_write(self.path(name), data)

    def _append(self, rec: dict[str, Any]) -> None:
        self._append_text(json.dumps(rec))

    def _append_text(self, line: str) -> None:
        assert self._journal is not None, "prepare() first"
        self._guard(self._journal.write, line.encode("ascii") + b"\n")

    def _flush(self, durable: bool) -> None:
        assert self._journal is not None
        self._guard(self._journal.flush)
        if durable:
            self._guard(os.fsync, self._journal.fileno())

    def _guard(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OSError as err:
            self.check_present()  # a drive that vanished says so, whatever the error looked like
            raise drive_error(self.root, err) from None

    # -- questions ---------------------------------------------------------------

    def on_drive(self, path: str) -> Optional[str]:
        """Where ``path`` is on the drive (relative), or None for an entry the drive holds only
        in its records (a symlink on a drive without symlinks).  Below a folder stored under
        another name (``photos`` beside ``Photos`` on a drive that ignores case), a path is
        stored below that name."""
        stored = self.names.get(path)
        if stored is not None:
            return None if stored == RECORDED_ONLY else stored
        folders = self._folder_names()
        if folders:
            parent, _, name = path.rpartition("/")
            while parent:
                base = folders.get(parent)
                if base is not None:
                    return f"{base}/{escape(path[len(parent) + 1 :], self.caps)}"
                parent = parent.rpartition("/")[0]
        return escape(path, self.caps)  # directories above our entries are escaped alike

    def _folder_names(self) -> dict[str, str]:
        """Folders stored under a name of their own (disambiguated), from the stored names of
        the entries in them: a folder that only holds entries need not be an entry here."""
        if self._folders is None:
            self._folders = {}
            if self.names and not self.caps.case_sensitive:
                for path, stored in self.names.items():
                    if stored and stored != path:
                        self._learn_folders(path, stored)
        return self._folders

    def _learn_folders(self, path: str, stored: str) -> None:
        parts, got = path.split("/"), stored.split("/")
        if len(parts) != len(got):
            return
        for n in range(1, len(parts)):
            if got[n - 1] != _escape_one(parts[n - 1], self.caps):
                assert self._folders is not None
                self._folders["/".join(parts[:n])] = "/".join(got[:n])

    def name_for(self, path: str, kind: str) -> Optional[str]:
        """Choose (and remember) where a new entry goes on this drive; None: records only."""
        if path in self.held or path in self.names:
            return self.on_drive(path)
        caps = self.caps
        if kind == LINK and not caps.symlinks:
            self.names[path] = RECORDED_ONLY
            return None
        stored = self.on_drive(path)
        assert stored is not None
        if not caps.case_sensitive:
            folded = self._case_folded()
            there = folded.get(stored.casefold())
            if there is not None and there != stored:
                stored = disambiguate(stored, path)  # another entry, differing only in case
            folded[stored.casefold()] = stored
            for folder in ancestors([stored]):
                folded.setdefault(folder.casefold(), folder)
            if kind == DIR and stored != escape(path, caps):
                self._folder_names()[path] = stored
        if stored != path:
            self.names[path] = stored
        return stored

    def _case_folded(self) -> dict[str, str]:
        """On a drive that ignores case: every stored path of ours, and every folder above one,
        case-folded, to the stored path."""
        if self._folded is None:
            self._folded = {}
            for p in self.held:
                stored = self.names.get(p, p)
                if stored:
                    self._folded[stored.casefold()] = stored
            for folder in ancestors(list(self._folded.values())):
                self._folded.setdefault(folder.casefold(), folder)
        return self._folded

    def used_bytes(self, block: int) -> int:
        return self.held.file_bytes(block)

    def records_bytes(self, block: int) -> int:
        """What our own records at the drive's root take now.  Free space plus this stays the
        same when a record is rewritten larger or smaller: the capacity model counts both, so
        that what a volume offers can be known from its record alone (``--dry-run``)."""
        total = 0
        for name in (LABEL, MANIFEST, SUMS, JOBCOPY, CHANGES, LOCKFILE, JOURNAL):
            try:
                total += round_up(os.lstat(self.path(name)).st_size, block)
            except OSError:
                continue
        return total

    def blocker(self, rel: str, cache: dict[str, bool]) -> Optional[str]:
        """The first folder above ``rel`` (a path on the drive) that is not a real folder there
        (a symlink, or a file not ours), or None when the way is clear (missing folders are
        made).  Nothing is ever written, removed or changed through such a thing."""
        parts = rel.split("/")[:-1]
        for n in range(1, len(parts) + 1):
            parent = "/".join(parts[:n])
            if not _parent_is_dir(self.root, parent, cache):
                return parent
        return None

    def what_is(self, rel: str) -> str:
        """What sits at ``rel`` on the drive, in a word, for a person."""
        try:
            mode = os.lstat(self.path(rel)).st_mode
        except OSError:
            return "nothing"
        if stat.S_ISLNK(mode):
            return "symlink"
        if stat.S_ISDIR(mode):
            return "folder"
        return "file" if stat.S_ISREG(mode) else "special file"

    def occupant(
        self, rel: str, parents_ok: dict[str, bool], listings: Optional[dict[str, set[str]]] = None
    ) -> Optional[os.stat_result]:
        """``lstat`` of what sits at ``rel`` on the drive, or None if the place is free.

        Raises ``NotADirectoryError`` when a parent on the drive is not a real
        directory (a foreign file or symlink): we never write through it.

        ``listings`` caches each folder's names (case-folded): one listing a folder instead of
        one ``lstat`` a file, and a name only looked at when something like it is there (so
        a case-insensitive drive or folder still finds ``A.txt`` in the way of ``a.txt``).
        """
        parent, _, name = rel.rpartition("/")
        if parent and not _parent_is_dir(self.root, parent, parents_ok):
            raise NotADirectoryError(errno.ENOTDIR, "a parent on the drive is not a directory", rel)
        if listings is not None:
            names = listings.get(parent)
            if names is None:
                try:
                    names = {n.casefold() for n in os.listdir(self.path(parent) if parent else self.root)}
                except FileNotFoundError:
                    names = set()
                except OSError as err:
                    raise drive_error(self.root, err) from None
                listings[parent] = names
            if name.casefold() not in names:
                return None
        try:
            return os.lstat(self.path(rel))
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise
        except OSError as err:
            raise drive_error(self.root, err) from None


def _parent_is_dir(root: str, parent: str, cache: dict[str, bool]) -> bool:
    ok = cache.get(parent)
    if ok is not None:
        return ok
    grand = os.path.dirname(parent)
    if grand and not _parent_is_dir(root, grand, cache):
        cache[parent] = False
        return False
    try:
        ok = stat.S_ISDIR(os.lstat(os.path.join(root, parent)).st_mode)
    except FileNotFoundError:
        ok = True  # we will create it
    cache[parent] = ok
    return ok


def drive_error(root: str, err: OSError) -> Exception:
    if is_drive_gone(err) or err.errno in (errno.ENOENT,) and not os.path.isdir(root):
        return DriveError(
            f"the drive at {root} failed ({err.strerror}); what was committed is kept: check or "
            "reconnect the drive and run the same command again"
        )
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DriveError(
            f"the drive at {root} has no room left even for multivolumecopy's own records; "
            "free some space on it (or use another drive) and run the same command again"
        )
    if err.errno in (errno.EACCES, errno.EPERM):
        return OutputError(
            f"{root} is not writable ({err.strerror}); mount the drive read-write or run as its owner"
        )
    return DriveError(
        f"the drive at {root} failed ({err.strerror or err}); what was committed is kept: check the "
        "drive and run the same command again"
    )
