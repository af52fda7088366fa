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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Callable, Optional

from .catalog import DIR, FILE, LINK, Catalog, Entry
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
    """Walk every source and return the sorted catalog.

    Files with more than one link to the same inode form a hard-link group: every member
    but the first (in index order) gets the first's path as its ``target``, so a drive holding
    both can link them instead of storing the data twice.
    """
    walk = _Walk(Excluder(exclude), on_skip or (lambda path, why: None), one_file_system)
    cat = Catalog.from_entries(walk.all(sources))
    leaders: dict[tuple[int, int], int] = {}
    for i, path in enumerate(cat.paths):
        key = walk.inodes.get(path)
        if key is None:
            continue
        if key in leaders:
            cat.targets[i] = cat.paths[leaders[key]]
        else:
            leaders[key] = i
    return cat


class _Walk:
    def __init__(self, excluded: Excluder, skip: SkipCallback, one_file_system: bool):
        self.excluded = excluded
        self.skip = skip
        self.one_file_system = one_file_system
        self.inodes: dict[str, tuple[int, int]] = {}  # path -> (dev, ino), for files with links

    def all(self, sources: Sources) -> Iterator[Entry]:
        root = sources.root
        seen_dirs: set[str] = set()
        for src in sources.paths:
            rel_src = os.path.relpath(src, root) if src != root else ""
            # Directories between the root and a source exist on the drive too.
            parts = rel_src.split("/") if rel_src else []
            for depth in range(1, len(parts)):
                rel_dir = "/".join(parts[:depth])
                if rel_dir not in seen_dirs:
                    seen_dirs.add(rel_dir)
                    st = os.stat(os.path.join(root, rel_dir))
                    yield Entry(rel_dir, DIR, 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
            st = os.stat(src)
            if stat.S_ISREG(st.st_mode):
                yield self._file(rel_src, st)
                continue
            if rel_src:
                seen_dirs.add(rel_src)
                yield Entry(rel_src, DIR, 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
            yield from self._dir(src, rel_src, st.st_dev)

    def _file(self, rel: str, st: os.stat_result) -> Entry:
        if st.st_nlink > 1:
            self.inodes[rel] = (st.st_dev, st.st_ino)
        return Entry(rel, FILE, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), ino=st.st_ino)

    def _dir(self, top: str, rel_top: str, device: int) -> Iterator[Entry]:
        stack = [(top, rel_top)]
        while stack:
            path, rel = stack.pop()
            try:
                with os.scandir(path) as it:
                    children = list(it)
            except OSError as err:
                self.skip(rel or ".", f"cannot list directory: {err.strerror}")
                continue
            for de in children:
                child_rel = f"{rel}/{de.name}" if rel else de.name
                if self.excluded(child_rel):
                    continue
                try:
                    st = de.stat(follow_symlinks=False)
                except OSError as err:
                    self.skip(child_rel, f"cannot stat: {err.strerror}")
                    continue
                mode = st.st_mode
                other_fs = self.one_file_system and st.st_dev != device
                if stat.S_ISDIR(mode):
                    yield Entry(child_rel, DIR, 0, st.st_mtime_ns, stat.S_IMODE(mode))
                    if other_fs:
                        self.skip(
                            child_rel, "another filesystem is mounted here: kept empty (--one-file-system)"
                        )
                    else:
                        stack.append((de.path, child_rel))
                elif other_fs:
                    self.skip(child_rel, "on another filesystem: left out (--one-file-system)")
                elif stat.S_ISREG(mode):
                    yield self._file(child_rel, st)
                elif stat.S_ISLNK(mode):
                    try:
                        target = os.readlink(de.path)
                    except OSError as err:
                        self.skip(child_rel, f"cannot read symlink: {err.strerror}")
                        continue
                    yield Entry(child_rel, LINK, 0, st.st_mtime_ns, stat.S_IMODE(mode), target)
                else:
                    self.skip(child_rel, "special file (socket, fifo or device) left out")
