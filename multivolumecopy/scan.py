"""Scanning the sources: first stage of the pipeline.

Turns the source arguments into a common *root* (what a restore copies back
onto) and a sorted :class:`~multivolumecopy.catalog.Catalog` of every
directory, regular file and symlink below them.  Symlinks are recorded, never
followed; sockets, fifos and devices are reported and left out.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable, Optional

from .catalog import DIR, FILE, LINK, Catalog, sort_key
from .errors import SourceError

SkipCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class Sources:
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


def _inside(inner: str, outer: str) -> bool:
    """Whether real path ``inner`` lies strictly below ``outer``."""
    return inner != outer and (inner + os.sep).startswith(outer.rstrip(os.sep) + os.sep)


def path_inside(inner: str, outer: str) -> bool:
    """``inner`` equal to or below ``outer``, comparing real paths."""
    a, b = os.path.realpath(inner), os.path.realpath(outer)
    return a == b or _inside(a, b)


class Excluder:
    """``--exclude`` globs; a pattern without ``/`` also matches any single name, as in rsync."""

    def __init__(self, patterns: Iterable[str]):
        self.patterns = tuple(p.rstrip("/") for p in patterns if p.strip("/"))

    def __call__(self, rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        for pat in self.patterns:
            if fnmatch.fnmatchcase(rel, pat):
                return True
            if "/" not in pat and fnmatch.fnmatchcase(name, pat):
                return True
        return False


def scan(
    sources: Sources,
    exclude: Iterable[str] = (),
    on_skip: Optional[SkipCallback] = None,
    one_file_system: bool = False,
) -> Catalog:
    """Walk every source and return the catalog, already in index order.

    Each folder is listed once, its entries sorted by name, and walked depth-first: that
    order is the catalog's sort order (``/`` before every other character), so no sort of
    the whole tree is needed.  Columns are filled as the walk goes; no object per entry.

    Files with more than one link to the same inode form a hard-link group: every member
    but the first (in index order) gets the first's path as its ``target``, so a drive holding
    both can link them instead of storing the data twice.
    """
    walk = _Walk(Excluder(exclude), on_skip or (lambda path, why: None), one_file_system)
    walk.all(sources)
    cat = walk.cat
    cat.volumes = array("i", bytes(4 * len(cat.paths)))
    return cat


def _by_name(de: os.DirEntry) -> str:
    return de.name


class _Walk:
    def __init__(self, excluded: Excluder, skip: SkipCallback, one_file_system: bool):
        self.excluded = excluded if excluded.patterns else None
        self.skip = skip
        self.one_file_system = one_file_system
        self.cat = Catalog()
        self.leaders: dict[tuple[int, int], str] = {}  # (dev, ino) -> first path, files with links

    def _add(self, rel: str, kind: str, st: os.stat_result, target: Optional[str] = None) -> None:
        cat = self.cat
        if target is not None:
            cat.targets[len(cat.paths)] = target
        cat.paths.append(rel)
        cat.kinds.append(ord(kind))
        cat.sizes.append(st.st_size if kind == FILE else 0)
        cat.mtimes.append(st.st_mtime_ns)
        cat.modes.append(stat.S_IMODE(st.st_mode))
        cat.inodes.append(st.st_ino if kind == FILE else 0)

    def all(self, sources: Sources) -> None:
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
                    self._add(rel_dir, DIR, os.stat(os.path.join(root, rel_dir)))
            st = os.stat(src)
            if stat.S_ISREG(st.st_mode):
                self._file(rel_src, st)
                continue
            if rel_src:
                seen_dirs.add(rel_src)
                self._add(rel_src, DIR, st)
            self._dir(src, rel_src, st.st_dev)

    def _file(self, rel: str, st: os.stat_result) -> None:
        target = None
        if st.st_nlink > 1:
            target = self.leaders.setdefault((st.st_dev, st.st_ino), rel)
            if target == rel:
                target = None
        self._add(rel, FILE, st, target)

    def _list(self, path: str, rel: str) -> list[os.DirEntry]:
        try:
            with os.scandir(path) as it:
                children = list(it)
        except OSError as err:
            self.skip(rel or ".", f"cannot list directory: {err.strerror}")
            return []
        children.sort(key=_by_name)
        return children

    def _dir(self, top: str, rel_top: str, device: int) -> None:
        cat = self.cat
        paths, kinds, sizes, mtimes, modes, inodes = (
            cat.paths.append,
            cat.kinds.append,
            cat.sizes.append,
            cat.mtimes.append,
            cat.modes.append,
            cat.inodes.append,
        )
        excluded, skip, one_fs = self.excluded, self.skip, self.one_file_system
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
                skip(rel, f"cannot stat: {err.strerror}")
                continue
            mode = st.st_mode
            other_fs = one_fs and st.st_dev != device
            if S_ISREG(mode) and not other_fs:
                if st.st_nlink > 1:
                    self._file(rel, st)
                    continue
                paths(rel)
                kinds(102)  # FILE
                sizes(st.st_size)
                mtimes(st.st_mtime_ns)
                modes(mode & 0o7777)
                inodes(st.st_ino)
            elif S_ISDIR(mode):
                self._add(rel, DIR, st)
                if other_fs:
                    skip(rel, "another filesystem is mounted here: kept empty (--one-file-system)")
                else:
                    stack.append((iter(self._list(de.path, rel)), rel + "/"))
            elif other_fs:
                skip(rel, "on another filesystem: left out (--one-file-system)")
            elif S_ISLNK(mode):
                try:
                    target = os.readlink(de.path)
                except OSError as err:
                    skip(rel, f"cannot read symlink: {err.strerror}")
                    continue
                self._add(rel, LINK, st, target)
            else:
                skip(rel, "special file (socket, fifo or device) left out")
