"""Faults on real drives: the drive turning read-only or vanishing mid-run, runs that collide."""

from __future__ import annotations

import fcntl
import os
import subprocess

from conftest import needs_root
from helpers import (
    backup,
    big_source,
    leftovers,
    start_backup,
    tree_differences,
    union_of,
    wait_for_partial_copy,
)
from multivolumecopy.errors import ExitCode

pytestmark = needs_root


def test_a_drive_turning_read_only_mid_copy_stops_the_run_and_a_rerun_finishes(tmp_path, drives, bay):
    src = big_source(tmp_path)
    image = drives.image("d1", 120 * 1024)
    bay.insert(image)
    proc = start_backup(tmp_path, bay)
    wait_for_partial_copy(bay, proc)

    drives.fail_read_only(bay.point)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == ExitCode.DRIVE_ERROR, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"multivolumecopy: the drive at {bay.point} failed (")
    assert last.endswith("run the same command again")
    assert "Traceback" not in err
    assert "Read-only file system" in last
    bay.eject()
    drives.fsck(image)
    bay.insert(image)
    rerun = backup(tmp_path, bay)
    assert rerun.returncode == 0, rerun.stderr
    assert leftovers(bay.point) == []
    assert tree_differences(src, union_of([bay.point], tmp_path / "union")) == ""


def test_a_drive_pulled_mid_copy_gets_nothing_written_to_the_bare_mount_point(tmp_path, drives, bay):
    src = big_source(tmp_path)
    image = drives.image("d1", 120 * 1024)
    bay.insert(image)
    proc = start_backup(tmp_path, bay)
    wait_for_partial_copy(bay, proc)

    subprocess.run(["umount", "-l", str(bay.point)], check=True)  # as a pulled cable looks from here
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == ExitCode.DRIVE_ERROR, err
    assert "is gone (unmounted or replaced)" in err
    assert os.listdir(bay.point) == [], "something was written to the filesystem under the mount point"
    bay.insert(image)
    rerun = backup(tmp_path, bay)
    assert rerun.returncode == 0, rerun.stderr
    assert tree_differences(src, union_of([bay.point], tmp_path / "union")) == ""


def test_a_second_run_on_the_same_drive_is_refused_while_the_first_holds_it(tmp_path, drives, bay):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.txt").write_text("a")
    bay.insert(drives.image("d1", 2048))
    with open(bay.point / ".mvcopy-lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("pid 777 on nas, started at midnight")
        lock.flush()

        result = backup(tmp_path, bay)

    assert result.returncode == ExitCode.LOCKED
    assert (
        f"the drive at {bay.point} is in use by another multivolumecopy run (pid 777 on nas" in result.stderr
    )
    assert not (bay.point / "a.txt").exists()
