"""Awkward things in the source: hard links, sparse files, other filesystems, odd names."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from conftest import needs_root
from helpers import backup, check_drives, mvc_argv, mvc_env, run_mvc, tree_differences


def test_hard_links_are_stored_once_and_linked_on_the_drive_and_in_a_restore(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a/original.bin").write_bytes(os.urandom(300_000))
    os.link(src / "a/original.bin", src / "a/second name.bin")
    os.link(src / "a/original.bin", src / "z-third.bin")
    (tmp_path / "usb").mkdir()

    result = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    usb = tmp_path / "usb"
    inodes = {os.stat(usb / p).st_ino for p in ("a/original.bin", "a/second name.bin", "z-third.bin")}
    assert len(inodes) == 1 and os.stat(usb / "z-third.bin").st_nlink == 3
    restored = run_mvc("--restore", "--to", "back", "-o", "usb", "-f", "job.json", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert os.stat(tmp_path / "back/z-third.bin").st_ino == os.stat(tmp_path / "back/a/original.bin").st_ino
    assert subprocess.run(["cmp", src / "z-third.bin", tmp_path / "back/z-third.bin"]).returncode == 0


def test_reading_the_sources_leaves_their_access_times_and_the_copies_get_them(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    old = {"small.txt": 4_000, "large.bin": 3_000_000}  # the short path and the long one
    for name, size in old.items():
        (src / name).write_bytes(os.urandom(size))
        # Accessed before it was last modified: relatime would update the access time on a read.
        os.utime(src / name, ns=(1_000_000_000_000_000_000, 1_100_000_000_000_000_000))
    (tmp_path / "usb").mkdir()

    result = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    for name in old:
        assert os.stat(src / name).st_atime_ns == 1_000_000_000_000_000_000, name
        assert os.stat(tmp_path / "usb" / name).st_atime_ns == 1_000_000_000_000_000_000, name


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs the tool as root without CAP_FSETID")
def test_a_set_user_id_file_keeps_the_bit_when_copied_without_the_right_to_keep_it(tmp_path):
    # Writing a file clears its set-user-ID bit unless the writer may keep it (CAP_FSETID,
    # which root has and a backup operator may not): run the tool without that capability.
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "usb").mkdir()
    for name, size in (("small-tool", 5_000), ("large-tool", 2_000_000)):  # both copy paths
        (src / name).write_bytes(os.urandom(size))
        os.chmod(src / name, 0o4755)

    result = subprocess.run(
        ["setpriv", "--bounding-set=-fsetid", *mvc_argv("src", "-o", "usb", "-f", "job.json")],
        cwd=tmp_path,
        env=mvc_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    for name in ("small-tool", "large-tool"):
        assert stat.S_IMODE(os.stat(tmp_path / "usb" / name).st_mode) == 0o4755, name


def test_sparse_files_stay_sparse_and_their_hash_covers_the_holes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "disk.img", "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
        fh.seek(10 * 1024 * 1024)
        fh.write(os.urandom(4096))
        fh.seek(50 * 1024 * 1024)
        fh.write(b"tail data")
    (tmp_path / "usb").mkdir()

    result = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    copy = tmp_path / "usb/disk.img"
    assert os.stat(copy).st_size == 64 * 1024 * 1024
    assert os.stat(copy).st_blocks * 512 < 1024 * 1024, "the holes were written out"
    assert subprocess.run(["cmp", src / "disk.img", copy]).returncode == 0
    sums = subprocess.run(
        ["sha256sum", "-c", ".mvcopy-sha256sums"], cwd=tmp_path / "usb", capture_output=True, text=True
    )
    assert sums.returncode == 0 and "disk.img: OK" in sums.stdout


@needs_root
def test_one_file_system_keeps_the_mount_point_empty(tmp_path, drives, bay):
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data/kept.txt").write_text("same filesystem")
    (src / "proc-like").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(src / "proc-like")], check=True)
    (src / "proc-like/other.txt").write_text("another filesystem")
    image = drives.image("d1", 2048)
    bay.insert(image)

    result = backup(tmp_path, bay, "--one-file-system")

    assert result.returncode == 0, result.stderr
    assert "proc-like: another filesystem is mounted here: kept empty (--one-file-system)" in result.stderr
    assert (bay.point / "data/kept.txt").exists()
    assert (bay.point / "proc-like").is_dir() and os.listdir(bay.point / "proc-like") == []


@needs_root
def test_names_that_are_not_utf8_hold_newlines_or_are_long_round_trip_exactly(tmp_path, drives, bay):
    src = tmp_path / "src"
    src.mkdir()
    names = [b"caf\xe9 latin-1.txt", b"new\nline.txt", b"back\\slash.txt", b"x" * 255, b"tab\there.txt"]
    deep = os.fsencode(src) + b"/" + b"/".join([b"d" * 200] * 12)  # a path over 2,400 bytes
    os.makedirs(deep)
    for n, name in enumerate(names):
        with open(os.fsencode(src) + b"/" + name, "wb") as fh:
            fh.write(f"file {n}\n".encode())
    with open(deep + b"/bottom.txt", "wb") as fh:
        fh.write(b"deep down\n")
    image = drives.image("d1", 4096)
    bay.insert(image)

    result = backup(tmp_path, bay)

    assert result.returncode == 0, result.stderr
    on_drive = set(os.listdir(os.fsencode(bay.point)))
    assert set(names) <= on_drive
    job = json.loads((tmp_path / "job.json").read_text())
    assert {os.fsencode(r[0]) for r in job["files"]} >= set(names)
    sums = subprocess.run(["sha256sum", "-c", ".mvcopy-sha256sums"], cwd=bay.point, capture_output=True)
    assert sums.returncode == 0, sums.stdout
    bay.eject()
    check_drives(tmp_path, drives, [image], src)
    bay.insert(image)
    back = tmp_path / "back"
    restored = run_mvc(
        "--restore", "--to", str(back), "-o", str(bay.point), "-f", str(tmp_path / "job.json"), cwd=tmp_path
    )
    assert restored.returncode == 0, restored.stderr
    assert tree_differences(src, back) == ""


def test_sha256sum_checks_files_whose_names_need_escaping_or_are_not_utf8(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    names = [b"back\\slash.txt", b"new\nline.txt", b"caf\xe9 latin1.txt", b"plain \xc3\xa9.txt"]
    for name in names:
        with open(os.path.join(os.fsencode(src), name), "wb") as fh:
            fh.write(name * 3)
    (tmp_path / "usb").mkdir()

    result = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    usb = tmp_path / "usb"
    sums = subprocess.run(["sha256sum", "-c", ".mvcopy-sha256sums"], cwd=usb, capture_output=True)
    assert sums.returncode == 0, sums.stderr
    assert sums.stdout.count(b": OK") == len(names)
