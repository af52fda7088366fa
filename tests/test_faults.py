"""Faults on real drives: the drive turning read-only or vanishing mid-run, runs that collide."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess

import pytest

from conftest import needs_root
from helpers import (
    backup,
    bay_args,
    big_source,
    check_drives,
    leftovers,
    make_tree,
    mvc_argv,
    mvc_env,
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


@pytest.mark.parametrize(
    "fault",
    [
        "before-rename:7",  # a file complete in .mvcopy-tmp, not yet renamed into place
        "replace:.mvcopy-sha256sums",  # committing volume 1: hashes written, manifest not yet
        "replace:.mvcopy-manifest.json",  # the new manifest written and synced, not yet in place
        "replace:.mvcopy-jobdata.json",  # volume 1 committed, its jobfile copy half replaced
        "replace:job.json:3",  # the drive committed, the jobfile not yet told
    ],
)
def test_killed_at_a_fault_point_then_rerun_gives_the_exact_tree(tmp_path, drives, bay, fault):
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 700) for i in range(1, 7)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    killed = subprocess.run(
        mvc_argv(*bay_args(tmp_path, bay)),
        cwd=tmp_path,
        env=mvc_env({"MVCOPY_FAULT": fault}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    bay.eject()
    check_drives(tmp_path, drives, images[: len(bay.swaps()) + 1], src)


def test_killed_between_a_purge_and_its_record_then_rerun_finishes_the_purge(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src, n_files=20, big=1)
    image = drives.image("d1", 4096)
    bay.insert(image)
    assert backup(tmp_path, bay).returncode == 0
    for gone in ("Alpha/sub one", "top-level file.txt"):
        subprocess.run(["rm", "-rf", str(src / gone)], check=True)
    killed = subprocess.run(
        mvc_argv(*bay_args(tmp_path, bay)),
        cwd=tmp_path,
        env=mvc_env({"MVCOPY_FAULT": "after-purge"}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    bay.eject()
    check_drives(tmp_path, drives, [image], src)
