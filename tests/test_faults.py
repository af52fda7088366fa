"""Faults on real drives: the drive turning read-only or vanishing mid-run, runs that collide."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import threading
import time

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
    run_mvc,
    start_backup,
    tree_differences,
    union_of,
    wait_for_partial_copy,
)
from multivolumecopy.errors import DriveError, ExitCode
from multivolumecopy.fsutil import syncfs
from stages import opened

pytestmark = needs_root


def killed_at(tmp_path, bay, fault: str) -> None:
    """Run the backup with a fault point armed: it must die there, by SIGKILL, at that moment."""
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
    assert last.startswith(f"multivolumecopy: the drive at {bay.point} failed ("), err
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
        "before-folder-rename:2",  # a new folder complete in .mvcopy-tmp, not yet renamed into place
        "replace:.mvcopy-sha256sums",  # committing volume 1: hashes written, manifest not yet
        "replace:.mvcopy-manifest.json",  # the new manifest written and synced, not yet in place
        "replace:.mvcopy-jobdata.json",  # volume 1 committed, its jobfile copy half replaced
        "replace:job.json:3",  # the drive committed, the jobfile not yet told
        "replace:job.json.cache:3",  # the jobfile told, its catalog cache not yet replaced
    ],
)
def test_killed_at_a_fault_point_then_rerun_gives_the_exact_tree(tmp_path, drives, bay, fault):
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 700) for i in range(1, 7)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    killed_at(tmp_path, bay, fault)

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
    killed_at(tmp_path, bay, "after-purge")

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    bay.eject()
    check_drives(tmp_path, drives, [image], src)


def test_an_unreadable_file_is_reported_and_skipped_and_the_next_run_copies_it(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src, n_files=15, big=1)
    locked = src / "beta/locked.txt"
    locked.write_text("not for everyone")
    locked.chmod(0)
    bay.insert(drives.image("d1", 4096))
    # Root reads anything: drop the capability that lets it, as an unprivileged backup user runs.
    no_override = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    first = subprocess.run(
        no_override + mvc_argv(*bay_args(tmp_path, bay)),
        cwd=tmp_path,
        env=mvc_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert first.returncode == ExitCode.FILES_FAILED, first.stderr
    assert "FAILED beta/locked.txt: cannot read: Permission denied" in first.stderr
    assert (
        "1 entry not saved (on no drive as it is now; the run exits 1):\n"
        "    beta/locked.txt: cannot read: Permission denied" in first.stderr
    )
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["failed"] == [["beta/locked.txt", "cannot read: Permission denied"]]
    assert not (bay.point / "beta/locked.txt").exists()
    assert (bay.point / "beta/run.sh").exists()  # the rest went on

    locked.chmod(0o644)
    second = backup(tmp_path, bay)

    assert second.returncode == 0, second.stderr
    assert (bay.point / "beta/locked.txt").read_text() == "not for everyone"
    assert json.loads((tmp_path / "job.json").read_text())["failed"] == []


def after_first_swap(tmp_path, drives, bay, src, command: str):
    """Back ``src`` up onto 700 KiB drives, running ``command`` at the first swap only (after
    the scan, before the last files are copied); the folder ``zeta`` keeps its scanned time."""
    images = [drives.image(f"d{i}", 700) for i in range(1, 7)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    scanned = (src / "zeta").stat()
    script = tmp_path / "swap-and-change.sh"
    once = tmp_path / "changed-once"
    script.write_text(f'[ -e "{once}" ] || {{ {command}; touch "{once}"; }}\n{bay.script}\n')
    result = run_mvc(
        str(src),
        "-o",
        str(bay.point),
        "-f",
        str(tmp_path / "job.json"),
        "--new-volume-script",
        f"sh {script}",
        cwd=tmp_path,
    )
    os.utime(src / "zeta", ns=(scanned.st_atime_ns, scanned.st_mtime_ns))  # the folder as scanned
    bay.eject()
    return result, images[: len(bay.swaps()) + 1]


def test_a_file_that_vanishes_after_the_scan_is_noted_and_not_fatal(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    doomed = src / "zeta/big 3.dat"  # sorts last: it is copied after the first swap

    result, used = after_first_swap(tmp_path, drives, bay, src, f'rm -f "{doomed}"')

    assert result.returncode == 0, result.stderr
    assert "skipped zeta/big 3.dat: vanished since the scan" in result.stderr
    check_drives(tmp_path, drives, used, src)


def test_a_file_changed_after_the_scan_is_copied_and_recorded_as_it_now_is(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    changed = src / "zeta/big 3.dat"  # sorts last: it is copied after the first swap

    result, used = after_first_swap(tmp_path, drives, bay, src, f'printf "new content" > "{changed}"')

    assert result.returncode == 0, result.stderr
    check_drives(tmp_path, drives, used, src)  # the drive has the new content
    job = json.loads((tmp_path / "job.json").read_text())
    row = next(r for r in job["files"] if r[0] == "zeta/big 3.dat")
    assert (row[2], row[3]) == (11, changed.stat().st_mtime_ns)
    with drives.inspect(used) as points:
        sums = "".join((point / ".mvcopy-sha256sums").read_text() for point in points)
    assert f"{hashlib.sha256(b'new content').hexdigest()}  zeta/big 3.dat" in sums


def test_a_file_that_keeps_changing_while_copied_is_reported_as_unstable(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src, n_files=5, big=0)
    growing = src / "growing.log"
    growing.write_bytes(os.urandom(16 * 1024 * 1024))
    bay.insert(drives.image("d1", 60 * 1024))
    stop = threading.Event()

    def writer():
        with open(growing, "ab", buffering=0) as fh:
            while not stop.is_set():
                fh.write(b"x" * 512)
                time.sleep(0.0005)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = backup(tmp_path, bay)
    finally:
        stop.set()
        thread.join()

    assert result.returncode == ExitCode.FILES_FAILED, result.stderr
    assert "FAILED growing.log: kept changing while it was copied (3 tries)" in result.stderr
    assert not (bay.point / "growing.log").exists()
    assert leftovers(bay.point) == []


@pytest.fixture
def losing_drive(tmp_path, drives):
    """A drive whose disk refuses writes once they leave the page cache: a loop device whose
    32 MiB image sits on a 3 MiB tmpfs (written data is taken, then lost at writeback)."""
    shelf, usb = tmp_path / "shelf", tmp_path / "usb"
    shelf.mkdir()
    usb.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(shelf)], check=True)
    dev = ""
    try:
        image = shelf / "drive.img"
        with open(image, "wb") as fh:
            fh.truncate(32 * 2**20)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-b", "1024", "-O", "^has_journal", "-e", "continue", str(image)]
        )
        dev = drives.attach(image)
        subprocess.run(["mount", dev, str(usb)], check=True)
        yield usb
    finally:
        subprocess.call(["umount", str(usb)], stderr=subprocess.DEVNULL)
        if dev:
            drives.detach(dev)
        subprocess.call(["umount", str(shelf)], stderr=subprocess.DEVNULL)


def test_a_drive_that_loses_writes_after_the_page_cache_took_them_is_never_reported_synced(losing_drive):
    """The sync that must come before every commit says so, where a fallback to sync() would
    say nothing and the manifest would be committed."""
    (losing_drive / "data").write_bytes(os.urandom(8 * 2**20))  # taken by the page cache

    with pytest.raises(OSError) as failed:
        syncfs(str(losing_drive))
    assert failed.value.errno in (errno.EIO, errno.ENOSPC)


def test_a_commit_hears_of_a_lost_write_that_another_sync_heard_of_first(losing_drive):
    """Linux tells each open descriptor of a filesystem of a writeback error once, and one
    opened after another was told hears nothing.  The background writeback (or any program)
    syncing the drive first must not make the drive's own sync before its commit say all is
    well."""
    drive = opened(losing_drive)
    try:
        (losing_drive / "data").write_bytes(os.urandom(8 * 2**20))  # taken by the page cache
        with pytest.raises(OSError):
            syncfs(str(losing_drive))  # heard first, elsewhere (what the writeback thread does)

        with pytest.raises(DriveError):
            drive.commit()
        assert not (losing_drive / ".mvcopy-manifest.json").exists()
    finally:
        drive.close()


def test_a_backup_onto_a_drive_that_loses_writes_stops_and_does_not_record_them(tmp_path, losing_drive):
    """A whole run onto such a drive: it stops with the drive's exit code, one line, and the
    drive's records do not list what it lost."""
    src = tmp_path / "src"
    src.mkdir()
    for k in range(256):  # small files: no worker syncs them itself (a large one's writer does)
        (src / f"f{k:03d}.bin").write_bytes(os.urandom(32 * 1024))

    result = run_mvc(
        str(src), "-o", str(losing_drive), "-f", str(tmp_path / "job.json"), "--bwlimit", "4M", cwd=tmp_path
    )

    assert result.returncode == ExitCode.DRIVE_ERROR, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    manifest = losing_drive / ".mvcopy-manifest.json"
    held = [row[0] for row in json.loads(manifest.read_text())["entries"]] if manifest.exists() else []
    assert not [path for path in held if path.endswith(".bin")], held
