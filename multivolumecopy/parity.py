"""The parity drive (``--parity 1``): the map beside the jobfile, the parity drive's records, and
bringing the parity up to date from the source.  The design, and why, is in
docs/TECHNICAL_DECISIONS.rst ("Parity"); the formats in docs/formats.rst.

Pipeline::

    ParityMap.volume_closed()   a data volume is closed: its rows (paritymap.allocate), from
                                what its drive committed; saved before the jobfile
    ParityUpdate.run()          after the data volumes of the run: ask for P1 (the swap),
                                check it, then
        record: invalid += dirty        committed before any parity byte is written
        the dirty windows               source files read and hashed, XOR-ed, written
        windows of files left out       computed again without them
        fsync, syncfs, record           the commit point: it claims only synced blocks

Only bytes that are on the data drives go into the parity: a source file is kept in it only
when its SHA-256, computed while it was read, is the one its drive's manifest recorded.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from . import clock, faults
from . import events as ev
from . import jobfile as jf
from .catalog import FILE, Entry, sort_key
from .contents import DriveContents
from .drive import Drive, drive_error
from .driveformat import PARITY, Label, read_label
from .errors import JobfileError, OutputError, UsageError
from .fsutil import atomic_write, fsync_dir, read_chunks
from .identify import no_drive_at
from .paritymap import (
    BLOCK,
    File,
    Range,
    Row,
    allocate,
    dirty,
    merge,
    over,
    overlaps,
    size_in_blocks,
    subtract,
    unprotected,
    windows,
)
from .sizes import count, format_size
from .swap import Swapper, SwapRequest

MAP_FORMAT = "multivolumecopy-parity-map"
RECORD_FORMAT = "multivolumecopy-parity"
VERSION = 1
MAP_SUFFIX = ".parity-map.json"  # beside the jobfile
MAP_COPY = ".mvcopy-parity-map.json"  # on every drive
DATA_FILE = ".mvcopy-parity-{n}.bin"  # on the parity drive
RECORD = ".mvcopy-parity.json"  # on the parity drive
RECORD_SUFFIX = ".parity-{n}.json"  # its copy beside the jobfile
NUMBER = 1  # one parity drive (XOR); two would need an erasure code
NAME = f"P{NUMBER}"
READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _rows_json(volumes: Mapping[int, Sequence[Row]]) -> dict[str, list[list[Any]]]:
    return {str(v): [list(r) for r in rows] for v, rows in sorted(volumes.items())}


def _rows_of(doc: Any) -> dict[int, list[Row]]:
    return {
        int(v): [Row(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5]) for r in rows]
        for v, rows in doc.items()
    }


def _read_doc(path: str, fmt: str, what: str) -> Optional[dict[str, Any]]:
    """The JSON record at ``path`` of format ``fmt`` (None if there is none); refuses another
    format or version, or a damaged one, in one line."""
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else "not valid JSON"
        raise JobfileError(f"the {what} {path} is unreadable ({why}); move it away") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise JobfileError(f"{path} is not a multivolumecopy {what}; move it away")
    if doc.get("version") != VERSION or doc.get("block_size") != BLOCK:
        raise JobfileError(
            f"the {what} {path} has version {doc.get('version')!r} (blocks of {doc.get('block_size')!r} "
            f"bytes); this multivolumecopy reads version {VERSION}: use the one that wrote it"
        )
    return doc


# -- the map beside the jobfile --------------------------------------------------------


@dataclass
class ParityMap:
    """The rows each volume's drive holds (its files in their runs), kept at each volume's close:
    what the parity should include.  ``drive_uuid``: the parity drive's volume id, once it has
    one."""

    job_id: str
    parity: int = NUMBER
    volumes: dict[int, list[Row]] = field(default_factory=dict)
    drive_uuid: Optional[str] = None
    updated: Optional[str] = None

    def to_json(self) -> bytes:
        doc = {
            "format": MAP_FORMAT,
            "version": VERSION,
            "job_id": self.job_id,
            "parity": self.parity,
            "block_size": BLOCK,
            "drive_uuid": self.drive_uuid,
            "updated": self.updated,
            "columns": list(Row._fields),
            "volumes": _rows_json(self.volumes),
        }
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode("ascii")

    def volume_closed(self, number: int, contents: DriveContents, forgotten: Sequence[int] = ()) -> None:
        """Volume ``number``'s drive committed ``contents``: its rows follow (runs kept stable).
        A hard link after the first of its group has no row while the drive holds that first
        with the same bytes (on the drive it is the same file, and a rebuild links it to it)."""
        files = [e for e in (contents[p] for p in contents.paths_of_kind(FILE)) if not _linked(contents, e)]
        files.sort(key=lambda e: sort_key(e.path))
        self.volumes[number] = allocate(
            self.volumes.get(number, []), (File(e.path, e.size, e.mtime_ns, e.sha256) for e in files)
        )
        for v in forgotten:
            self.volumes.pop(v, None)  # given up: its files are placed again elsewhere
        self.updated = clock.now_iso()


def _linked(contents: DriveContents, e: Entry) -> bool:
    """Whether the drive holds ``e`` as a hard link to a file it still holds with the same bytes
    (the first of its group gone, its path left is a file of its own, with a row)."""
    first = contents.get(e.target) if e.target else None
    return first is not None and first.kind == FILE and (first.size, first.sha256) == (e.size, e.sha256)


def map_path(jobfile: str) -> str:
    """Where the map of the job at ``jobfile`` is kept."""
    return os.path.abspath(jobfile) + MAP_SUFFIX


def load_map(jobfile: str, job_id: str) -> Optional[ParityMap]:
    """The job's parity map, or None when the job has no parity (never run with ``--parity``)."""
    path = map_path(jobfile)
    doc = _read_doc(path, MAP_FORMAT, "parity map")
    if doc is None:
        return None
    if doc.get("job_id") != job_id:
        raise JobfileError(f"the parity map {path} is of another job; move it away")
    try:
        return ParityMap(
            job_id=job_id,
            parity=int(doc["parity"]),
            volumes=_rows_of(doc["volumes"]),
            drive_uuid=doc.get("drive_uuid"),
            updated=doc.get("updated"),
        )
    except (KeyError, TypeError, ValueError, IndexError):
        raise JobfileError(f"the parity map {path} is damaged; move it away") from None


def save_map(jobfile: str, pmap: ParityMap) -> None:
    """Save the map beside the jobfile, atomically."""
    try:
        atomic_write(map_path(jobfile), pmap.to_json())
    except OSError as err:
        raise JobfileError(f"cannot write the parity map {map_path(jobfile)}: {err.strerror}") from None


def copy_map(drive: Drive, jobfile: str) -> bool:
    """A copy of the map on ``drive`` (False when there is no room: an older copy is removed)."""
    try:
        drive.write_record(MAP_COPY, read_chunks(map_path(jobfile)))
        return True
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise drive_error(drive.root, err) from None
    try:
        os.unlink(drive.path(MAP_COPY))
    except OSError:
        pass
    return False


# -- the parity drive's record ---------------------------------------------------------


@dataclass
class ParityRecord:
    """What the parity drive holds: for each volume, the rows whose bytes its parity includes;
    ``invalid``, the blocks whose parity is not known; ``left_out``, the files it could not
    include last time, and why."""

    job_id: str
    uuid: str
    generation: int = 0
    updated: Optional[str] = None
    blocks: int = 0
    invalid: list[Range] = field(default_factory=list)
    volumes: dict[int, list[Row]] = field(default_factory=dict)
    left_out: list[tuple[int, str, str]] = field(default_factory=list)  # volume, path, why

    def to_json(self) -> bytes:
        doc = {
            "format": RECORD_FORMAT,
            "version": VERSION,
            "job_id": self.job_id,
            "parity": NUMBER,
            "uuid": self.uuid,
            "block_size": BLOCK,
            "generation": self.generation,
            "updated": self.updated,
            "blocks": self.blocks,
            "invalid": [list(r) for r in self.invalid],
            "left_out": [list(x) for x in self.left_out],
            "columns": list(Row._fields),
            "volumes": _rows_json(self.volumes),
        }
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode("ascii")


def read_record(path: str) -> Optional[ParityRecord]:
    """The parity record at ``path`` (on the parity drive, or its copy beside the jobfile)."""
    doc = _read_doc(path, RECORD_FORMAT, "parity record")
    if doc is None:
        return None
    try:
        return ParityRecord(
            job_id=str(doc["job_id"]),
            uuid=str(doc["uuid"]),
            generation=int(doc["generation"]),
            updated=doc.get("updated"),
            blocks=int(doc["blocks"]),
            invalid=[(int(a), int(b)) for a, b in doc["invalid"]],
            volumes=_rows_of(doc["volumes"]),
            left_out=[(int(v), str(p), str(why)) for v, p, why in doc.get("left_out", [])],
        )
    except (KeyError, TypeError, ValueError, IndexError):
        raise JobfileError(f"the parity record {path} is damaged; move it away") from None


def record_copy_path(jobfile: str) -> str:
    """Where the copy of the parity drive's record is kept beside the jobfile."""
    return os.path.abspath(jobfile) + RECORD_SUFFIX.format(n=NUMBER)


def parity_label(label: Optional[Label]) -> bool:
    return label is not None and label.role == PARITY


# -- bringing the parity drive up to date ----------------------------------------------


@dataclass
class ParityResult:
    """What one update did: blocks computed, files read, those left out (volume, path, why)."""

    computed: int = 0
    files_read: int = 0
    left_out: list[tuple[int, str, str]] = field(default_factory=list)
    invalid: list[Range] = field(default_factory=list)


class _Refused(Exception):
    pass


def current_record(jobfile: str, pmap: ParityMap) -> Optional[ParityRecord]:
    """The copy beside the jobfile of the parity drive's record, if it is the record of the
    job's parity drive (not of one replaced since: ``--replace-volume P1``)."""
    rec = read_record(record_copy_path(jobfile))
    if rec is not None and pmap.drive_uuid not in (None, rec.uuid):
        return None
    return rec


def replaced_uuid(jobfile: str, pmap: ParityMap) -> Optional[str]:
    """``--replace-volume P1``: the volume id of the parity drive it replaces (refused from
    now on), or None when the job's parity drive never completed an update (a replacement cut
    short: that drive, or a blank one, finishes it)."""
    rec = read_record(record_copy_path(jobfile))
    if rec is not None and rec.uuid == pmap.drive_uuid:
        return rec.uuid
    return None


def needs_update(jobfile: str, pmap: ParityMap) -> bool:
    """Whether the parity drive, by the copy of its record beside the jobfile, lags the map."""
    rec = current_record(jobfile, pmap)
    wanted = protectable(pmap.volumes)
    if rec is None:
        return any(wanted.values())
    return bool(dirty(rec.volumes, wanted, rec.invalid)) or any(
        unprotected(rows, rec.volumes.get(v, []), rec.invalid)[0] for v, rows in wanted.items()
    )


class ParityUpdate:
    """Brings the parity drive up to date with the map, after the data volumes of a run."""

    def __init__(
        self,
        job: jf.Job,
        jobfile: str,
        pmap: ParityMap,
        emit: ev.Emit,
        swapper: Swapper,
        outputs: list[str],
        replace: bool = False,
    ):
        self.job = job
        self.jobfile = os.path.abspath(jobfile)
        self.pmap = pmap
        self.emit = emit
        self.swapper = swapper
        self.outputs = outputs
        self.replace = replace  # --replace-volume P1: a blank drive becomes the parity drive
        self.replaced = replaced_uuid(jobfile, pmap) if replace else None

    def run(self) -> ParityResult:
        """Find the parity drive (given with ``-o``, else asked for through the swap), then bring
        it up to date.  Raises :class:`SwapNeeded` when stopped at the swap."""
        out, drive = self._find()
        try:
            return self._update(drive)
        finally:
            drive.close()

    def _find(self) -> tuple[str, Drive]:
        for out in self.outputs:
            try:
                label = read_label(out)  # the label alone: a data drive's manifest is not read
            except (OSError, OutputError):
                continue
            if parity_label(label) or (self.replace and label is None):
                try:
                    return out, self._take(out)
                except _Refused as why:
                    self.emit(ev.DriveRefused(out, str(why)))
        out = self.outputs[-1]
        refusal: Optional[str] = None
        message = f"insert the parity drive {NAME} (a blank drive becomes {NAME}) at {out}"
        if self.replace:
            message = f"insert a blank drive at {out}: it becomes the parity drive {NAME} (--replace-volume)"
        elif self.pmap.drive_uuid is not None:
            message = f"insert the parity drive {NAME} at {out}"
        while True:
            self.emit(ev.WaitingForDrive(out, message, (), NAME))
            self.swapper.request(SwapRequest(out, message, None, NAME, self.jobfile, refusal))
            try:
                return out, self._take(out)
            except _Refused as why:
                refusal = str(why)
                self.emit(ev.DriveRefused(out, refusal))

    def _take(self, out: str) -> Drive:
        """The parity drive at ``out``, open and locked, labelled if it was blank; or _Refused."""
        missing = no_drive_at(self.job, out)
        if missing:
            raise _Refused(missing)
        drive = Drive(out)
        try:
            drive.open()
        except OSError as err:
            raise drive_error(out, err) from None
        try:
            self._check(drive)
        except BaseException:
            drive.close()
            raise
        return drive

    def _check(self, drive: Drive) -> None:
        label = drive.label
        job = self.job
        if label is None:
            if self.pmap.drive_uuid is not None and not self.replace:
                raise _Refused(
                    f"it is a blank drive, but the job's parity drive {NAME} exists; insert it "
                    f"(if it is lost: --replace-volume {NAME} makes a blank drive the new one)"
                )
            self._check_size(drive)
            label = Label(job.job_id, NUMBER, clock.new_id(), clock.now_iso(), job.root, role=PARITY)
            if self.replace:  # the map first: the drive replaced is refused from now on
                self.pmap.drive_uuid = label.volume_uuid
                save_map(self.jobfile, self.pmap)
            drive.write_label(label)
        elif label.job_id != job.job_id:
            raise _Refused(f"it is a drive of another job ({label.job_id[:8]}); insert parity drive {NAME}")
        elif label.role != PARITY:
            raise _Refused(f"it is volume {label.volume}, a data drive; insert the parity drive {NAME}")
        elif self.replaced == label.volume_uuid:
            raise _Refused(
                f"it is the parity drive {NAME} being replaced (--replace-volume {NAME}); "
                "insert a blank drive"
            )
        elif self.pmap.drive_uuid not in (None, label.volume_uuid):
            raise _Refused(
                f"it is a replaced parity drive of this job (another volume id than {NAME}'s); set it "
                "aside, or wipe it to use it as a blank drive"
            )
        if self.pmap.drive_uuid != label.volume_uuid:
            self.pmap.drive_uuid = label.volume_uuid
            save_map(self.jobfile, self.pmap)  # learnt (a blank drive labelled, or a crash after it)
        self._check_size(drive)

    def _check_size(self, drive: Drive) -> None:
        """Refuse (exit 5, one line) a drive that cannot hold the parity and its records."""
        need = size_in_blocks(self.pmap.volumes) * BLOCK
        st = os.statvfs(drive.root)
        have = st.f_bavail * st.f_frsize
        try:
            have += os.stat(drive.path(DATA_FILE.format(n=NUMBER))).st_blocks * 512
        except FileNotFoundError:
            pass
        records = 2 * (len(self.pmap.to_json()) * 2 + os.path.getsize(self.jobfile)) + (64 << 10)
        if need + records > have:
            raise OutputError(
                f"the drive at {drive.root} is too small for the parity drive {NAME}: the parity "
                f"needs {format_size(need + records)}, the drive offers {format_size(have)}; use a "
                "bigger drive, or keep the data volumes smaller with --volume-size"
            )

    def _update(self, drive: Drive) -> ParityResult:
        assert drive.label is not None
        path = drive.path(RECORD)
        rec = read_record(path) or ParityRecord(self.job.job_id, drive.label.volume_uuid)
        if rec.job_id != self.job.job_id or rec.uuid != drive.label.volume_uuid:
            raise OutputError(f"the parity record {path} is not this drive's; move it away")
        wanted = protectable(self.pmap.volumes)
        blocks = size_in_blocks(self.pmap.volumes)
        changed = dirty(rec.volumes, wanted, rec.invalid)
        todo = [(a, min(b, blocks)) for a, b in changed if a < blocks]
        result = ParityResult()
        data_path = drive.path(DATA_FILE.format(n=NUMBER))
        if todo or blocks != rec.blocks:
            # The commit before: nothing about to be written (or cut off the end) is claimed.
            rec.invalid = merge(rec.invalid + changed + [(min(blocks, rec.blocks), max(blocks, rec.blocks))])
            self._commit(drive, rec)
            faults.point("parity:marked")
            try:
                fd = os.open(data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                raise drive_error(drive.root, err) from None
            try:
                if os.fstat(fd).st_size != blocks * BLOCK:
                    drive._guard(os.ftruncate, fd, blocks * BLOCK)
                included = self._compute(drive, fd, todo, result)
                faults.point("parity:written")
                drive._guard(os.fsync, fd)
            finally:
                os.close(fd)
            drive._guard(drive._synced)
            rec.volumes = {
                v: [r for r in rows if not r.nblocks or not overlaps(todo, r.start, r.stop) or r in included]
                for v, rows in wanted.items()
            }
            rec.invalid = result.invalid
            rec.blocks = blocks
            rec.left_out = result.left_out
            result.computed = sum(b - a for a, b in todo)
        else:
            rec.volumes = {v: list(rows) for v, rows in wanted.items()}  # paths renamed in place
        self._commit(drive, rec)
        self._copies(drive, rec)
        return result

    def _commit(self, drive: Drive, rec: ParityRecord) -> None:
        rec.generation += 1
        rec.updated = clock.now_iso()
        drive._guard(atomic_write, drive.path(RECORD), rec.to_json())

    def _copies(self, drive: Drive, rec: ParityRecord) -> None:
        """The map and the jobfile on the parity drive too; its record beside the jobfile."""
        copy_map(drive, self.jobfile)
        drive.write_jobcopy(self.jobfile)
        try:
            atomic_write(record_copy_path(self.jobfile), rec.to_json())
        except OSError as err:
            raise JobfileError(f"cannot write {record_copy_path(self.jobfile)}: {err.strerror}") from None
        fsync_dir(drive.root)

    # -- the computation ---------------------------------------------------------------

    def _compute(self, drive: Drive, fd: int, todo: list[Range], result: ParityResult) -> set[Row]:
        """Write the parity of the blocks ``todo``; returns the rows kept in it.  Files whose
        source is not what their drive holds are left out (result.left_out), and the windows
        they were XOR-ed into computed again without them."""
        root = self.job.root
        rows = {v: over(rows, todo) for v, rows in protectable(self.pmap.volumes).items()}
        good: set[Row] = set()
        tainted: list[Range] = []
        stale: list[Range] = []
        stats: dict[Row, tuple[int, int]] = {}
        for v, vrows in self.pmap.volumes.items():
            for r in vrows:
                if r.sha256 is None:
                    result.left_out.append((v, r.path, "no SHA-256 recorded for it (--no-hash, or adopted)"))
        sources: dict[int, Optional[_Source]] = {}
        nexts = {v: 0 for v in rows}

        def finish(v: int, src: _Source) -> None:
            why = src.finish()
            if why is None:
                good.add(src.row)
                stats[src.row] = src.stat
                result.files_read += 1
            else:
                result.left_out.append((v, src.row.path, why))
                tainted.extend(src.xored)
                # Its blocks not computed now still hold its bytes, which the record will no
                # longer say the parity includes: not known until computed without it.
                stale.extend(subtract([(src.row.start, src.row.stop)], todo))

        for a, b in windows(todo):
            buf = bytearray((b - a) * BLOCK)
            for v, vrows in rows.items():
                while True:
                    src = sources.get(v)
                    if src is None:
                        k = nexts[v]
                        if k >= len(vrows) or vrows[k].start >= b:
                            break
                        nexts[v] = k + 1
                        if vrows[k].sha256 is None:
                            continue
                        src = sources[v] = _Source(root, vrows[k])
                    r = src.row
                    lo, hi = max(a, r.start), min(b, r.stop)
                    if lo < hi:
                        src.xor_into(buf, (lo - a) * BLOCK, lo, hi)
                    if r.stop <= b:
                        finish(v, src)
                        sources[v] = None
                    else:
                        break
            _pwrite(drive, fd, buf, a * BLOCK)
        for v, src in sources.items():
            if src is not None:
                finish(v, src)
        if tainted:
            result.invalid = self._again(drive, fd, merge(tainted), rows, good, stats)
        result.invalid = merge(result.invalid + stale)
        return good

    def _again(
        self,
        drive: Drive,
        fd: int,
        tainted: list[Range],
        rows: Mapping[int, Sequence[Row]],
        good: set[Row],
        stats: Mapping[Row, tuple[int, int]],
    ) -> list[Range]:
        """Compute the ``tainted`` windows again from the files kept (each checked to be as it
        was when read whole); returns what could not be, left invalid."""
        invalid: list[Range] = []
        for a, b in windows(tainted):
            buf = bytearray((b - a) * BLOCK)
            ok = True
            for vrows in rows.values():
                for r in vrows:
                    if r not in good or not overlaps([(a, b)], r.start, r.stop):
                        continue
                    lo, hi = max(a, r.start), min(b, r.stop)
                    if not _read_again(self.job.root, r, stats[r], buf, (lo - a) * BLOCK, lo, hi):
                        ok = False
            if ok:
                _pwrite(drive, fd, buf, a * BLOCK)
            else:
                invalid.append((a, b))
        return merge(invalid)


class _Source:
    """One source file read for the parity, from its start, hashed as it is read."""

    def __init__(self, root: str, row: Row):
        self.row = row
        self.digest = hashlib.sha256()
        self.pos = 0
        self.error: Optional[str] = None
        self.xored: list[Range] = []
        self.stat = (0, 0)
        self.fd = -1
        try:
            self.fd = os.open(os.path.join(root, row.path), READ)
            st = os.fstat(self.fd)
            self.stat = (st.st_size, st.st_mtime_ns)
        except OSError as err:
            self.error = f"cannot read it from the source: {err.strerror}"

    def _read(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the file), hashed."""
        out = []
        while n > 0 and self.error is None:
            try:
                chunk = os.read(self.fd, min(n, 1 << 20))
            except OSError as err:
                self.error = f"cannot read it from the source: {err.strerror}"
                break
            if not chunk:
                break
            self.digest.update(chunk)
            self.pos += len(chunk)
            n -= len(chunk)
            out.append(chunk)
        return b"".join(out)

    def xor_into(self, buf: bytearray, at: int, lo: int, hi: int) -> None:
        """XOR the file's blocks ``[lo, hi)`` into ``buf`` at ``at`` (reading what comes
        before them too, for the hash)."""
        if self.error is not None:
            return
        offset = (lo - self.row.start) * BLOCK
        while self.pos < offset and self.error is None:
            if not self._read(min(offset - self.pos, 1 << 20)):
                break
        data = self._read((hi - lo) * BLOCK)
        if data:
            xor_into(buf, at, data)
            self.xored.append((lo, hi))

    def finish(self) -> Optional[str]:
        """Read to the end; None if what was read is what the drive holds, else why not."""
        while self.error is None and self._read(1 << 20):
            pass
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.error is not None:
            return self.error
        if self.pos != self.row.size or self.digest.hexdigest() != self.row.sha256:
            return "its source differs from the copy on its drive (changed since that drive was written)"
        return None


def _read_again(root: str, r: Row, was: tuple[int, int], buf: bytearray, at: int, lo: int, hi: int) -> bool:
    try:
        fd = os.open(os.path.join(root, r.path), READ)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (st.st_size, st.st_mtime_ns) != was:
            return False
        data = os.pread(fd, (hi - lo) * BLOCK, (lo - r.start) * BLOCK)
        if (os.fstat(fd).st_size, os.fstat(fd).st_mtime_ns) != was:
            return False
    except OSError:
        return False
    finally:
        os.close(fd)
    xor_into(buf, at, data)
    return True


_NUMPY: list[Any] = []  # numpy, once looked for (imported only when a parity is computed)


def _numpy() -> Any:
    if not _NUMPY:
        try:
            import numpy

            _NUMPY.append(numpy)
        except ImportError:
            _NUMPY.append(None)
    return _NUMPY[0]


def xor_into(buf: bytearray, at: int, data: bytes) -> None:
    """``buf[at:at + len(data)] ^= data``: with numpy when it is installed (34 GB/s here), else
    with Python's integers XOR-ed whole (240 MB/s: about a USB hard disk's speed)."""
    n = len(data)
    np = _numpy()
    if np is not None and n:
        target = np.frombuffer(buf, dtype=np.uint8, count=n, offset=at)
        np.bitwise_xor(target, np.frombuffer(data, dtype=np.uint8), out=target)
        return
    mixed = int.from_bytes(buf[at : at + n], "little") ^ int.from_bytes(data, "little")
    buf[at : at + n] = mixed.to_bytes(n, "little")


def _pwrite(drive: Drive, fd: int, data: Union[bytes, bytearray], offset: int) -> None:
    view = memoryview(data)
    while view:
        n = drive._guard(os.pwrite, fd, view, offset)
        view = view[n:]
        offset += n


def pread_exact(fd: int, n: int, offset: int) -> bytes:
    """``n`` bytes at ``offset`` (zeros past the end of the file)."""
    parts = []
    got = 0
    while got < n:
        chunk = os.pread(fd, min(n - got, 1 << 20), offset + got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    data = b"".join(parts)
    return data + bytes(n - len(data))


def describe_left_out(left_out: Sequence[tuple[int, str, str]], pmap: ParityMap) -> Iterator[str]:
    """Lines for a person: what the parity does not protect, by volume."""
    sizes = {(v, r.path): r.size for v, rows in pmap.volumes.items() for r in rows}
    by_volume: dict[int, list[tuple[str, str]]] = {}
    for v, p, why in left_out:
        by_volume.setdefault(v, []).append((p, why))
    for v, items in sorted(by_volume.items()):
        nbytes = sum(sizes.get((v, p), 0) for p, _ in items)
        yield (
            f"parity {NAME} does not protect {count(len(items), 'file')} ({format_size(nbytes)}) of "
            f"volume {v}: {items[0][0]}: {items[0][1]}" + (" (and others)" if len(items) > 1 else "")
        )


def protectable(volumes: Mapping[int, Sequence[Row]]) -> dict[int, list[Row]]:
    """The rows the parity can include: those with a recorded SHA-256 (the source is checked
    against it)."""
    return {v: [r for r in rows if r.sha256 is not None] for v, rows in volumes.items()}


class ParityJob:
    """A backup run's side of the parity: the map, kept as volumes close, and the parity
    drive's update at the end of the run."""

    def __init__(self, jobfile: str, pmap: ParityMap, replace: bool = False):
        self.jobfile = os.path.abspath(jobfile)
        self.pmap = pmap
        self.replace = replace  # --replace-volume P1

    @classmethod
    def for_run(cls, level: int, job: jf.Job, jobfile: str, replace: bool = False) -> Optional[ParityJob]:
        """The run's parity, or None for a job without (``level`` 0 and no map beside the
        jobfile: a job that had ``--parity`` keeps it).  ``replace``: ``--replace-volume P1``."""
        pmap = load_map(jobfile, job.job_id)
        if pmap is None:
            if replace:
                raise UsageError(
                    f"--replace-volume {NAME}: this job has no parity drive to replace; --parity 1 makes one"
                )
            if not level:
                return None
            pmap = ParityMap(job.job_id)
        return cls(jobfile, pmap, replace)

    def unmapped(self, job: jf.Job) -> set[int]:
        """The job's volumes the map does not know yet (a job given ``--parity`` after them):
        their drives hold the hashes the parity needs, so the run visits each once."""
        held = set(job.catalog.volumes)
        return {
            v
            for v, rec in job.volumes.items()
            if v not in self.pmap.volumes and not rec.forgotten and rec.capacity and v in held
        }

    def volume_closed(self, job: jf.Job, number: int, drive: Drive) -> None:
        """Volume ``number`` is committed: its rows follow what its drive holds; the map is saved,
        and copied onto the drive (before the drive's copy of the jobfile)."""
        forgotten = [v for v, rec in job.volumes.items() if rec.forgotten]
        self.pmap.volume_closed(number, drive.contents, forgotten)
        save_map(self.jobfile, self.pmap)
        copy_map(drive, self.jobfile)

    def finish(self, job: jf.Job, swapper: Swapper, emit: ev.Emit, outputs: list[str]) -> None:
        """Bring the parity drive up to date if it lags the map (asking for it).  Raises
        :class:`SwapNeeded` when stopped at the swap."""
        save_map(self.jobfile, self.pmap)  # a job given --parity now has a map
        if not self.replace and not needs_update(self.jobfile, self.pmap):
            return
        result = ParityUpdate(job, self.jobfile, self.pmap, emit, swapper, outputs, self.replace).run()
        emit(
            ev.Note(
                f"parity drive {NAME} updated: {format_size(result.computed * BLOCK)} of parity computed "
                f"from {count(result.files_read, 'source file')}"
            )
        )
        for line in describe_left_out(result.left_out, self.pmap):
            emit(ev.Note(line))
        if result.invalid:
            nbytes = sum(b - a for a, b in result.invalid) * BLOCK
            emit(
                ev.Note(
                    f"parity {NAME}: {format_size(nbytes)} of parity could not be computed (a file "
                    "changed while it was read); the next run computes it again"
                )
            )


def parity_status(job: jf.Job, jobfile: str) -> Optional[dict[str, Any]]:
    """For ``--status``: whether the parity is current, and what of each volume it does not
    protect, and why (from the map and the copy of the parity drive's record beside the
    jobfile); None for a job without parity."""
    pmap = load_map(jobfile, job.job_id)
    if pmap is None:
        return None
    rec = current_record(jobfile, pmap)
    included = rec.volumes if rec is not None else {}
    invalid = rec.invalid if rec is not None else []
    left = {(v, p): why for v, p, why in rec.left_out} if rec is not None else {}
    cat = job.catalog
    volumes: dict[str, dict[str, Any]] = {}
    for v, vrec in sorted(job.volumes.items()):
        if vrec.forgotten:
            continue
        rows = pmap.volumes.get(v)
        why: set[str] = set()
        if rows is None:
            on = [i for i in cat.indexes_on(v) if cat.kinds[i] == ord(FILE)]
            files, nbytes = len(on), sum(cat.sizes[i] for i in on)
            if files:
                why.add("its drive was not updated since the job has parity")
        else:
            missing, broken = unprotected(rows, included.get(v, []), invalid)
            files, nbytes = len(missing) + len(broken), sum(r.size for r in missing + broken)
            for r in missing:
                if r.sha256 is None:
                    why.add("no SHA-256 recorded (--no-hash, or adopted)")
                else:
                    why.add(left.get((v, r.path), f"the parity drive {NAME} was not updated since"))
            if broken:
                why.add(f"an update of {NAME} was cut short")
        volumes[str(v)] = {"unprotected_files": files, "unprotected_bytes": nbytes, "why": sorted(why)}
    return {
        "drive": NAME,
        "current": not any(x["unprotected_files"] for x in volumes.values()),
        "updated": rec.updated if rec is not None else None,
        "volumes": volumes,
    }
