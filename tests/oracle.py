"""An independent oracle for the model-based test: what the source holds and what the drives
hold, read with ``os.lstat`` and ``hashlib`` only.  It shares no code with multivolumecopy, so
a bug in the tool's own bookkeeping cannot hide itself here.

A tree is a dict of relative path to a tuple:

* a folder: ``("d", mode, mtime_ns)``
* a file: ``("f", mode, mtime_ns, size, sha256)``
* a symlink: ``("l", target, mtime_ns)``
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Optional

Tree = dict[str, tuple]
RECORDS = ".mvcopy"  # the tool's own files at a drive's root start with this


def tree(root: str, drive: bool = False) -> Tree:
    """Everything below ``root`` (not root itself).  ``drive``: leave out the tool's records and
    lost+found at the top."""
    found: Tree = {}

    def walk(rel: str) -> None:
        full = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(full)):
            if drive and not rel and (name.startswith(RECORDS) or name == "lost+found"):
                continue
            path = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(root, path))
            owner = (st.st_uid, st.st_gid, _xattrs(os.path.join(root, path)))
            if stat.S_ISDIR(st.st_mode):
                found[path] = ("d", stat.S_IMODE(st.st_mode), st.st_mtime_ns, *owner)
                walk(path)
            elif stat.S_ISLNK(st.st_mode):
                found[path] = ("l", os.readlink(os.path.join(root, path)), st.st_mtime_ns, *owner)
            elif stat.S_ISREG(st.st_mode):
                found[path] = (
                    "f", stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size, _sha256(root, path), *owner
                )  # fmt: skip
            else:
                found[path] = ("?", st.st_mode)

    walk("")
    return found


def _xattrs(full: str) -> tuple[tuple[str, bytes], ...]:
    """Every extended attribute (ACLs included) of ``full``, not followed, sorted."""
    names = os.listxattr(full, follow_symlinks=False)
    return tuple(sorted((n, os.getxattr(full, n, follow_symlinks=False)) for n in names))


def without(source: Tree, patterns: list[str]) -> Tree:
    """``source`` less what ``--exclude`` patterns leave out, by their documented rule: a path
    is left out when it, or a folder above it, matches a pattern as a whole relative path, or
    (a pattern without ``/``) by its last name; what is inside a folder left out goes too."""

    def left_out(path: str) -> bool:
        parts = path.split("/")
        for n in range(1, len(parts) + 1):
            prefix, name = "/".join(parts[:n]), parts[n - 1]
            for pat in patterns:
                if fnmatch.fnmatchcase(prefix, pat) or ("/" not in pat and fnmatch.fnmatchcase(name, pat)):
                    return True
        return False

    return {p: rec for p, rec in source.items() if not left_out(p)}


def _sha256(root: str, path: str) -> str:
    digest = hashlib.sha256()
    with open(os.path.join(root, path), "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class DriveView:
    """One drive as the oracle sees it."""

    name: str  # the image's name
    label: Optional[dict]  # .mvcopy-label.json, None for a blank drive
    entries: Tree
    sums: dict[str, str]  # path -> SHA-256, from .mvcopy-sha256sums
    journal: bool  # an uncommitted journal is there
    tmp_left: list[str] = field(default_factory=list)  # anything left in .mvcopy-tmp

    @property
    def volume(self) -> Optional[int]:
        return self.label["volume"] if self.label else None


def read_drive(name: str, root: str) -> DriveView:
    label = None
    label_path = os.path.join(root, ".mvcopy-label.json")
    if os.path.exists(label_path):
        with open(label_path, encoding="utf-8") as fh:
            label = json.load(fh)
    sums: dict[str, str] = {}
    sums_path = os.path.join(root, ".mvcopy-sha256sums")
    if os.path.exists(sums_path):
        with open(sums_path, "rb") as fh:
            for raw in fh.read().split(b"\n"):
                if raw:
                    digest, path = _sums_line(raw)
                    sums[path] = digest
    tmp = os.path.join(root, ".mvcopy-tmp")
    left = []
    if os.path.isdir(tmp):
        for dirpath, dirnames, filenames in os.walk(tmp):
            left += [os.path.join(dirpath, n) for n in filenames + dirnames]
    return DriveView(
        name,
        label,
        tree(root, drive=True),
        sums,
        os.path.exists(os.path.join(root, ".mvcopy-journal")),
        left,
    )


def _sums_line(raw: bytes) -> tuple[str, str]:
    """One line as ``sha256sum`` writes it: a leading backslash means the name is escaped."""
    escaped = raw.startswith(b"\\")
    if escaped:
        raw = raw[1:]
    digest, name = raw[:64].decode("ascii"), raw[66:]
    if escaped:
        name = name.replace(b"\\n", b"\n").replace(b"\\r", b"\r").replace(b"\\\\", b"\\")
    return digest, os.fsdecode(name)


def union_problems(source: Tree, drives: list[DriveView]) -> list[str]:
    """How the drives together differ from the source (empty: they hold it exactly).

    Files and symlinks must be on exactly one drive, equal in kind, content, mode and time.
    Folders must be folders wherever they appear, and every folder of the source must be on
    some drive (an empty folder included); its mode and time must match on at least one drive
    (the one that holds the folder itself; the others hold it as the parent of their files).
    """
    problems: list[str] = []
    where: dict[str, list[str]] = {}
    folders: dict[str, list[tuple]] = {}
    for d in drives:
        for path, rec in d.entries.items():
            if rec[0] == "d":
                folders.setdefault(path, []).append(rec)
            else:
                where.setdefault(path, []).append(d.name)
                if path in source and source[path] != rec:
                    problems.append(f"{path} on {d.name}: {_describe(rec)}, source {_describe(source[path])}")
                elif path not in source:
                    problems.append(f"{path} on {d.name} is not in the source ({_describe(rec)})")
    for path, names in where.items():
        if len(names) > 1:
            problems.append(f"{path} is on {len(names)} drives: {', '.join(names)}")
    for path, recs in folders.items():
        want = source.get(path)
        if want is None:
            problems.append(f"folder {path} on a drive is not in the source")
        elif want[0] != "d":
            problems.append(f"{path} is a folder on a drive, {_describe(want)} in the source")
        elif want not in recs:
            problems.append(f"folder {path}: {_describe(recs[0])} on the drives, source {_describe(want)}")
    for path, rec in source.items():
        if rec[0] == "d":
            if path not in folders:
                problems.append(f"folder {path} is on no drive")
        elif path not in where:
            problems.append(f"{path} ({_describe(rec)}) is on no drive")
    return sorted(problems)


def drive_problems(d: DriveView) -> list[str]:
    """What a committed drive must not show: leftovers, and files without their hash line."""
    problems = []
    if d.label is None:
        # A blank drive: nothing of ours, nothing at all but what a blank drive has.
        if d.entries:
            problems.append(f"{d.name} is unlabelled but holds {sorted(d.entries)[:5]}")
        return problems
    if d.journal:
        problems.append(f"{d.name} has an uncommitted journal")
    if d.tmp_left:
        problems.append(f"{d.name} has leftovers in .mvcopy-tmp: {d.tmp_left[:5]}")
    for path, rec in d.entries.items():
        if rec[0] == "f":
            if path not in d.sums:
                problems.append(f"{path} on {d.name} has no line in .mvcopy-sha256sums")
            elif d.sums[path] != rec[4]:
                problems.append(f"{path} on {d.name}: its line in .mvcopy-sha256sums is wrong")
    for path in d.sums:
        if d.entries.get(path, ("",))[0] != "f":
            problems.append(f"{path} is in .mvcopy-sha256sums of {d.name} but not a file there")
    return problems


def _describe(rec: tuple) -> str:
    kind = rec[0]
    if kind == "d":
        return f"folder {oct(rec[1])} t={rec[2]} {_owned(rec[3:])}"
    if kind == "l":
        return f"symlink -> {rec[1]!r} t={rec[2]} {_owned(rec[3:])}"
    if kind == "f":
        return f"file {rec[3]} B {oct(rec[1])} t={rec[2]} {rec[4][:8]} {_owned(rec[5:])}"
    return f"special {oct(rec[1])}"


def _owned(meta: tuple) -> str:
    uid, gid, xattrs = meta
    return f"{uid}:{gid} {[n for n, _ in xattrs]}"
