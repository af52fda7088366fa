"""End to end on real drives: loop-mounted ext4 images swapped by --new-volume-script."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import psutil
import pytest

from conftest import needs_root
from helpers import (
    backup,
    big_source,
    check_drives,
    files_on,
    label_of,
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
from multivolumecopy.errors import ExitCode

pytestmark = needs_root


def test_backup_fills_three_drives_and_their_union_is_the_source(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 700) for i in range(1, 6)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])

    result = backup(tmp_path, bay)

    assert result.returncode == 0, result.stderr
    used = len(bay.swaps()) + 1
    assert used >= 3, f"the test data should need 3+ drives, used {used}"
    bay.eject()
    check_drives(tmp_path, drives, images[:used], src)
    assert "volume 1 done: holds indexes 0-" in result.stderr
    # Each drive knows its place, and carries the jobfile.
    with drives.inspect(images[:used]) as points:
        assert [label_of(p)["volume"] for p in points] == list(range(1, used + 1))
        assert all((p / ".mvcopy-jobdata.json").is_file() for p in points)


def test_second_run_on_unchanged_sources_copies_nothing(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src, n_files=20, big=1)
    image = drives.image("d1", 4096)
    bay.insert(image)
    first = backup(tmp_path, bay)
    assert first.returncode == 0, first.stderr
    before = {p: os.lstat(bay.point / p).st_ino for p in files_on(bay.point)}

    second = backup(tmp_path, bay)

    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stderr
    after = {p: os.lstat(bay.point / p).st_ino for p in files_on(bay.point)}
    assert after == before  # same inodes: nothing was rewritten


def test_pressing_on_with_the_full_drive_still_in_is_refused(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    first, second = drives.image("d1", 700), drives.image("d2", 8192)
    bay.insert(first)
    bay.enqueue(first, second)  # the script "swaps" in the same drive first

    result = backup(tmp_path, bay)

    assert result.returncode == 0, result.stderr
    assert "volume 1 was already updated in this run" in result.stderr
    bay.eject()
    check_drives(tmp_path, drives, [first, second], src)


def test_a_drive_of_another_job_is_refused_and_left_alone(tmp_path, drives, bay):
    other_src = tmp_path / "other"
    other_src.mkdir()
    (other_src / "theirs.txt").write_text("someone else's backup\n")
    src = tmp_path / "src"
    make_tree(src, n_files=20, big=1)
    theirs, mine = drives.image("theirs", 2048), drives.image("mine", 8192)
    bay.insert(theirs)
    r = run_mvc(str(other_src), "-o", str(bay.point), "-f", str(tmp_path / "other.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    bay.enqueue(mine)

    result = backup(tmp_path, bay)

    assert result.returncode == 0, result.stderr
    assert "of another job" in result.stderr
    bay.eject()
    with drives.inspect([theirs]) as (p,):
        assert files_on(p) == {"theirs.txt"}
    check_drives(tmp_path, drives, [mine], src)


def test_foreign_files_on_a_drive_survive_and_cp_seeded_files_are_adopted(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src, n_files=12, big=1)
    image, spare = drives.image("d1", 8192), drives.image("d2", 2048)
    bay.insert(image)
    bay.enqueue(spare)
    (bay.point / "holiday photos").mkdir()
    (bay.point / "holiday photos/beach.jpg").write_bytes(b"not ours")
    (bay.point / "top-level file.txt").write_text("a different file of the same name\n")
    subprocess.run(["cp", "-a", f"{src}/Alpha", f"{bay.point}/Alpha"], check=True)
    seeded = {p: os.lstat(bay.point / p).st_ino for p in files_on(bay.point) if p.startswith("Alpha/")}

    result = backup(tmp_path, bay, "-v")

    # The file in the way is neither replaced nor worked around on another drive (copied back,
    # the drives would disagree about that path): the run says what and where, and exits 1.
    assert result.returncode == ExitCode.FILES_FAILED, result.stderr
    assert (
        "top-level file.txt: a file not put there by multivolumecopy is already at "
        f"{bay.point}/top-level file.txt (volume 1); move it away" in result.stderr
    )
    assert "the drive already holds 2 files (42 B) that are not part of this backup" in result.stderr
    assert bay.swaps() == []
    assert (bay.point / "holiday photos/beach.jpg").read_bytes() == b"not ours"
    assert (bay.point / "top-level file.txt").read_text() == "a different file of the same name\n"
    assert {p: os.lstat(bay.point / p).st_ino for p in seeded} == seeded  # adopted, not copied
    status = run_mvc("--status", "-f", str(tmp_path / "job.json"), cwd=tmp_path)
    assert status.returncode == 1 and "could not" in status.stdout, status.stdout
    # A re-run with the sources unchanged still leaves the foreign files alone, and still
    # does not call the job done.
    again = backup(tmp_path, bay)
    assert again.returncode == ExitCode.FILES_FAILED, again.stderr
    assert (bay.point / "holiday photos/beach.jpg").read_bytes() == b"not ours"
    assert (bay.point / "top-level file.txt").read_text() == "a different file of the same name\n"
    # Moved away, the file is saved by the next run.
    (bay.point / "top-level file.txt").rename(bay.point / "holiday photos/theirs.txt")
    done = backup(tmp_path, bay)
    assert done.returncode == 0, done.stderr
    assert (bay.point / "top-level file.txt").read_text() == "at the root\n"
    assert (bay.point / "holiday photos/beach.jpg").read_bytes() == b"not ours"


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_interrupted_mid_copy_then_rerun_gives_the_exact_tree(tmp_path, drives, bay, sig):
    src = big_source(tmp_path)
    images = [drives.image("d1", 60 * 1024), drives.image("d2", 60 * 1024)]
    bay.insert(images[0])
    bay.enqueue(images[1])
    proc = start_backup(tmp_path, bay)
    wait_for_partial_copy(bay, proc)

    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)

    if sig != signal.SIGKILL:
        assert proc.returncode == 130, err
        assert "run the same command again" in err
        assert leftovers(bay.point) == [], "an interrupt cleans up its partial file"
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
        assert leftovers(bay.point) != [], "a kill -9 mid-copy leaves a partial file to clean up"
    # Nothing sits under a final name unless it is complete.
    for rel in files_on(bay.point):
        s = src / rel
        assert os.lstat(bay.point / rel).st_size == os.lstat(s).st_size, f"{rel} is partial"

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    bay.eject()
    used = images[: len(bay.swaps()) + 1]
    check_drives(tmp_path, drives, used, src)
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["run"]["state"] == "done"


def test_killed_at_the_swap_then_rerun_continues_on_the_next_drive(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 700) for i in range(1, 6)]
    bay.insert(images[0])
    killer = tmp_path / "kill.sh"
    killer.write_text("kill -9 -$(ps -o pgid= $PPID | tr -d ' ')\n")
    r = subprocess.run(
        mvc_argv(
            str(src),
            "-o",
            str(bay.point),
            "-f",
            str(tmp_path / "job.json"),
            "--new-volume-script",
            f"sh {killer}",
        ),
        cwd=tmp_path,
        env=mvc_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=120,
    )
    assert r.returncode == -signal.SIGKILL
    bay.insert(images[1])
    bay.enqueue(*images[2:])

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    assert "continuing run 1" in rerun.stderr
    bay.eject()
    used = images[: len(bay.swaps()) + 2]
    check_drives(tmp_path, drives, used, src)


def test_no_terminal_and_no_script_stops_at_the_swap_and_says_which_drive(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 700) for i in range(1, 6)]
    bay.insert(images[0])
    args = (str(src), "-o", str(bay.point), "-f", str(tmp_path / "job.json"))

    stopped = run_mvc(*args, cwd=tmp_path)

    assert stopped.returncode == 3, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("multivolumecopy: a blank drive is needed for volume 2: insert it at ")
    assert last.endswith("then run the same command again to continue")
    # The operator swaps by hand and runs the same command until it is done.
    for img in images[1:]:
        bay.insert(img)
        r = run_mvc(*args, cwd=tmp_path)
        if r.returncode == 0:
            break
        assert r.returncode == 3, r.stderr
    assert r.returncode == 0
    used = images[: images.index(img) + 1]
    bay.eject()
    check_drives(tmp_path, drives, used, src)


def test_tmpfs_drive_works_as_a_volume(tmp_path, drives):
    src = tmp_path / "src"
    make_tree(src, n_files=15, big=1)
    point = tmp_path / "ram"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(point)], check=True)

    r = run_mvc(str(src), "-o", str(point), "-f", str(tmp_path / "job.json"), cwd=tmp_path)

    assert r.returncode == 0, r.stderr
    assert tree_differences(src, union_of([point], tmp_path / "u")) == ""


def test_a_drive_mounted_read_only_is_refused_before_anything_is_written(tmp_path, drives):
    src = tmp_path / "src"
    make_tree(src, n_files=5, big=0)
    point = drives.mount(drives.image("ro", 2048), tmp_path / "ro", readonly=True)

    r = run_mvc(str(src), "-o", str(point), "-f", str(tmp_path / "job.json"), cwd=tmp_path)

    assert r.returncode == 5
    assert r.stderr.strip().endswith(
        "is not writable (mounted read-only); mount the drive read-write or run as its owner"
    )
    assert not (tmp_path / "job.json").exists()


def test_drives_attached_at_once_are_filled_in_one_pass(tmp_path, drives):
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 1400) for i in range(1, 4)]
    points = [drives.mount(img, tmp_path / f"usb{n}") for n, img in enumerate(images, 1)]
    args = [str(src)] + [x for p in points for x in ("-o", str(p))] + ["-f", str(tmp_path / "job.json")]

    r = run_mvc(*args, cwd=tmp_path)

    assert r.returncode == 0, r.stderr
    assert "insert" not in r.stderr  # no swap was needed
    used = [img for img, p in zip(images, points) if (p / ".mvcopy-label.json").exists()]
    assert len(used) >= 2
    for p in points:
        drives.umount(p)
    check_drives(tmp_path, drives, used, src)


def test_another_writer_filling_the_drive_mid_file_moves_the_file_to_the_next_drive(tmp_path, drives, bay):
    src = big_source(tmp_path)
    images = [drives.image("d1", 90 * 1024), drives.image("d2", 120 * 1024)]
    bay.insert(images[0])
    bay.enqueue(images[1])
    proc = start_backup(tmp_path, bay)
    wait_for_partial_copy(bay, proc)

    # Someone else fills the drive while our copy is half written.
    filler = bay.point / "someone else's file"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=256k"], stderr=subprocess.DEVNULL)
    filler_size = filler.stat().st_size
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 0, err
    assert "volume 1 is full" in err
    assert bay.swaps() == [("1", "2")]
    bay.eject()
    with drives.inspect(images) as points:
        assert (points[0] / filler.name).stat().st_size == filler_size  # never touched
        assert all(leftovers(p) == [] for p in points)
        union = union_of(points, tmp_path / "union")
    (union / filler.name).unlink()
    assert tree_differences(src, union) == ""


def test_workers_do_not_outlive_a_parent_killed_alone(tmp_path, drives, bay):
    src = big_source(tmp_path)
    bay.insert(drives.image("d1", 120 * 1024))
    proc = start_backup(tmp_path, bay)
    wait_for_partial_copy(bay, proc)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers

    os.kill(proc.pid, signal.SIGKILL)  # the parent only, not its group
    proc.communicate(timeout=30)

    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == []
    rerun = backup(tmp_path, bay)
    assert rerun.returncode == 0, rerun.stderr
    assert tree_differences(src, union_of([bay.point], tmp_path / "union")) == ""
