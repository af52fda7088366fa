"""One volume's copy through the worker pool: the items handed out in batches, each batch's
outcomes recorded on the drive as they come back, hard links made on the drive once their
first path is there.

Every finished entry is put in the drive's journal at once, and a sync point makes them
trusted every 30 seconds or every GiB; the record of what the volume holds waits for the
volume's commit (the ledger settles it then).  The session ends when every batch is back, the
drive fills (the rest goes to the next drive), the drive fails, or the run is interrupted (what
was copied is committed first).
"""

from __future__ import annotations

import errno
import os
import time
from array import array
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING

from . import events as ev
from .catalog import FILE, Catalog, Entry
from .copier import BatchDone, CopyItem, CopyPool, Status, WorkerDied, make_batches
from .drive import drive_error
from .errors import DriveError, Interrupted
from .fsutil import Writeback, is_no_space

if TYPE_CHECKING:
    from .writer import VolumeWriter

SYNC_EVERY_SECONDS = 30.0
SYNC_EVERY_BYTES = 1 << 30
FILE_CODE = ord(FILE)


class CopySession:
    """Copies a writer's entries to its drive and records what happened to each."""

    def __init__(self, writer: VolumeWriter):
        self.writer = writer
        self.ctx = writer.ctx
        self.drive = writer.drive
        self.number = writer.rec.number
        self.full = False  # the drive filled up
        self.drive_error = ""  # the drive failed: why
        self.since_sync = 0  # bytes put since the last sync point
        self.last_sync = self.ctx.clock()

    def run(self, to_copy: list[int]) -> bool:
        """Copy ``to_copy`` (hard links to entries on this drive are linked, not copied);
        returns whether the drive filled up."""
        ctx, drive = self.ctx, self.drive
        opts = ctx.opts
        if ctx.pool is None:
            ctx.pool = CopyPool(opts.workers, opts.bwlimit, opts.idle_io)
        followers = self.linkable(to_copy)
        items = self._items(i for i in to_copy if i not in followers)
        key = f"{self.writer.rec.uuid}:{time.time_ns()}"  # new for each visit: workers forget folders
        keep = (opts.keep.owner, opts.keep.acls, opts.keep.xattrs)
        batches = make_batches(
            items, ctx.job.root, drive.root, drive.tmpdir, key, opts.hash, drive.root_id, keep
        )
        try:
            with Writeback(drive.root):
                ctx.pool.run(batches, self.handle, lambda n: ctx.emit(ev.BytesCopied(n)))
        except KeyboardInterrupt:
            self.writer.on_cut_short(True)
            raise Interrupted(
                "interrupted; everything copied so far is kept: run the same command again to continue"
            ) from None
        except WorkerDied as err:
            self.writer.on_cut_short(True)
            raise DriveError(
                f"{err}; what was copied is kept: run the same command again to continue"
            ) from None
        if self.drive_error:
            self.writer.on_cut_short(False)
            raise DriveError(
                f"the drive at {drive.root} failed ({self.drive_error}); what was committed is kept: "
                "check or reconnect the drive and run the same command again"
            )
        if followers:
            self.link(followers)
        return self.full

    def _items(self, indexes: Iterator[int]) -> Iterator[CopyItem]:
        cat, drive = self.ctx.catalog, self.drive
        paths, kinds, sizes, mtimes, modes, targets = _copy_columns(cat)
        uids, gids, xattrs = cat.uids, cat.gids, cat.xattrs
        renamed = drive.stored or drive.caps.forbidden or not drive.caps.trailing_dot_space
        item = partial(tuple.__new__, CopyItem)  # (the fields in order: a call less a file)
        for i in indexes:
            path = paths[i]
            dest = (drive.on_drive(path) or path) if renamed else None
            yield item(
                (
                    i,
                    path,
                    chr(kinds[i]),
                    sizes[i],
                    mtimes[i],
                    modes[i],
                    targets.get(i),
                    dest,
                    uids[i],
                    gids[i],
                    xattrs.get(i),
                )
            )

    def handle(self, done: BatchDone) -> bool:
        """Record a batch's outcomes; False once the drive is full or failing (stop handing out
        work)."""
        ctx, drive, writer, number = self.ctx, self.drive, self.writer, self.number
        cat = ctx.catalog
        paths, kinds, sizes, mtimes, modes, targets = _copy_columns(cat)
        actions = writer.actions
        puts: list[Entry] = []
        nbytes = told = 0
        lost_here = 0
        for i, status, size, mtime_ns, detail, reported, sha256, lost in done.outcomes:
            if status == Status.OK:
                lost_here |= lost
                if kinds[i] == FILE_CODE:  # as copied: the source may have changed since the scan
                    sizes[i] = size
                    mtimes[i] = mtime_ns
                    puts.append(
                        Entry(
                            paths[i], FILE, size, mtime_ns, modes[i], targets.get(i), sha256, meta=cat.meta(i)
                        )
                    )
                else:
                    puts.append(cat.entry(i))
                writer.written.append(i)
                nbytes += size
                told += reported
                actions["rewritten" if i in writer.rewrites else "copied"].append(paths[i])
            elif status == Status.NO_SPACE:
                self.full = True
            elif status == Status.DRIVE_ERROR:
                self.drive_error = detail
            elif status == Status.FAILED:
                ctx.fail(i, detail)
            elif status == Status.VANISHED:
                ctx.vanished.add(i)
                ctx.emit(ev.Skipped(paths[i], detail))
            elif status == Status.CONFLICT:
                where = drive.path(drive.on_drive(paths[i]) or paths[i])
                ctx.fail(
                    i,
                    f"something not put there by multivolumecopy is in its way at {where} "
                    f"(volume {number}); move it away and run the same command again",
                )
            else:
                assert status == Status.NOT_DONE, status
        if lost_here:
            writer.not_kept(lost_here)
        if puts:
            drive.put(puts)
            self._counted(puts, nbytes, told)
            self.since_sync += nbytes
            now = ctx.clock()
            if self.since_sync >= SYNC_EVERY_BYTES or now - self.last_sync >= SYNC_EVERY_SECONDS:
                drive.sync_point()
                self.since_sync = 0
                self.last_sync = now
        return not self.full and not self.drive_error

    def _counted(self, puts: list[Entry], nbytes: int, told: int) -> None:
        ctx = self.ctx
        ctx.summary.copied_files += len(puts)
        ctx.summary.copied_bytes += nbytes
        ctx.report.wrote(self.number, nbytes)
        paths = tuple(e.path for e in puts)
        ctx.emit(ev.Copied(self.number, len(puts), nbytes, max(nbytes - told, 0), paths))

    # -- hard links --------------------------------------------------------------------

    def linkable(self, to_copy: list[int]) -> dict[int, int]:
        """Hard-link followers whose leader is, or is about to be, on this drive: follower -> leader."""
        cat = self.ctx.catalog
        if not cat.targets:
            return {}
        copying = set(to_copy)
        contents = self.drive.contents
        found = {}
        for i in to_copy:
            leader = cat.leader(i)
            if leader is not None and (leader in copying or cat.paths[leader] in contents):
                found[i] = leader
        return found

    def link(self, followers: dict[int, int]) -> None:
        """Link each follower to its leader on the drive (temporary name, then rename, as for
        copies); a follower whose leader did not make it onto this drive waits with it."""
        ctx, drive, writer, number = self.ctx, self.drive, self.writer, self.number
        cat = ctx.catalog
        puts: list[Entry] = []
        linked: list[int] = []
        for i, leader in followers.items():
            held = drive.contents.get(cat.paths[leader])
            if held is None or not writer.current(leader):
                continue
            tmp = os.path.join(drive.tmpdir, f"link-{i}")
            final = drive.path(drive.on_drive(cat.paths[i]) or cat.paths[i])
            try:
                os.link(drive.path(drive.on_drive(held.path) or held.path), tmp)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.rename(tmp, final)
            except OSError as err:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                if is_no_space(err) or err.errno in (errno.EMLINK, errno.EPERM, errno.EOPNOTSUPP):
                    continue  # a drive that cannot link (or is full): the next volume copies it
                if err.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    ctx.fail(
                        i,
                        f"something not put there by multivolumecopy is in its way at {final} "
                        f"(volume {number}); move it away and run the same command again",
                    )
                    continue
                raise drive_error(drive.root, err) from None
            puts.append(held._replace(path=cat.paths[i], target=cat.paths[leader]))
            linked.append(i)
            writer.written.append(i)
        if puts:
            drive.put(puts)
            ctx.summary.copied_files += len(puts)
            for i in linked:
                writer.actions["rewritten" if i in writer.rewrites else "copied"].append(cat.paths[i])
            ctx.emit(ev.Copied(number, len(puts), 0, 0, tuple(e.path for e in puts)))


def _copy_columns(cat: Catalog) -> tuple[list[str], bytearray, array, array, array, dict[int, str]]:
    """The catalog's columns a copy item is made of (bound once, outside the per-file loops)."""
    return cat.paths, cat.kinds, cat.sizes, cat.mtimes, cat.modes, cat.targets
