"""Regression tests for what a tester reported: after every run the drives hold the source,
judged by rsync, sha256sum and plain listings on real loop-mounted drives, not by --verify."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import needs_root
from helpers import (
    backup,
    bay_args,
    check_drives,
    files_on,
    label_of,
    mvc_argv,
    mvc_env,
    run_mvc,
    start_backup,
    tree_differences,
    union_of,
    wait_for_partial_copy,
)

pytestmark = needs_root


# ---------------------------------------------------------------- local helpers


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def rnd(n: int) -> bytes:
    return os.urandom(n)


def jobfile(tmp_path: Path) -> str:
    return str(tmp_path / "job.json")


def differences(tmp_path: Path, drives, images: list[Path], src: Path) -> str:
    """rsync's differences between the source and what copying every drive back gives."""
    with drives.inspect(images) as points:
        union = union_of(points, tmp_path / f"union-{time.monotonic_ns()}")
    return tree_differences(src, union)


def point_differences(tmp_path: Path, points: list[Path], src: Path) -> str:
    return tree_differences(src, union_of(points, tmp_path / f"union-{time.monotonic_ns()}"))


def regular_files(point: Path) -> set[str]:
    return {p for p in files_on(point) if not os.path.islink(point / p)}


def holders(drives, images: list[Path], rel: str) -> list[int]:
    """The volumes (by their labels) on which ``rel`` is present."""
    with drives.inspect(images) as points:
        return [label_of(p)["volume"] for p in points if os.path.lexists(p / rel)]


def labelled(drives, images: list[Path]) -> list[Path]:
    """The images that became volumes of a job."""
    with drives.inspect(images) as points:
        return [img for img, p in zip(images, points) if (p / ".mvcopy-label.json").exists()]


def used_images(bay, images: list[Path]) -> list[Path]:
    """The drives a first backup through the bay used: the one inserted, then one a swap."""
    return images[: len(bay.swaps()) + 1]


# ---------------------------------------------------------------- 1. type changes


def test_a_folder_that_became_a_file_is_backed_up(tmp_path, drives, bay):
    # also a file that became a folder, a folder that became a symlink and the reverse
    # today: the re-run skips A, B, C, L ("something else is in the way") and exits 3
    src = tmp_path / "src"
    write(src / "A/f", "x\n")
    write(src / "B", "y\n")
    write(src / "C/c", "c\n")  # a folder that becomes a symlink
    os.symlink("A", src / "L")  # a symlink that becomes a folder
    write(src / "keep.txt", "unchanged\n")
    image = drives.image("d1", 2048)
    bay.insert(image)
    assert backup(tmp_path, bay).returncode == 0

    shutil.rmtree(src / "A")
    write(src / "A", "file\n")
    (src / "B").unlink()
    write(src / "B/inner", "z\n")
    shutil.rmtree(src / "C")
    os.symlink("keep.txt", src / "C")
    (src / "L").unlink()
    write(src / "L/l", "now a folder\n")
    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    assert point_differences(tmp_path, [bay.point], src) == ""
    third = backup(tmp_path, bay)
    assert third.returncode == 0 and "nothing to do" in third.stderr, third.stderr


# ---------------------------------------------------------------- 2. a file outgrowing its drive


def nearly_full_drive(tmp_path, drives, bay):
    """Six 100 kB files on a 1 MiB drive (about 120 KiB left); then f2 grows to 300 kB."""
    src = tmp_path / "src"
    for k in range(1, 7):
        write(src / f"f{k}", rnd(100_000))
    images = [drives.image("d1", 1024), drives.image("d2", 2048)]
    bay.insert(images[0])
    first = backup(tmp_path, bay)
    assert first.returncode == 0 and bay.swaps() == [], first.stderr
    write(src / "f2", rnd(300_000))
    return src, images


def test_a_changed_file_that_outgrew_its_drive_moves_to_the_next_drive(tmp_path, drives, bay):
    # today: exit 0, "wrote 0", the drive keeps the old f2; the next run says nothing to do
    src, images = nearly_full_drive(tmp_path, drives, bay)
    bay.enqueue(images[1])

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    bay.eject()
    used = labelled(drives, images)
    assert differences(tmp_path, drives, used, src) == ""
    assert len(holders(drives, used, "f2")) == 1
    check_drives(tmp_path, drives, used, src)  # and no file on two drives, no leftovers


def test_a_changed_file_that_outgrew_its_drive_with_no_drive_to_go_to_is_not_done(tmp_path, drives, bay):
    # today: exit 0 and --locate still says volume 1 holds f2 (the old 100 kB copy)
    src, images = nearly_full_drive(tmp_path, drives, bay)

    rerun = backup(tmp_path, bay)  # the bay's queue is empty: the swap script fails

    assert rerun.returncode == 3, rerun.stderr
    where = run_mvc("--locate", "f2", "-f", jobfile(tmp_path), cwd=tmp_path)
    assert "volume 1" not in where.stdout, where.stdout
    assert re.search(r"no drive|not on a volume", where.stdout + where.stderr), where.stdout


# ---------------------------------------------------------------- 3. a move is confirmed by content


def test_a_move_with_new_content_but_the_same_inode_size_and_mtime_is_copied(tmp_path, drives, bay):
    # today: b is "renamed in place" from a: the drive's b keeps a's old bytes (rsync -c: ">fc b")
    src = tmp_path / "src"
    write(src / "a", rnd(20_000))
    write(src / "other.txt", "stays\n")
    bay.insert(drives.image("d1", 2048))
    assert backup(tmp_path, bay).returncode == 0
    st = os.stat(src / "a")
    os.rename(src / "a", src / "b")
    with open(src / "b", "r+b") as fh:
        fh.write(rnd(20_000))
    os.utime(src / "b", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(src / "b").st_ino, os.stat(src / "b").st_size) == (st.st_ino, st.st_size)

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    assert not os.path.lexists(bay.point / "a")
    assert point_differences(tmp_path, [bay.point], src) == ""


# ---------------------------------------------------------------- 4. new folders, drives swapped at one point


def test_new_files_in_folders_a_drive_does_not_have_yet_are_backed_up(tmp_path, drives, bay):
    # today: exit 1, "FAILED a/b/c/x/new1: the drive refused it: No such file or directory"
    # (volume 2 gets a/b/c staged whole, but not the folder x, which is on volume 1)
    src = tmp_path / "src"
    write(src / "a/b/c/first", "10 bytes.\n")
    for k in range(4):
        write(src / f"a/b/c/x/old{k}", rnd(45_000))
    for k in range(2):
        write(src / f"z/h{k}", rnd(45_000))
    write(src / "z/old folder/inside.txt", "to be renamed\n")
    images = [drives.image(f"d{i}", 1024) for i in range(1, 5)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    first = backup(tmp_path, bay, "--volume-size", "200K")
    assert first.returncode == 0, first.stderr
    used = used_images(bay, images)
    assert len(used) == 2, first.stderr
    bay.eject()
    bay.log.write_text("")

    write(src / "a/b/c/nw5", rnd(30_000))  # volume 1 is full: these go to volume 2
    write(src / "a/b/c/x/new1", rnd(30_000))
    write(src / "a/b/c/x/new2", rnd(20_000))
    write(src / "a/b/new1/new2/deep.txt", "two levels down, under a folder on another drive\n")
    os.rename(src / "z/old folder", src / "z/renamed folder")
    write(src / "z/renamed folder/extra.txt", "a new file in a renamed folder\n")
    write(src / "m/n/o/p.txt", "a new tree\n")
    bay.insert(used[1])  # the drives in reverse order, then a blank one
    bay.enqueue(used[0], *images[2:])

    rerun = backup(tmp_path, bay, "--volume-size", "200K")

    assert rerun.returncode == 0, rerun.stderr
    assert "No such file or directory" not in rerun.stderr
    bay.eject()
    check_drives(tmp_path, drives, labelled(drives, images), src)


def test_a_second_volume_that_starts_two_levels_deep_in_a_folder(tmp_path, drives, bay):
    # today: PASSES (see the report): the cut inside a/b/c is handled
    src = tmp_path / "src"
    write(src / "a/first.bin", rnd(50_000))
    for k in range(6):
        write(src / f"a/b/c/f{k}.bin", rnd(60_000))
    write(src / "a/b/tail.txt", "after the deep folder\n")
    images = [drives.image(f"d{i}", 1024) for i in range(1, 5)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])

    first = backup(tmp_path, bay, "--volume-size", "200K")

    assert first.returncode == 0, first.stderr
    assert not [ln for ln in first.stderr.splitlines() if "No such file or directory" in ln]
    bay.eject()
    used = used_images(bay, images)
    assert len(used) >= 2
    assert differences(tmp_path, drives, used, src) == ""


# ---------------------------------------------------------------- 5. no drive mounted


def test_no_drive_mounted_at_the_bay_stops_and_writes_nothing_there(tmp_path, drives, bay):
    # today: exit 0: the bare mount point is taken as a blank drive, volume 2 is written on the
    # test's own disk (the new file does not fit on volume 1)
    src = tmp_path / "src"
    write(src / "a.txt", "a\n")
    bay.insert(drives.image("d1", 1024))
    args = (str(src), "-o", str(bay.point), "-f", jobfile(tmp_path))
    assert run_mvc(*args, cwd=tmp_path).returncode == 0
    bay.eject()
    assert os.listdir(bay.point) == []
    write(src / "big.bin", rnd(900_000))  # more than volume 1 has room for

    rerun = run_mvc(*args, cwd=tmp_path)

    assert rerun.returncode == 3, rerun.stderr
    assert "no drive" in rerun.stderr
    assert os.listdir(bay.point) == [], "something was written to the bare mount point"


def test_plain_directories_with_a_volume_size_still_work(tmp_path, drives):
    # control: passes today
    src = tmp_path / "src"
    for k in range(6):
        write(src / f"d/f{k}", rnd(40_000))
    usb = tmp_path / "dirs/usb"
    usb.mkdir(parents=True)
    swap = 'mv "$MVCOPY_OUTPUT" "$MVCOPY_OUTPUT-$MVCOPY_VOLUME" && mkdir "$MVCOPY_OUTPUT"'
    args = (str(src), "-o", str(usb), "-f", jobfile(tmp_path), "--volume-size", "150K")

    first = run_mvc(*args, "--new-volume-script", swap, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    points = sorted((tmp_path / "dirs").iterdir())
    assert len(points) >= 2
    assert point_differences(tmp_path, points, src) == ""
    # A re-run onto a plain directory (not a mount point) is not "no drive" either.
    folder = tmp_path / "folder"
    folder.mkdir()
    again = (str(src), "-o", str(folder), "-f", str(tmp_path / "other.json"), "--volume-size", "10M")
    assert run_mvc(*again, cwd=tmp_path).returncode == 0
    write(src / "d/later.txt", "added\n")
    rerun = run_mvc(*again, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert point_differences(tmp_path, [folder], src) == ""


# ---------------------------------------------------------------- 6. Ctrl-C mid-copy


def many_files_source(src: Path) -> None:
    """Ten folders of 250 files of 1-8 KiB, and three of 16 MiB among them."""
    for d in range(10):
        for k in range(250):
            write(src / f"dir{d:02}/small{k:03}.bin", rnd(1024 * (1 + (d * 7 + k) % 8)))
        if d % 4 == 1:
            write(src / f"dir{d:02}/large.bin", rnd(16 * 1024 * 1024))


def wait_for_files_in_flight(bay, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Poll until a folder of new files is being filled in .mvcopy-tmp: many small files in flight."""
    tmp = bay.point / ".mvcopy-tmp"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for batch in tmp.iterdir():
                for staged in batch.iterdir():
                    if staged.is_dir() and any(True for _ in staged.iterdir()):
                        return
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.communicate()}")
    pytest.fail("never saw files in flight")


def roomy_image(drives, name: str, size_kib: int, inodes: int) -> Path:
    """An ext4 image with room for more files than drives.image gives (it makes 1024 inodes)."""
    img = drives.top / f"{name}.img"
    with open(img, "wb") as fh:
        fh.truncate(size_kib * 1024)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-N", str(inodes), str(img)], check=True
    )
    drives.images.append(img)
    return img


def test_ctrl_c_mid_copy_then_a_rerun_leaves_every_file_hashed(tmp_path, drives, bay):
    # today: "FAILED dir00/small000.bin: the drive refused it: No such file or directory" for the
    # files in flight; after the re-run some files have no line in .mvcopy-sha256sums
    src = tmp_path / "src"
    many_files_source(src)
    bay.insert(roomy_image(drives, "d1", 100 * 1024, 8192))
    proc = subprocess.Popen(
        mvc_argv(*bay_args(tmp_path, bay, "-w", "4")),
        cwd=tmp_path,
        env=mvc_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for_files_in_flight(bay, proc)

    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    bad = [ln for ln in err.splitlines() if "FAILED" in ln or "No such file or directory" in ln]
    assert bad == [], err
    rerun = backup(tmp_path, bay)
    assert rerun.returncode == 0, rerun.stderr
    on_drive = regular_files(bay.point)
    sums = subprocess.run(
        ["sha256sum", "-c", ".mvcopy-sha256sums"], cwd=bay.point, capture_output=True, text=True
    )
    assert sums.returncode == 0, sums.stdout + sums.stderr
    listed = {ln.split("  ", 1)[1] for ln in (bay.point / ".mvcopy-sha256sums").read_text().splitlines()}
    assert listed == on_drive, f"files with no recorded hash: {sorted(on_drive - listed)[:5]}"
    verify = run_mvc("--verify", "--checksum", "-f", jobfile(tmp_path), "-o", str(bay.point), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "no recorded hash" not in verify.stdout + verify.stderr
    assert point_differences(tmp_path, [bay.point], src) == ""


# ---------------------------------------------------------------- 8. a symlink re-made with a new time


def test_a_symlink_remade_with_the_same_target_and_a_new_time_is_updated(tmp_path, drives, bay):
    # today: the re-run leaves the drive's link with its old time (rsync: ".L..t...... link")
    src = tmp_path / "src"
    write(src / "target.txt", "t\n")
    os.symlink("target.txt", src / "link")
    os.utime(src / "link", ns=(1_500_000_000_000_000_000,) * 2, follow_symlinks=False)
    bay.insert(drives.image("d1", 2048))
    assert backup(tmp_path, bay).returncode == 0
    (src / "link").unlink()
    os.symlink("target.txt", src / "link")
    os.utime(src / "link", ns=(1_600_000_000_000_000_000,) * 2, follow_symlinks=False)

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    assert point_differences(tmp_path, [bay.point], src) == ""


# ---------------------------------------------------------------- 10. the jobfile is lost


def small_tree(src: Path) -> Path:
    write(src / "a.txt", "a\n")
    write(src / "d/b.txt", "b\n")
    write(src / "d/e/c.bin", rnd(5000))
    return src


def test_a_lost_jobfile_is_rebuilt_from_the_drive(tmp_path, drives, bay):
    # today: the drive is refused ("volume 1 of another job") and the queued blank drive
    # becomes a new volume 1 holding every file again
    src = small_tree(tmp_path / "src")
    images = [drives.image("d1", 2048), drives.image("d2", 2048)]
    bay.insert(images[0])
    assert backup(tmp_path, bay).returncode == 0
    for name in ("job.json", "job.json.cache"):
        (tmp_path / name).unlink(missing_ok=True)
    bay.enqueue(images[1])  # were a new volume started, it would go here

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    assert "another job" not in rerun.stderr
    assert (tmp_path / "job.json").is_file()
    assert bay.swaps() == [], "a second volume was started for files already on the drive"
    assert {row[5] for row in json.loads((tmp_path / "job.json").read_text())["files"]} == {1}
    assert point_differences(tmp_path, [bay.point], src) == ""


def test_the_same_sources_with_a_jobfile_in_another_folder_use_the_drive(tmp_path, drives, bay):
    # today: exit 3, "drive refused: it is volume 1 of another job"
    src = small_tree(tmp_path / "src")
    bay.insert(drives.image("d1", 2048))
    assert backup(tmp_path, bay).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(src / "d/new.txt", "added since\n")

    rerun = run_mvc(str(src), "-o", str(bay.point), "--new-volume-script", bay.script, cwd=elsewhere)

    assert rerun.returncode == 0, rerun.stderr
    assert "another job" not in rerun.stderr
    assert (elsewhere / ".mvcopy-jobdata.json").is_file()
    assert bay.swaps() == []
    assert point_differences(tmp_path, [bay.point], src) == ""


# ---------------------------------------------------------------- 11. --dry-run and a chmod


def test_dry_run_lists_a_volume_that_needs_only_a_chmod(tmp_path, drives, bay):
    # today: "insert" is [] and volume 2's entry has no "chmod" key
    src = tmp_path / "src"
    for k in range(6):
        write(src / f"d/f{k}", rnd(50_000))
    images = [drives.image(f"d{i}", 1024) for i in range(1, 4)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    assert backup(tmp_path, bay, "--volume-size", "160K").returncode == 0
    assert bay.swaps()[:1] == [("1", "2")]
    job = json.loads((tmp_path / "job.json").read_text())
    on_two = sorted(r[0] for r in job["files"] if r[5] == 2 and r[1] == "f")[0]
    os.chmod(src / on_two, 0o600)

    dry = run_mvc(
        str(src), "-f", jobfile(tmp_path), "--volume-size", "160K", "--dry-run", "--json", cwd=tmp_path
    )

    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert 2 in plan["insert"], plan
    assert on_two in plan["volumes"]["2"].get("chmod", []), plan


# ---------------------------------------------------------------- 12. no tracebacks


@pytest.fixture
def read_only_folder(tmp_path):
    point = tmp_path / "ro"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(point)], check=True)
    yield point
    subprocess.call(["umount", str(point)])


@pytest.mark.parametrize("where", ["missing folder", "/dev/null", "read-only folder"])
def test_a_jobfile_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path, drives, where, request):
    # today: missing folder and read-only folder: exit 70 with a traceback (FileNotFoundError,
    # OSError EROFS on job.json.lock); /dev/null: passes (exit 6, one line)
    src = small_tree(tmp_path / "src")
    point = drives.mount(drives.image("d1", 2048), tmp_path / "usb")
    if where == "missing folder":
        job = tmp_path / "not/there/job.json"
    elif where == "/dev/null":
        job = Path("/dev/null")
    else:
        job = request.getfixturevalue("read_only_folder") / "job.json"

    r = run_mvc(str(src), "-o", str(point), "-f", str(job), cwd=tmp_path)

    assert "Traceback" not in r.stderr, r.stderr
    if where == "missing folder":
        assert r.returncode == 6 and not job.parent.exists(), r.stderr  # refused, not made
    else:
        assert r.returncode in ((6,) if where == "/dev/null" else (5, 6)), r.stderr
    if r.returncode:
        lines = r.stderr.strip().splitlines()
        assert lines[-1].startswith("multivolumecopy:"), r.stderr
        assert len(lines) == 1 or where == "read-only folder", r.stderr


# ---------------------------------------------------------------- 13. exFAT, folders differing in case


def test_folders_differing_only_in_case_on_exfat_verify_and_restore(tmp_path, drives):
    # today: --verify exits 10 and calls Photos/c.jpg and Photos/b~<hash>.jpg "extra"
    for tool in ("mkfs.exfat", "mount.exfat-fuse"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install exfatprogs and exfat-fuse (tests/run does, as root)")
    stick = drives.mount_exfat(drives.exfat("stick"), tmp_path / "stick")
    src = tmp_path / "src"
    write(src / "Photos/a.jpg", "A in Photos\n")
    write(src / "Photos/b.jpg", "B in Photos\n")
    write(src / "photos/b.jpg", "another B, in photos\n")
    write(src / "photos/c.jpg", "C in photos\n")
    t = 1_600_000_000_000_000_000
    for p in sorted(src.rglob("*"), reverse=True):
        os.utime(p, ns=(t, t))

    r = run_mvc(str(src), "-o", str(stick), "-f", jobfile(tmp_path), cwd=tmp_path)

    assert r.returncode == 0, r.stderr
    # two folders on the drive, each with its own files (a copy-back by hand keeps them apart)
    folders = sorted(p for p in stick.iterdir() if not p.name.startswith(".mvcopy"))
    assert [p.name.lower()[:6] for p in folders] == ["photos", "photos"], folders
    assert sorted(len(list(p.iterdir())) for p in folders) == [2, 2], folders
    verify = run_mvc("--verify", "-f", jobfile(tmp_path), "-o", str(stick), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "extra" not in verify.stdout.replace("0 extra", ""), verify.stdout
    out = tmp_path / "out"
    back = run_mvc("--restore", "--to", str(out), "-f", jobfile(tmp_path), "-o", str(stick), cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert tree_differences(src, out) == ""
    # A re-run adds below both folders, deeper too: each lands in the folder it belongs to.
    write(src / "photos/new/d.jpg", "D, deeper in photos\n")
    write(src / "Photos/e.jpg", "E in Photos\n")
    (src / "photos/c.jpg").unlink()
    again = run_mvc(str(src), "-o", str(stick), "-f", jobfile(tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    verify = run_mvc("--verify", "-f", jobfile(tmp_path), "-o", str(stick), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    on_stick = {str(p.relative_to(stick)) for p in stick.rglob("*.jpg")}
    assert "Photos/e.jpg" in on_stick and not any(p.lower().endswith("c.jpg") for p in on_stick)
    deeper = [p for p in on_stick if p.endswith("/new/d.jpg")]
    assert len(deeper) == 1 and deeper[0].startswith("photos~"), on_stick  # not merged into Photos/
    out2 = tmp_path / "out2"
    back = run_mvc("--restore", "--to", str(out2), "-f", jobfile(tmp_path), "-o", str(stick), cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert tree_differences(src, out2) == ""


def test_names_that_escape_alike_on_exfat_are_two_files_and_two_folders(tmp_path, drives):
    """exFAT refuses ``:``: it is stored ``%3A``, which a name may already hold as it is."""
    if shutil.which("mount.exfat-fuse") is None:
        pytest.fail("mount.exfat-fuse is missing: install exfat-fuse (tests/run does, as root)")
    stick = drives.mount_exfat(drives.exfat("stick"), tmp_path / "stick")
    src = tmp_path / "src"
    write(src / "a%3Ab", "the file named a%3Ab\n")
    write(src / "a:b", "the file named a:b\n")
    write(src / "x%3Ay/f", "f in x%3Ay\n")
    write(src / "x:y/f", "f in x:y\n")

    r = run_mvc(str(src), "-o", str(stick), "-f", jobfile(tmp_path), cwd=tmp_path)

    assert r.returncode == 0, r.stderr
    assert len([p for p in stick.rglob("*") if p.is_file() and not p.name.startswith(".mvcopy")]) == 4
    verify = run_mvc("--verify", "--checksum", "-f", jobfile(tmp_path), "-o", str(stick), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    out = tmp_path / "out"
    back = run_mvc("--restore", "--to", str(out), "-f", jobfile(tmp_path), "-o", str(stick), cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert tree_differences(src, out) == ""


# ---------------------------------------------------------------- 15. guards for untested paths


def test_a_foreign_file_in_a_purged_folder_is_kept(tmp_path, drives, bay):
    # passes today
    src = small_tree(tmp_path / "src")
    write(src / "D/ours.txt", "ours\n")
    write(src / "D/sub/deeper.txt", "ours too\n")
    bay.insert(drives.image("d1", 2048))
    assert backup(tmp_path, bay).returncode == 0
    write(bay.point / "D/mine.txt", "not from the job\n")
    shutil.rmtree(src / "D")

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    assert (bay.point / "D/mine.txt").read_text() == "not from the job\n"
    assert sorted(os.listdir(bay.point / "D")) == ["mine.txt"]
    (bay.point / "D/mine.txt").unlink()
    (bay.point / "D").rmdir()
    assert point_differences(tmp_path, [bay.point], src) == ""


def test_foreign_files_survive_a_rerun_that_changes_their_folder(tmp_path, drives, bay):
    # The foreign files pass today; the one where a new source file arrives is now refused
    # (exit 1, what and where) instead of putting the new file on another drive.
    src = small_tree(tmp_path / "src")
    images = [drives.image("d1", 2048), drives.image("d2", 2048)]
    bay.insert(images[0])
    assert backup(tmp_path, bay).returncode == 0
    foreign = {"mine at the root.txt": "root\n", "d/mine.txt": "in a job folder\n", "d/clash.txt": "theirs\n"}
    for rel, text in foreign.items():
        write(bay.point / rel, text)
    write(src / "d/b.txt", "changed\n")
    (src / "d/e/c.bin").unlink()
    write(src / "d/new.txt", "new\n")
    write(src / "d/clash.txt", "ours, where a foreign file sits\n")
    bay.enqueue(images[1])

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 1, rerun.stderr
    assert f"d/clash.txt: a file not put there by multivolumecopy is already at {bay.point}/d/clash.txt" in (
        rerun.stderr
    )
    assert {rel: (bay.point / rel).read_text() for rel in foreign} == foreign
    (bay.point / "d/clash.txt").unlink()  # the operator moves it away
    assert backup(tmp_path, bay).returncode == 0
    bay.eject()
    used = labelled(drives, images)
    assert len(used) == 1
    with drives.inspect(used) as points:
        union = union_of(points, tmp_path / "union")
    for rel in ("mine at the root.txt", "d/mine.txt"):
        assert (union / rel).read_text() == foreign[rel]
        folder = (union / rel).parent
        st = folder.stat()
        (union / rel).unlink()
        os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns))  # as the drives had it
    assert tree_differences(src, union) == ""


def test_a_drive_with_less_room_than_its_record_sends_what_does_not_fit_to_the_next_drive(
    tmp_path, drives, bay
):
    """Someone filled the drive since the last run: the run plans by the record, the copies meet
    a full drive, and what did not fit (new files, rewrites of files that grew: their old copies
    go) goes to the next drive; exit 0 only once the drives hold the source."""
    src = tmp_path / "src"
    for k in range(8):
        write(src / f"d/f{k}", rnd(60_000))
    images = [drives.image("d1", 2048), drives.image("d2", 2048)]
    bay.insert(images[0])
    assert backup(tmp_path, bay).returncode == 0
    free = os.statvfs(bay.point).f_bavail * os.statvfs(bay.point).f_frsize
    write(bay.point / "junk.bin", rnd(free - 90_000))  # not ours: it stays
    for k in range(3):
        write(src / f"d/f{k}", rnd(120_000))  # grown
        write(src / f"d/g{k}", rnd(70_000))  # new, beside them
    bay.enqueue(images[1])

    rerun = backup(tmp_path, bay)

    assert rerun.returncode == 0, rerun.stderr
    assert bay.swaps() == [("1", "2")], rerun.stderr
    bay.eject()
    with drives.inspect(images) as points:
        assert (points[0] / "junk.bin").stat().st_size == free - 90_000
        union = union_of(points, tmp_path / "union")
    (union / "junk.bin").unlink()
    assert tree_differences(src, union) == ""


def test_a_file_its_drive_lost_and_that_cannot_be_read_now_is_not_counted_as_saved(tmp_path, drives, bay):
    """The drive holds less than its record says (a file gone from it), and the source cannot be
    read now: the file is not saved anywhere, and the run must not say otherwise."""
    src = small_tree(tmp_path / "src")
    write(src / "d/lost.txt", "the drive lost this one\n")
    bay.insert(drives.image("d1", 2048))
    assert backup(tmp_path, bay).returncode == 0
    (bay.point / "d/lost.txt").unlink()
    manifest = json.loads((bay.point / ".mvcopy-manifest.json").read_text())
    manifest["entries"] = [row for row in manifest["entries"] if row[0] != "d/lost.txt"]
    (bay.point / ".mvcopy-manifest.json").write_text(json.dumps(manifest))
    write(src / "a.txt", "changed, so that volume 1 is visited\n")
    (src / "d/lost.txt").chmod(0)
    no_override = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]  # as a backup user

    rerun = subprocess.run(
        no_override + mvc_argv(*bay_args(tmp_path, bay)),
        cwd=tmp_path,
        env=mvc_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert rerun.returncode == 1, rerun.stderr
    assert "d/lost.txt: cannot read: Permission denied" in rerun.stderr
    located = run_mvc("--locate", "lost.txt", "-f", jobfile(tmp_path), cwd=tmp_path)
    assert "on no drive" in located.stdout, located.stdout
    (src / "d/lost.txt").chmod(0o644)
    assert backup(tmp_path, bay).returncode == 0
    assert (bay.point / "d/lost.txt").read_text() == "the drive lost this one\n"


def test_a_rewrite_that_meets_a_full_drive_goes_to_the_next_drive_and_its_old_copy_goes(
    tmp_path, drives, bay
):
    """Someone fills the drive while a rewrite is half written: the rewrite goes to the next
    drive, and its old copy leaves the first (no file on two drives, no older version left)."""
    src = tmp_path / "src"
    for k in range(4):
        write(src / f"large {k}.bin", rnd(24 * 1024 * 1024))
    images = [drives.image("d1", 140 * 1024), drives.image("d2", 140 * 1024)]
    bay.insert(images[0])
    assert backup(tmp_path, bay).returncode == 0
    for k in (1, 2):
        write(src / f"large {k}.bin", rnd(24 * 1024 * 1024))
    bay.enqueue(images[1])
    proc = start_backup(tmp_path, bay)
    wait_for_partial_copy(bay, proc)

    filler = bay.point / "someone else's file"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=256k"], stderr=subprocess.DEVNULL)
    out, err = proc.communicate(timeout=180)

    assert proc.returncode == 0, err
    bay.eject()
    with drives.inspect(images) as points:
        on = [files_on(p) for p in points]
        union = union_of(points, tmp_path / "union")
    assert not (on[0] - {filler.name}) & on[1], "a file on both drives"
    (union / filler.name).unlink()
    assert tree_differences(src, union) == ""


def test_the_jobfile_is_replaced_atomically(tmp_path, drives, bay):
    # passes today
    src = small_tree(tmp_path / "src")
    bay.insert(drives.image("d1", 2048))
    assert backup(tmp_path, bay).returncode == 0
    before = json.loads((tmp_path / "job.json").read_text())
    write(src / "d/new.txt", "new\n")

    killed = subprocess.run(
        mvc_argv(*bay_args(tmp_path, bay)),
        cwd=tmp_path,
        env=mvc_env({"MVCOPY_FAULT": "replace:job.json"}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=120,
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after = json.loads((tmp_path / "job.json").read_text())
    assert after["job_id"] == before["job_id"]
    assert after == before
    rerun = backup(tmp_path, bay)
    assert rerun.returncode == 0, rerun.stderr
    assert point_differences(tmp_path, [bay.point], src) == ""


def test_the_drive_is_synced_before_its_manifest_is_committed(tmp_path, drives, bay):
    # passes today
    if shutil.which("strace") is None:
        pytest.skip("strace is missing: it watches the order of syncfs and rename")
    src = tmp_path / "src"
    for k in range(6):
        write(src / f"d/f{k}", rnd(50_000))
    images = [drives.image(f"d{i}", 1024) for i in range(1, 4)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    log = tmp_path / "strace.log"
    calls = "trace=syncfs,fsync,rename,renameat,renameat2"
    trace = ["strace", "-f", "-qq", "-y", "-e", calls, "-o", str(log)]  # -y: the path of each fd

    r = subprocess.run(
        trace + mvc_argv(*bay_args(tmp_path, bay, "--volume-size", "160K")),
        cwd=tmp_path,
        env=mvc_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert r.returncode == 0, r.stderr
    synced: dict[str, bool] = {}
    commits = 0
    drive = re.escape(str(bay.point))
    for line in log.read_text().splitlines():
        pid, call = line.split(None, 1)  # strace pads the pid to a width
        if re.match(rf"syncfs\(\d+<{drive}>", call):
            synced[pid] = True
        elif re.match(r'rename\w*\(.*\.mvcopy-manifest\.json"', call):
            assert synced.get(pid), f"the manifest went in place with no syncfs of the drive before: {line}"
            synced[pid] = False  # the next commit needs a sync of its own
            commits += 1
    assert commits >= 2, "no manifest commit seen in the trace"


# ---------------------------------------------------------------- 18. a foreign symlink where a folder goes


def test_a_foreign_symlink_where_a_folder_goes_is_never_followed(tmp_path, drives):
    # today: exit 3 (a blank drive asked for), stderr says "a file not ours is already there"
    src = small_tree(tmp_path / "src")
    write(src / "docs/a.txt", "a\n")
    write(src / "docs/inner/b.txt", "b\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    point = drives.mount(drives.image("d1", 2048), tmp_path / "usb")
    os.symlink(elsewhere, point / "docs")

    r = run_mvc(str(src), "-o", str(point), "-f", jobfile(tmp_path), cwd=tmp_path)

    assert r.returncode == 1, r.stderr
    said = [ln for ln in r.stderr.splitlines() if "docs" in ln and "symlink" in ln]
    assert said, r.stderr
    assert "does not fit" not in r.stderr
    assert os.listdir(elsewhere) == [], "something was written through the foreign symlink"
    assert os.readlink(point / "docs") == str(elsewhere)
    for rel in ("a.txt", "d/b.txt", "d/e/c.bin"):
        assert (point / rel).read_bytes() == (src / rel).read_bytes()


# ---------------------------------------------------------------- 6. every file on a drive gets its hash


def test_files_without_a_hash_are_hashed_by_the_next_run_that_hashes(tmp_path):
    """Files copied with --no-hash (or adopted by an older version, which did not hash what it
    adopted) are read on the drive and in the sources by the next run that hashes, and get their
    line in .mvcopy-sha256sums; one whose copy differs from the source is written again."""
    src, usb = tmp_path / "src", tmp_path / "usb"
    usb.mkdir()
    for k in range(5):
        write(src / f"d/f{k}.txt", f"file {k}\n" * (k + 1))
    assert (
        run_mvc(str(src), "-o", str(usb), "-f", jobfile(tmp_path), "--no-hash", cwd=tmp_path).returncode == 0
    )
    assert (usb / ".mvcopy-sha256sums").read_text() == ""
    scrub = run_mvc("--verify", "--checksum", "-f", jobfile(tmp_path), "-o", str(usb), cwd=tmp_path)
    assert scrub.returncode == 10, scrub.stdout  # it could not check them: not a pass
    # Bit rot on the drive, same size and time: only reading both sides can tell.
    rotten = usb / "d/f2.txt"
    st = rotten.stat()
    rotten.write_text(rotten.read_text().replace("2", "X"))
    os.utime(rotten, ns=(st.st_atime_ns, st.st_mtime_ns))

    again = run_mvc(str(src), "-o", str(usb), "-f", jobfile(tmp_path), cwd=tmp_path)

    assert again.returncode == 0, again.stderr
    assert (usb / "d/f2.txt").read_text() == (src / "d/f2.txt").read_text()
    sums = subprocess.run(["sha256sum", "-c", ".mvcopy-sha256sums"], cwd=usb, capture_output=True, text=True)
    assert sums.returncode == 0 and sums.stdout.count(": OK") == 5, sums.stdout + sums.stderr
    scrub = run_mvc("--verify", "--checksum", "-f", jobfile(tmp_path), "-o", str(usb), cwd=tmp_path)
    assert scrub.returncode == 0, scrub.stdout
    third = run_mvc(str(src), "-o", str(usb), "-f", jobfile(tmp_path), cwd=tmp_path)
    assert third.returncode == 0 and "nothing to do" in third.stderr, third.stderr
