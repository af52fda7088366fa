"""Fixtures: real drives (loop-mounted ext4 images, tmpfs) that always come down again."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from helpers import Bay, Drives

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: mounts loop-device ext4 images and tmpfs as drives"
)


def _mounts_below(top: Path) -> list[str]:
    found = []
    with open("/proc/mounts") as fh:
        for line in fh:
            point = line.split()[1].encode().decode("unicode_escape")
            if point == str(top) or point.startswith(str(top) + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _kill_runs_left_in(top: Path) -> None:
    """Kill what a failed test left running in ``top`` (a run whose interrupt it waited for
    in vain, and its workers): their drives could not be unmounted nor their loop devices
    detached."""
    me = os.getpid()
    left = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        cwd, cmdline = proc.info["cwd"] or "", " ".join(proc.info["cmdline"] or ())
        if proc.info["pid"] != me and (cwd.startswith(str(top)) or str(top) in cmdline):
            left.append(proc)
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=10)


@pytest.fixture
def drives(tmp_path: Path):
    """Make, mount and swap small real filesystems; after the test, pass or fail, everything
    is unmounted and detached, and the image files are deleted (the rest of ``tmp_path`` is
    kept or not as pytest's tmp_path_retention_policy says)."""
    if not IS_ROOT:
        pytest.skip("needs root: mounts loop-device ext4 images and tmpfs as drives")
    for tool in ("mkfs.ext4", "losetup", "mount", "umount", "findmnt"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install e2fsprogs and util-linux (see README.rst)")
    d = Drives(tmp_path / "drives")
    try:
        yield d
    finally:
        _kill_runs_left_in(tmp_path)  # a failed test's run still holding a drive would keep it
        for point in _mounts_below(tmp_path):
            if subprocess.call(["umount", point], stderr=subprocess.DEVNULL) != 0:
                subprocess.call(["umount", "-l", point], stderr=subprocess.DEVNULL)
        d.release()


@pytest.fixture
def bay(drives: Drives, tmp_path: Path) -> Iterator[Bay]:
    """One mount point whose drive a --new-volume-script swaps, as a person would."""
    b = Bay(drives, tmp_path / "usb", tmp_path / "swap")
    yield b
    if b.busy.exists():
        held = b.busy.read_text()
        warnings.warn(f"a swap found the drive busy and tried again; what held it:\n{held}", stacklevel=2)
