"""An exFAT drive (through exfat-fuse) as a volume: what it cannot hold is adapted, not lost."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import needs_root
from helpers import run_mvc, tree_differences

pytestmark = needs_root


@pytest.fixture
def exfat_drive(drives, tmp_path):
    for tool in ("mkfs.exfat", "mount.exfat-fuse"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install exfatprogs and exfat-fuse (tests/run does, as root)")
    return drives.mount_exfat(drives.exfat("stick"), tmp_path / "stick")


def awkward_tree(src):
    (src / "dir:colon").mkdir(parents=True)
    (src / "dir:colon/inner.txt").write_text("inside a folder whose name has a colon\n")
    (src / "a:b.txt").write_text("colon\n")
    (src / "what?.txt").write_text("question mark\n")
    (src / "Readme.md").write_text("one\n")
    (src / "README.md").write_text("two, differing only in case\n")
    (src / "ends with dot.").write_text("trailing dot\n")
    (src / "private").mkdir()
    (src / "private/key").write_text("secret\n")
    os.chmod(src / "private/key", 0o600)
    os.chmod(src / "private", 0o700)
    (src / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "run.sh", 0o750)
    os.symlink("a:b.txt", src / "link to colon")
    os.symlink("private", src / "link to dir")
    t = 1_600_000_000_123_456_789
    for dirpath, dirnames, filenames in os.walk(src, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(t, t), follow_symlinks=False)


def test_an_exfat_volume_keeps_everything_and_a_restore_gives_the_tree_back(tmp_path, exfat_drive):
    src = tmp_path / "src"
    awkward_tree(src)

    result = run_mvc(str(src), "-o", str(exfat_drive), "-f", str(tmp_path / "job.json"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "volume 1 adapted to its filesystem" in result.stderr
    assert "no symlinks" in result.stderr and "names differing only in case collide" in result.stderr
    on_stick = set(os.listdir(exfat_drive))
    assert "a%3Ab.txt" in on_stick and "what%3F.txt" in on_stick
    assert len([n for n in on_stick if n.lower().startswith("readme")]) == 2
    verify = run_mvc(
        "--verify", "--checksum", "-f", str(tmp_path / "job.json"), "-o", str(exfat_drive), cwd=tmp_path
    )
    assert verify.returncode == 0, verify.stdout
    sums = subprocess.run(
        ["sha256sum", "-c", "--quiet", ".mvcopy-sha256sums"], cwd=exfat_drive, capture_output=True, text=True
    )
    assert sums.returncode == 0, sums.stdout
    again = run_mvc(str(src), "-o", str(exfat_drive), "-f", str(tmp_path / "job.json"), cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr

    back = tmp_path / "back"
    restored = run_mvc(
        "--restore", "--to", str(back), "-o", str(exfat_drive), "-f", str(tmp_path / "job.json"), cwd=tmp_path
    )

    assert restored.returncode == 0, restored.stderr
    assert tree_differences(src, back) == ""
