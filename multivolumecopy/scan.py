"""Scanning the sources: first stage of the pipeline.

Turns the source arguments into a common *root* (what a restore copies back
onto) and a sorted :class:`~multivolumecopy.catalog.Catalog` of every
directory, regular file and symlink below them, with each entry's owner and group and, as
far as the job keeps them, its ACLs and extended attributes (one ``listxattr`` an entry, and a
``getxattr`` an attribute found).  Symlinks are recorded, never followed; sockets, fifos and
devices are reported and left out.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import stat
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .catalog import DIR, FILE, LINK, Catalog, sort_key
from .errors import SourceError
from .fsutil import die_with_parent, give_back_free_memory
from .fsutil import inside as _inside
from .metadata import KEEP_ALL, UNKNOWN_ID, Keep
from .metadata import read as read_xattrs
from .patterns import Excluder
from .specials import SPECIAL

SkipCallback = Callable[[str, str, bool], None]  # path, why, whether it is not saved (a failure)


@dataclass(frozen=True)
class Sources:
    """The source arguments, resolved: their common ``root`` (catalog paths are relative to it),
    and each source's absolute path."""

    root: str
    paths: tuple[str, ...]  # absolute, normalised


def resolve_sources(args: Iterable[str]) -> Sources:
    """Check the source arguments and find their common root.

    One directory: its contents go to the drive's root.  Otherwise paths on
    the drive are relative to the sources' common parent.
    """
    paths: list[str] = []
    for arg in args:
        path = os.path.abspath(arg)
        if not os.path.lexists(path):
            raise SourceError(f"source {arg} does not exist; check the path or mount the fileserver")
        if not os.path.exists(path):
            raise SourceError(f"source {arg} is a broken symlink; give the directory it should point to")
        mode = os.stat(path).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise SourceError(f"source {arg} is neither a directory nor a regular file; leave it out")
        if not os.access(path, os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)):
            raise SourceError(
                f"source {arg} is not readable (permission denied); run as a user who can read it"
            )
        paths.append(path)
    if not paths:
        raise SourceError("no source given; name at least one directory or file to back up")
    real = [os.path.realpath(p) for p in paths]
    for i, a in enumerate(real):
        for j, b in enumerate(real):
            if i >= j:
                continue
            if a == b:
                raise SourceError(f"sources {paths[i]} and {paths[j]} are the same; give each source once")
            inner, outer = (paths[i], paths[j]) if _inside(a, b) else (paths[j], paths[i])
            if _inside(a, b) or _inside(b, a):
                raise SourceError(
                    f"source {inner} is inside source {outer} and would land on the drive twice; "
                    "give only the outer one, or use --exclude"
                )
    if len(paths) == 1 and os.path.isdir(paths[0]):
        root = paths[0]
    elif len(paths) == 1:
        root = os.path.dirname(paths[0])
    else:
        root = os.path.commonpath(paths)
    return Sources(root=root, paths=tuple(paths))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def scan(
    sources: Sources,
    exclude: Iterable[str] = (),
    on_skip: Optional[SkipCallback] = None,
    one_file_system: bool = False,
    processes: int = 1,
    keep: Keep = KEEP_ALL,
) -> Catalog:
    """Walk every source and return the catalog, already in index order.

    Each folder is listed once, its entries sorted by name, and walked depth-first: that
    order is the catalog's sort order (``/`` before every other character), so no sort of
    the whole tree is needed.  Columns are filled as the walk goes; no object per entry.

    Files with more than one link to the same inode form a hard-link group: every member
    but the first (in index order) gets the first's path as its ``target``, so a drive holding
    both can link them instead of storing the data twice.

    With ``processes`` above 1 the folders below the top levels are shared out among this
    process and forked helpers (see :class:`Scan`); the catalog is the same.
    """
    with Scan(sources, exclude, on_skip, one_file_system, processes, keep) as scanning:
        return scanning.result()


# A piece of the catalog walked by one process: its columns, its hard-linked files as
# (position, device, inode) for the leaders to be chosen in index order once the pieces are
# joined, and what it left out as (path, why, not saved) for on_skip.
Piece = tuple[Catalog, list[tuple[int, int, int]], list[tuple[str, str, bool]]]
Task = tuple[str, str, int]  # a folder whose contents a process walks: path, relative path, device

_NUMBERS = ("sizes", "mtimes", "modes", "inodes", "uids", "gids")  # (volumes come after)
TOKEN = 4  # bytes of a task number in the token pipe
MAX_TOKENS = 8192  # 32 KiB of tokens: the pipe (64 KiB) takes them all before anyone reads


class Scan:
    """A scan under way, shared among ``processes`` processes.

    The top levels of the tree are walked here first, down to where there are enough folders
    (*tasks*) to share; the catalog is then the walked pieces with each task's contents in its
    place.  Helpers are forked and take task numbers from a pipe filled beforehand (a read of 4
    bytes from a pipe is one token: no lock), as does this process in :meth:`result`, so
    whoever is free takes the next folder, and the caller can do other work (read the jobfile)
    between starting the scan and asking for its result.  A helper that dies is not waited
    for: the tasks it took and did not return are walked here again.
    """

    def __init__(
        self,
        sources: Sources,
        exclude: Iterable[str] = (),
        on_skip: Optional[SkipCallback] = None,
        one_file_system: bool = False,
        processes: int = 1,
        keep: Keep = KEEP_ALL,
    ):
        self.skip = on_skip or (lambda path, why, failed: None)
        self.excluded = Excluder(exclude)
        self.one_file_system = one_file_system
        self.keep = keep
        self.pieces: list[Piece] = []
        self.tasks: list[Task] = []
        self.helpers: list[tuple[int, int]] = []  # (pid, read end of its result pipe)
        self.tokens = -1  # read end of the pipe of task numbers, once helpers run
        self.per_token = 1  # tasks a number stands for (a pipe holds only so many numbers)
        walk = self._walk(None)
        if processes > 1:
            # Deep enough for a few folders a process, so that one big folder does not leave
            # the others idle; at most three levels, walked here before the helpers start.
            for depth in (1, 2, 3):
                deeper = self._walk(depth)
                deeper.all(sources)
                if depth > 1 and len(deeper.tasks) <= len(walk.tasks):
                    break  # a level down shares no better (one flat folder, say)
                walk = deeper
                if len(walk.tasks) >= 4 * processes or not walk.tasks:
                    break
        else:
            walk.all(sources)
        walk.close_piece()
        self.pieces, self.tasks, self.layout = walk.pieces, walk.tasks, walk.layout
        if len(self.tasks) > 1:
            try:
                self._start_helpers(min(processes, len(self.tasks)) - 1)
            except BaseException:
                self.close()  # a fork that failed: no helper started so far is left running
                raise

    def _walk(self, depth: Optional[int]) -> _Walk:
        return _Walk(self.excluded, self.one_file_system, depth, self.keep)

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_helpers(self, count: int) -> None:
        if count < 1:
            return
        self.per_token = -(-len(self.tasks) // MAX_TOKENS)
        tokens = -(-len(self.tasks) // self.per_token)
        read, write = os.pipe()
        os.write(write, b"".join(n.to_bytes(TOKEN, "little") for n in range(tokens)))
        os.close(write)  # taken tokens are not put back: an empty pipe reads as the end
        self.tokens = read
        for _ in range(count):
            result_read, result_write = os.pipe()
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:  # the helper: walk, send the pieces, and never return into the caller
                status = 1
                try:
                    os.close(result_read)
                    die_with_parent(parent)
                    done = self._take_tasks()
                    with os.fdopen(result_write, "wb") as out:
                        pickle.dump(done, out, protocol=pickle.HIGHEST_PROTOCOL)
                    status = 0
                finally:
                    os._exit(status)
            os.close(result_write)
            self.helpers.append((pid, result_read))

    def _take_tasks(self) -> dict[int, Piece]:
        done: dict[int, Piece] = {}
        while True:
            token = os.read(self.tokens, TOKEN) if self.tokens >= 0 else b""
            if len(token) < TOKEN:
                return done
            first = int.from_bytes(token, "little") * self.per_token
            for n in range(first, min(first + self.per_token, len(self.tasks))):
                done[n] = self._run(n)

    def _run(self, n: int) -> Piece:
        walk = self._walk(None)
        walk.dir(*self.tasks[n])
        walk.close_piece()
        return walk.pieces[0]

    def result(self) -> Catalog:
        """Walk the tasks no helper took, gather the helpers' work, and join it all in order."""
        done = self._take_tasks()
        while self.helpers:
            pid, result_read = self.helpers[0]
            try:
                with os.fdopen(result_read, "rb", closefd=False) as fh:
                    done.update(pickle.load(fh))
            except Exception:  # noqa: BLE001 - a helper that died: its tasks are walked below
                pass
            os.close(result_read)
            os.waitpid(pid, 0)
            self.helpers.pop(0)
        # Every piece in layout order, each let go of once copied into place.
        own = self.pieces[::-1]
        self.pieces = []
        if self.layout == [-1]:  # walked in one piece (one process, or nothing to share)
            return self._join(iter(own), None)
        known = sum(len(p[0]) for p in own) + sum(len(p[0]) for p in done.values())
        cat = self._join((self._piece(slot, own, done) for slot in self.layout), known)
        give_back_free_memory()  # the pieces, and what unpickling them took
        return cat

    def _piece(self, slot: int, own: list[Piece], done: dict[int, Piece]) -> Piece:
        """-1: the next piece walked here; N: task N, from whoever walked it, or walked now (its
        helper died)."""
        if slot < 0:
            return own.pop()
        found = done.pop(slot, None)
        return found if found is not None else self._run(slot)

    def _join(self, pieces: Iterator[Piece], known: Optional[int]) -> Catalog:
        """The catalog from its pieces in order.  Its columns are made at their full length
        first (``known`` entries, more if a dead helper's folders are walked now) and filled
        by slices: growing them piece by piece would hold two copies at the end.  ``known``
        None: there is one piece, and it is the catalog."""
        cat = Catalog()
        if known is not None:
            cat.paths = [""] * known
            cat.kinds = bytearray(known)
            for name in _NUMBERS:
                column = getattr(cat, name)
                setattr(cat, name, array(column.typecode, bytes(column.itemsize * known)))
        leaders: dict[tuple[int, int], str] = {}
        base = 0
        for part, linked, skipped in pieces:
            end = base + len(part)
            if known is None:
                cat = part
            else:
                cat.paths[base:end] = part.paths
                cat.kinds[base:end] = part.kinds
                for name in _NUMBERS:
                    getattr(cat, name)[base:end] = getattr(part, name)
                cat.targets.update({base + i: t for i, t in part.targets.items()})
                cat.xattrs.update({base + i: x for i, x in part.xattrs.items()})
            for i, dev, ino in linked:
                path = cat.paths[base + i]
                leader = leaders.setdefault((dev, ino), path)
                if leader != path:
                    cat.targets[base + i] = leader
            for path, why, failed in skipped:
                self.skip(path, why, failed)
            base = end
        cat.volumes = array("i", bytes(4 * base))
        cat.stale = bytearray(base)
        cat.xattrs_known = self.keep.any_attributes
        return cat

    def close(self) -> None:
        """Stop and reap helpers still running (the caller failed before asking for the result)."""
        for pid, result_read in self.helpers:
            os.close(result_read)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        self.helpers = []
        if self.tokens >= 0:
            os.close(self.tokens)
            self.tokens = -1


def _by_name(de: os.DirEntry) -> str:
    return de.name


class _Walk:
    """One process's walk: folders listed once, sorted by name, depth first, into pieces.

    With ``depth`` set, a folder found that many levels below a source is not walked: it
    becomes a task, the piece walked so far is closed and a new one begins after it.
    ``layout`` lists what the catalog is made of, in order: -1 for the next piece, N for
    task N's contents.
    """

    def __init__(self, excluded: Excluder, one_file_system: bool, depth: Optional[int], keep: Keep):
        self.excluded = excluded if excluded.patterns else None
        self.one_file_system = one_file_system
        self.keep = keep
        self.depth = depth
        self.pieces: list[Piece] = []
        self.tasks: list[Task] = []
        self.layout: list[int] = []
        self._new_piece()

    def _new_piece(self) -> None:
        self.cat = Catalog()
        self.linked: list[tuple[int, int, int]] = []
        self.skipped: list[tuple[str, str, bool]] = []

    def close_piece(self) -> None:
        """End the piece being walked (it joins :attr:`pieces`) and begin a new one."""
        self.pieces.append((self.cat, self.linked, self.skipped))
        self.layout.append(-1)
        self._new_piece()

    def _defer(self, path: str, rel: str, device: int) -> None:
        self.close_piece()
        self.layout.append(len(self.tasks))
        self.tasks.append((path, rel, device))

    def skip(self, rel: str, why: str, failed: bool = False) -> None:
        """Note an entry left out, and why: told through ``on_skip`` when the pieces are joined, in
        index order.  ``failed``: it could not be read, so it is not saved (the run does not exit
        0); otherwise it is left out by design (excluded, on another filesystem, a special file)
        or gone."""
        self.skipped.append((rel, why, failed))

    def _add(self, rel: str, kind: str, st: os.stat_result, full: str, target: Optional[str] = None) -> None:
        cat = self.cat
        i = len(cat.paths)
        if target is not None:
            cat.targets[i] = target
        cat.paths.append(rel)
        cat.kinds.append(ord(kind))
        cat.sizes.append(st.st_size if kind == FILE else 0)
        cat.mtimes.append(st.st_mtime_ns)
        cat.modes.append(stat.S_IMODE(st.st_mode))
        cat.inodes.append(st.st_ino if kind == FILE else 0)
        owner = self.keep.owner
        cat.uids.append(st.st_uid if owner else UNKNOWN_ID)
        cat.gids.append(st.st_gid if owner else UNKNOWN_ID)
        if self.keep.any_attributes:
            found = read_xattrs(full, self.keep)
            if found is not None:
                cat.xattrs[i] = found

    def all(self, sources: Sources) -> None:
        """Walk every source in index order: the folders between the root and a source, the source,
        then its contents."""
        root = sources.root
        seen_dirs: set[str] = set()
        rels = [(os.path.relpath(src, root) if src != root else "", src) for src in sources.paths]
        # Sources in index order: their folders and contents then come out in order too.
        for rel_src, src in sorted(rels, key=lambda r: sort_key(r[0])):
            # Directories between the root and a source exist on the drive too.
            parts = rel_src.split("/") if rel_src else []
            for depth in range(1, len(parts)):
                rel_dir = "/".join(parts[:depth])
                if rel_dir not in seen_dirs:
                    seen_dirs.add(rel_dir)
                    full = os.path.join(root, rel_dir)
                    self._add(rel_dir, DIR, os.stat(full), full)
            st = os.stat(src)
            if stat.S_ISREG(st.st_mode):
                self._file(rel_src, st, src)
                continue
            if rel_src:
                seen_dirs.add(rel_src)
                self._add(rel_src, DIR, st, src)
            self.dir(src, rel_src, st.st_dev)

    def _file(self, rel: str, st: os.stat_result, full: str) -> None:
        if st.st_nlink > 1:
            self.linked.append((len(self.cat.paths), st.st_dev, st.st_ino))
        self._add(rel, FILE, st, full)

    def _list(self, path: str, rel: str) -> list[os.DirEntry]:
        try:
            with os.scandir(path) as it:
                children = list(it)
        except OSError as err:
            self.skip(rel or ".", f"cannot list directory: {err.strerror}", failed=True)
            return []
        children.sort(key=_by_name)
        return children

    def _appenders(self) -> tuple[Callable[[Any], None], ...]:
        """The current piece's column appends, bound once (the walk calls them per entry)."""
        cat = self.cat
        return (
            cat.paths.append,
            cat.kinds.append,
            cat.sizes.append,
            cat.mtimes.append,
            cat.modes.append,
            cat.inodes.append,
            cat.uids.append,
            cat.gids.append,
        )

    def dir(self, top: str, rel_top: str, device: int) -> None:
        """Walk the contents of folder ``top`` (``rel_top`` in the catalog)."""
        paths, kinds, sizes, mtimes, modes, inodes, uids, gids = self._appenders()
        excluded, skip, one_fs = self.excluded, self.skip, self.one_file_system
        owner, keep = self.keep.owner, self.keep
        attributes = keep.any_attributes
        limit = self.depth or 0
        S_ISDIR, S_ISREG, S_ISLNK = stat.S_ISDIR, stat.S_ISREG, stat.S_ISLNK
        # Depth first, each folder's entries by name: a folder's contents follow it directly.
        stack = [(iter(self._list(top, rel_top)), f"{rel_top}/" if rel_top else "")]
        while stack:
            children, prefix = stack[-1]
            de = next(children, None)
            if de is None:
                stack.pop()
                continue
            rel = prefix + de.name
            if excluded is not None and excluded(rel):
                continue
            try:
                st = de.stat(follow_symlinks=False)
            except OSError as err:
                if err.errno != errno.ENOENT:  # gone since the folder was listed: nothing to save
                    skip(rel, f"cannot stat: {err.strerror}", True)
                continue
            mode = st.st_mode
            other_fs = one_fs and st.st_dev != device
            if S_ISREG(mode) and not other_fs:
                if st.st_nlink > 1:
                    self._file(rel, st, de.path)
                    continue
                if attributes:
                    found = read_xattrs(de.path, keep)
                    if found is not None:
                        self.cat.xattrs[len(self.cat.paths)] = found
                paths(rel)
                kinds(102)  # FILE
                sizes(st.st_size)
                mtimes(st.st_mtime_ns)
                modes(mode & 0o7777)
                inodes(st.st_ino)
                uids(st.st_uid if owner else UNKNOWN_ID)
                gids(st.st_gid if owner else UNKNOWN_ID)
            elif S_ISDIR(mode):
                self._add(rel, DIR, st, de.path)
                if other_fs:
                    skip(rel, "another filesystem is mounted here: kept empty (--one-file-system)")
                elif len(stack) == limit:
                    self._defer(de.path, rel, device)
                    paths, kinds, sizes, mtimes, modes, inodes, uids, gids = (
                        self._appenders()
                    )  # the new piece's
                else:
                    stack.append((iter(self._list(de.path, rel)), rel + "/"))
            elif other_fs:
                skip(rel, "on another filesystem: left out (--one-file-system)")
            elif S_ISLNK(mode):
                try:
                    target = os.readlink(de.path)
                except OSError as err:
                    if err.errno != errno.ENOENT:
                        skip(rel, f"cannot read symlink: {err.strerror}", True)
                    continue
                self._add(rel, LINK, st, de.path, target)
            else:
                skip(rel, SPECIAL)
