"""One mounted drive used as a volume: the parent process's view of it, and the only code that
writes the tool's records there.

The manifest is the drive's commit point: what the drive holds as of the last commit.  Between
commits the journal (:mod:`multivolumecopy.journal`) records what may be written, what was,
what was removed, and sync points; opening a drive replays it, so a crash leaves every drive
as it was or consistently updated.  A commit syncs the drive (``syncfs``) before it writes the
manifest, so the manifest never claims data a pulled drive would lose.  Everything is written
to a temporary name and renamed into place; nothing partial ever sits under a final name.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from typing import IO, Any, Optional, Union

from . import journal
from .catalog import Entry, sort_key
from .clock import now_iso
from .contents import DriveContents
from .driveformat import (
    CHANGES,
    JOBCOPY,
    JOURNAL,
    LABEL,
    LOCKFILE,
    MANIFEST,
    SUMS,
    TMPDIR,
    Label,
    ManifestState,
    entry_row,
    manifest_head,
    read_label,
    read_manifest,
    sums_line,
)
from .drivenames import StoredNames
from .errors import DriveError, OutputError
from .fsutil import (
    SyncHandle,
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
from .probe import Capabilities


class Drive:
    """A drive (or a folder) used as a volume: its label, what it holds (``contents``, by path),
    the names entries are stored under, when files were last checked (``verified``), what is
    ours of unknown content (``dirty``), and its journal while a run writes to it."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.label: Optional[Label] = None
        self.state = ManifestState()
        self.stored = StoredNames(self.state.caps, self.state.stored)
        self._lock: Optional[FileLock] = None
        self._journal: Optional[IO[bytes]] = None
        self._sync: Optional[SyncHandle] = None
        self.changed = False  # since it was opened: anything recorded, labelled or marked dirty
        self.root_id: tuple[int, int] = (0, 0)  # st_dev, st_ino of the root when opened

    # The manifest's state, by name.
    @property
    def contents(self) -> DriveContents:
        """What the drive holds, by path: the last commit, with the journal's changes since."""
        return self.state.contents

    @property
    def verified(self) -> dict[str, int]:
        """When each file's content was last read back and found intact (epoch seconds), by path."""
        return self.state.verified

    @property
    def dirty(self) -> set[str]:
        """Paths that are ours with unknown content (about to be written, or written and never
        confirmed by a sync point): rewritten if they still belong on the drive, else removed."""
        return self.state.dirty

    @property
    def caps(self) -> Capabilities:
        """What the drive's filesystem can hold (symlinks, modes, names, file sizes), as probed when
        it became a volume."""
        return self.state.caps

    @caps.setter
    def caps(self, caps: Capabilities) -> None:
        """Set what the drive can hold, for the names entries are stored under too."""
        self.changed = self.changed or caps != self.state.caps
        self.state.caps = self.stored.caps = caps

    # -- opening -----------------------------------------------------------------------

    def open(self) -> None:
        """Lock the drive, read its label, recover its state (replaying the journal of a run
        that was cut short, committing it), clear leftovers."""
        lock_path = os.path.join(self.root, LOCKFILE)
        self._lock = FileLock(lock_path, f"the drive at {self.root}")
        self._lock.acquire()
        st = os.stat(self.root)
        self.root_id = (st.st_dev, st.st_ino)
        try:
            # Opened before this run writes anything: every write error from now on reaches
            # the syncs made through it, whoever else hears of the error first.
            self._sync = SyncHandle(self.root)
            for name in (LABEL, MANIFEST, SUMS, JOBCOPY, CHANGES):
                remove_stale_temporaries(self.path(name))
            self.label = read_label(self.root)
            if self.label is not None:
                replayed = self._read_state()
                if self._clear_tmp() or replayed:
                    self.commit()
        except BaseException:
            self.close()
            raise

    def read_state(self) -> None:
        """Label, manifest and journal, replayed in memory only: for looking, not writing."""
        self.label = read_label(self.root)
        if self.label is not None:
            self._read_state()

    def _read_state(self) -> bool:
        """The manifest, then the journal folded into it; whether the journal held anything."""
        state = read_manifest(self.path(MANIFEST))
        if state is not None:
            self.state = state
            self.stored = StoredNames(state.caps, state.stored)
        try:
            with open(self.path(JOURNAL), "rb") as fh:
                records = journal.parse(fh.read())
        except FileNotFoundError:
            return False
        return journal.replay(records, self.state)

    def close(self) -> None:
        """Close the journal and let go of the drive's lock (a drive looked at and not used
        keeps nothing of ours, not even the lock file)."""
        if self._journal is not None:
            try:
                self._journal.close()
            except OSError:
                pass
            self._journal = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        if self._lock is not None:
            if self.label is None:  # removed while still held: no other run holds a lock on it
                self._lock.remove_if_made()
            self._lock.release()
            self._lock = None

    def path(self, rel: str) -> str:
        """The full path of ``rel`` (relative to the drive's root) on this drive."""
        return os.path.join(self.root, rel)

    @property
    def tmpdir(self) -> str:
        """The drive's temporary folder (``.mvcopy-tmp``), where copies are made before they are
        renamed into place; emptied at each commit and when a drive of ours is opened."""
        return os.path.join(self.root, TMPDIR)

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

    # -- writing -----------------------------------------------------------------------

    def check_present(self) -> None:
        """The drive is still the one we opened: not unmounted (the path would then lead to the
        empty mount point on another filesystem) and not replaced."""
        try:
            st = os.stat(self.root)
            same = (st.st_dev, st.st_ino) == self.root_id
        except OSError:
            same = False
        if not same:
            raise DriveError(
                f"the drive at {self.root} is gone (unmounted or replaced) in the middle of the run; "
                "what was committed is kept: mount it again and run the same command"
            )

    def write_label(self, label: Label) -> None:
        """Write ``label`` on the drive, atomically: from then on the drive is that volume of that
        job.  The drive must still be the one opened."""
        self.check_present()
        self._guard(atomic_write, self.path(LABEL), label.to_json())
        self.label = label
        self.changed = True

    def prepare(self) -> None:
        """Create the temp directory and start a journal on top of the current manifest."""
        self.check_present()
        self._guard(os.makedirs, self.tmpdir, exist_ok=True)
        if self._journal is None:
            self._journal = self._guard(open, self.path(JOURNAL), "wb", buffering=1 << 16)
            self._append(journal.header(self.state.generation))
            self._flush(durable=True)

    def intent(self, paths: list[str]) -> None:
        """Record, durably, the paths about to be written: before any of them is renamed in."""
        if paths:
            for start in range(0, len(paths), ROWS_PER_CHUNK):  # records of bounded size
                part = paths[start : start + ROWS_PER_CHUNK]
                names = {p: n for p in part if (n := self.stored.get(p)) is not None}
                self._append(journal.intent(part, names))
            self._flush(durable=True)

    def put(self, entries: list[Entry]) -> None:
        """Record finished entries (trusted once a sync point covers them)."""
        contents, dirty, verified = self.contents, self.dirty, self.verified
        for e in entries:
            contents[e.path] = e
            dirty.discard(e.path)
            verified.pop(e.path, None)
        self._append_text(journal.put(entry_row(e, None, self.stored.get(e.path)) for e in entries))

    def record_removed(self, paths: list[str]) -> None:
        """Record that ``paths`` were removed from the drive (after the unlink)."""
        for p in paths:
            self.contents.pop(p, None)
            self.dirty.discard(p)
            self.stored.forget(p)
        if paths:
            self._append(journal.removed(paths))

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
                records = journal.parse(fh.read())
        except OSError:
            return  # the commit that follows says what is wrong with the drive
        unfinished = journal.intended_not_put(records, self.contents) - self.dirty
        if unfinished:
            self.dirty.update(unfinished)
            self.changed = True

    def sync_point(self) -> None:
        """Make every put so far durable and trusted."""
        if self._journal is None:
            return
        self._flush(durable=False)
        self.check_present()
        self._guard(self._synced)
        self._append(journal.SYNC)
        self._flush(durable=True)

    def commit(self, run_number: Optional[int] = None, order: Optional[Iterable[str]] = None) -> None:
        """Sync the drive, then fold everything into a new manifest (the commit point) and its
        sums file, and start an empty journal.

        ``order``: paths in index order naming everything the drive holds (the catalog's, for
        this volume), which spares sorting a key for every path; if it leaves anything out, it
        is not used."""
        if self._journal is not None:
            self._flush(durable=False)
        self.check_present()
        self._guard(self._synced)
        state = self.state
        if run_number is not None:
            state.run = run_number
        state.generation += 1
        head = manifest_head(self.label, state.generation, state.run, now_iso(), state.caps, state.dirty)
        # Paths in index order, their rows made a chunk at a time: all of a big drive's entries
        # as tuples at once would cost twice what the drive's record takes.
        names, verified, contents = state.stored, state.verified, state.contents
        paths = [p for p in order if p in contents] if order is not None else []
        if len(paths) != len(contents):
            paths = sorted(contents, key=sort_key)

        def sums() -> Iterator[bytes]:
            for start in range(0, len(paths), ROWS_PER_CHUNK):
                part = contents.digests(paths[start : start + ROWS_PER_CHUNK])
                text = "".join([sums_line(sha256, names.get(p) or p) for p, sha256 in part])
                yield text.encode("utf-8", "surrogateescape")

        self._guard(atomic_write, self.path(SUMS), sums())
        rows = document(head, "entries", paths, lambda part: contents.manifest_rows(part, verified, names))
        self._guard(atomic_write, self.path(MANIFEST), rows)
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

    def close_unchanged(self) -> None:
        """End a visit that changed nothing (see :attr:`changed`): its manifest and sums stay as
        they are, and its journal, which holds only its header and sync points, goes."""
        assert not self.changed, "a drive that changed is committed"
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        try:
            os.unlink(self.path(JOURNAL))  # nothing in it to replay, whether or not this lasts
        except FileNotFoundError:
            pass
        except OSError as err:
            raise drive_error(self.root, err) from None
        try:
            self._clear_tmp()
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
        """A record of ours at the drive's root (raises OSError as is: the caller decides
        whether a full drive matters for it)."""
        self.check_present()
        atomic_write(self.path(name), data)

    def _append(self, rec: dict[str, Any]) -> None:
        self._append_text(json.dumps(rec), changes=rec is not journal.SYNC and rec.get("format") is None)

    def _append_text(self, line: str, changes: bool = True) -> None:
        """Add ``line`` to the journal; ``changes``: it records a change (not the header or a
        sync point)."""
        assert self._journal is not None, "prepare() first"
        self.changed = self.changed or changes
        self._guard(self._journal.write, line.encode("ascii") + b"\n")

    def _flush(self, durable: bool) -> None:
        assert self._journal is not None
        self._guard(self._journal.flush)
        if durable:
            self._guard(os.fsync, self._journal.fileno())

    def _synced(self) -> None:
        """Flush the drive, through the descriptor opened with it (see :class:`SyncHandle`)."""
        if self._sync is not None:
            self._sync.sync()
        else:
            syncfs(self.root)

    def _guard(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OSError as err:
            self.check_present()  # a drive that vanished says so, whatever the error looked like
            raise drive_error(self.root, err) from None

    # -- questions ---------------------------------------------------------------------

    def on_drive(self, path: str) -> Optional[str]:
        """Where ``path`` is on the drive (relative); None: in the records only."""
        return self.stored.on_drive(path)

    def name_for(self, path: str, kind: str) -> Optional[str]:
        """Choose (and remember) where a new entry goes on this drive; None: records only."""
        return self.stored.name_for(path, kind, self.contents)

    def used_bytes(self, block: int) -> int:
        """What the files the drive holds take on it, in ``block``-byte blocks (by its record, not by
        walking it)."""
        return self.contents.file_bytes(block)

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


def drive_error(root: str, err: OSError) -> Exception:
    """The error a run reports for ``err`` met on the drive at ``root``: it failed or is gone
    (DriveError), is full even for our own records, or is not writable (OutputError)."""
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
