"""Replacing a lost drive of a job with parity (issue 17): ``--replace-volume P1`` makes a blank
drive the new parity drive, computed from the source; ``--restore --lost-volume N
--replace-volume N`` writes a new drive N from the parity drive and the other drives, with no
source.  Real loop-mounted ext4 drives (root); files checked against the source by rsync."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from test_parity import VOLUME_SIZE, differences, drive_roles, first_backup, rebuild_and_check, wipe

from helpers import Bay, Drives, backup, bay_args, label_of, run_mvc


def status_line(tmp_path: Path) -> str:
    r = run_mvc("--status", "-f", str(tmp_path / "job.json"), cwd=tmp_path)
    return r.stdout.splitlines()[0]


def kept_copy(drives: Drives, image: Path, name: str) -> Path:
    """The drive as it was, set aside (a copy of its image), before it is lost."""
    copy = image.with_name(f"{name}.img")
    shutil.copyfile(image, copy)
    drives.images.append(copy)  # deleted with the others
    return copy


def test_a_lost_parity_drive_is_replaced_from_the_source_and_the_old_one_is_refused(drives, bay, tmp_path):
    images = first_backup(tmp_path, drives, bay)
    volumes, parity, held = drive_roles(drives, images)
    old = kept_copy(drives, parity, "old-p1")
    wipe(drives, parity)  # P1 lost: the same image, blank now, is the new drive
    # Without --replace-volume a blank drive is not taken for the job's P1 (nothing changed in the
    # source: the run needs no drive at all, so change a file of volume 1 first).
    src = tmp_path / "src"
    on1 = sorted(p for p in held[1] if (src / p).is_file() and not (src / p).is_symlink())
    (src / on1[0]).write_bytes(os.urandom(3000))
    bay.enqueue(parity)
    bay.insert(volumes[1])
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE)
    assert r.returncode == 3, r.stderr
    assert "it is a blank drive, but the job's parity drive P1 exists" in r.stderr
    assert "--replace-volume P1" in r.stderr
    bay.eject()

    # The old P1 offered first is refused as the one being replaced; the blank one becomes P1.
    bay.enqueue(parity)
    bay.insert(old)
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE, "--replace-volume", "P1")
    assert r.returncode == 0, r.stderr
    assert "it is the parity drive P1 being replaced (--replace-volume P1); insert a blank drive" in r.stderr
    assert "parity drive P1 updated" in r.stderr
    assert bay.swaps()[-1][1] == "P1"
    bay.eject()
    assert "parity P1 current" in status_line(tmp_path)
    with drives.inspect([parity, old]) as (new_point, old_point):
        new_label, old_label = label_of(new_point), label_of(old_point)
        assert new_label["role"] == "parity" and new_label["volume_uuid"] != old_label["volume_uuid"]
        assert (new_point / ".mvcopy-jobdata.json").is_file()
        assert (new_point / ".mvcopy-parity-map.json").is_file()
        record = json.loads((new_point / ".mvcopy-parity.json").read_text())
        assert record["uuid"] == new_label["volume_uuid"] and record["invalid"] == []

    # Later, the old P1 turns up: refused, never written over; the new one is kept current.
    (src / on1[1]).write_bytes(os.urandom(2000))
    bay.enqueue(old, parity)
    bay.insert(volumes[1])
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE)
    assert r.returncode == 0, r.stderr
    assert "it is a replaced parity drive of this job" in r.stderr
    assert "parity drive P1 updated" in r.stderr
    bay.eject()
    with drives.inspect([old]) as (old_point,):
        assert json.loads((old_point / ".mvcopy-parity.json").read_text())["uuid"] == old_label["volume_uuid"]
        assert label_of(old_point) == old_label

    # A data drive lost now is rebuilt exactly with the new P1 (the old one offered first is
    # refused by the rebuild too).
    rebuild_and_check(tmp_path, drives, bay, images, 2, "new-p1", first=old)
    assert "it is a replaced parity drive of this job" in (tmp_path / "rebuilt-new-p1.stderr").read_text()


def test_a_parity_replacement_killed_midway_is_finished_by_the_same_command(drives, bay, tmp_path):
    images = first_backup(tmp_path, drives, bay)
    volumes, parity, held = drive_roles(drives, images)
    wipe(drives, parity)
    bay.insert(parity)
    args = bay_args(tmp_path, bay, "--volume-size", VOLUME_SIZE, "--replace-volume", "P1")
    r = run_mvc(*args, cwd=tmp_path, env_extra={"MVCOPY_FAULT": "parity:written"}, start_new_session=True)
    assert r.returncode == -9, r.stderr
    # Cut short, the new P1 protects nothing yet, and --status says so (not the old record).
    assert "parity P1 current" not in status_line(tmp_path)
    r = run_mvc(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "drive refused" not in r.stderr, "the drive labelled by the cut run finishes it"
    assert "parity drive P1 updated" in r.stderr
    bay.eject()
    assert "parity P1 current" in status_line(tmp_path)
    rebuild_and_check(tmp_path, drives, bay, images, 1, "after-kill")


def test_replace_volume_p1_on_a_job_without_parity_is_refused_in_one_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    (tmp_path / "usb").mkdir()
    r = run_mvc(str(src), "-o", str(tmp_path / "usb"), "-f", str(tmp_path / "job.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_mvc(
        str(src), "-o", str(tmp_path / "usb"), "-f", str(tmp_path / "job.json"), "--replace-volume", "P1",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().endswith("this job has no parity drive to replace; --parity 1 makes one")
    r = run_mvc(str(src), "-o", str(tmp_path / "usb"), "--replace-volume", "P2", cwd=tmp_path)
    assert r.returncode == 2 and "'P2' is neither a volume number nor P1" in r.stderr


def replace_volume(tmp_path: Path, bay: Bay, lost: int, new: Path, **kw) -> subprocess.CompletedProcess:
    """``--restore --lost-volume N --replace-volume N``: the new drive at ``new``, the others in turn
    in the bay (the parity drive first)."""
    return run_mvc(
        "--restore", "--lost-volume", str(lost), "--replace-volume", str(lost), "--to", str(new),
        "-f", str(tmp_path / "job.json"), "-o", str(bay.point), "--new-volume-script", bay.script,
        cwd=tmp_path, **kw,
    )  # fmt: skip


def test_a_lost_data_drive_is_written_anew_from_the_parity_as_volume_n_without_the_source(
    drives, bay, tmp_path
):
    images = first_backup(tmp_path, drives, bay, link=True)
    volumes, parity, held = drive_roles(drives, images)
    src = tmp_path / "src"
    lost = next(v for v, paths in held.items() if "zeta/big 0 again.dat" in paths)
    old = kept_copy(drives, volumes[lost], "old-volume")
    wipe(drives, volumes[lost])
    others = [img for v, img in sorted(volumes.items(), reverse=True) if v != lost]
    new = drives.mount(volumes[lost], tmp_path / "new")
    (new / "stray.txt").write_text("not ours")
    src.rename(tmp_path / "src-away")  # the server is gone too
    try:
        bay.enqueue(*others)
        bay.insert(parity)
        r = replace_volume(tmp_path, bay, lost, new)
        assert r.returncode == 5, r.stderr
        assert (
            r.stderr.strip()
            .splitlines()[-1]
            .endswith(
                f"is not blank (it holds 'stray.txt'); --replace-volume {lost} writes a whole new volume "
                f"{lost}: give it an empty drive"
            )
        )
        (new / "stray.txt").unlink()
        # Killed once the files are in place, before the drive's commit: the same command finishes.
        bay.enqueue(*others)
        bay.insert(parity)
        r = replace_volume(
            tmp_path, bay, lost, new, env_extra={"MVCOPY_FAULT": "replace:files"}, start_new_session=True
        )
        assert r.returncode == -9, r.stderr
        bay.enqueue(*others)
        bay.insert(parity)
        r = replace_volume(tmp_path, bay, lost, new)
        assert r.returncode == 0, r.stderr
        assert f"volume {lost} written anew at {new}" in r.stderr
        bay.eject()
    finally:
        (tmp_path / "src-away").rename(src)
    assert not (new / ".mvcopy-rebuild").exists()
    assert (new / ".mvcopy-jobdata.json").is_file() and (new / ".mvcopy-parity-map.json").is_file()
    assert label_of(new)["volume"] == lost
    assert differences(src, new, held[lost]) == ""
    assert (new / "zeta/big 0.dat").stat().st_ino == (new / "zeta/big 0 again.dat").stat().st_ino
    r = run_mvc("--verify", "-f", str(tmp_path / "job.json"), "-o", str(new), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    drives.umount(new)

    # The source back, a normal run: the new drive is volume N, with nothing to change; the lost
    # drive's old copy is refused.
    changed_volume = next(v for v in volumes if v != lost)
    on = sorted(p for p in held[changed_volume] if (src / p).is_file() and not (src / p).is_symlink())
    (src / on[0]).write_bytes(os.urandom(1000))
    bay.enqueue(old, volumes[changed_volume], parity)
    bay.insert(volumes[lost])
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"volume {lost} done: [^\n]*nothing on it needed changing", r.stderr), r.stderr
    assert f"it says it is volume {lost}, but the jobfile knows volume {lost} as another drive" in r.stderr
    assert "parity drive P1 updated" in r.stderr
    bay.eject()
    with drives.inspect([volumes[lost]]) as (point,):
        assert differences(src, point, held[lost]) == ""
    assert "parity P1 current" in status_line(tmp_path)
    # Another volume lost now is rebuilt with the new drive N among the others.
    rebuild_and_check(tmp_path, drives, bay, images, changed_volume, "after-replace")


def test_replace_volume_with_restore_goes_with_the_same_lost_volume(tmp_path):
    base = ("--restore", "--to", str(tmp_path / "new"), "-o", str(tmp_path), "--replace-volume", "2")
    for extra in ((), ("--lost-volume", "3"), ("--lost-volume", "2", "--replace-volume", "P1")):
        r = run_mvc(*base, *extra, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "with --restore, --replace-volume N goes with --lost-volume N (the same N)" in r.stderr
