"""Every drive attached is used for what it can take (issue 18): what a volume turns out not to
have room for goes to another volume of the job with room before a new drive is asked for;
and a blank drive given with the job's volumes, refused while they still had work, becomes the
new volume once one is needed in the same run, without asking for a swap.  Real loop-mounted
ext4 drives (root)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import needs_root
from helpers import backup, files_on, mvc_argv, mvc_env, tree_differences, union_of

pytestmark = needs_root

KIB = 1024


def label(point: Path) -> int:
    return json.loads((point / ".mvcopy-label.json").read_text())["volume"]


def fill(point: Path, name: str = "someone else's file") -> str:
    """Someone else's file takes the drive's room, which its record still counts on."""
    filler = point / name
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], stderr=subprocess.DEVNULL)
    return filler.name


@pytest.fixture
def two_volumes_and_a_blank(tmp_path, drives, bay):
    """Six files of 500 KiB on volumes 1 and 2 (2 MiB drives, about 210 KiB left on each by
    its record), then those two and a blank drive mounted at m1, m2, m3."""
    src = tmp_path / "src"
    src.mkdir()
    for k in range(6):
        (src / f"f{k}").write_bytes(os.urandom(500 * KIB))
    images = [drives.image("d1", 2048), drives.image("d2", 2048), drives.image("d3", 2048)]
    bay.insert(images[0])
    bay.enqueue(images[1])
    assert backup(tmp_path, bay).returncode == 0
    bay.eject()
    points = [drives.mount(img, tmp_path / f"m{n}") for n, img in enumerate(images, 1)]
    assert [label(points[0]), label(points[1])] == [1, 2]
    return src, points


def run_with(tmp_path: Path, src: Path, *outputs: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        mvc_argv(str(src), *(f"--output={p}" for p in outputs), "-f", "job.json"),
        cwd=tmp_path,
        env=mvc_env(),
        stdin=subprocess.DEVNULL,  # no prompt: a swap would stop the run with exit 3
        capture_output=True,
        text=True,
        timeout=120,
    )


def drives_hold_the_source(tmp_path: Path, src: Path, points: list[Path], fillers: list[str]) -> None:
    union = union_of(points, tmp_path / "union")
    for name in fillers:
        (union / name).unlink()
    assert tree_differences(src, union) == ""


def test_what_a_full_volume_cannot_take_goes_to_a_volume_with_room_not_a_new_drive(
    tmp_path, two_volumes_and_a_blank
):
    src, (m1, m2, m3) = two_volumes_and_a_blank
    filler = fill(m1)
    (src / "f0x").write_bytes(os.urandom(150 * KIB))  # its neighbour f0 is on volume 1

    run = run_with(tmp_path, src, m3, m1, m2)

    assert run.returncode == 0, run.stderr
    assert "volume 1 is full" in run.stderr, run.stderr
    assert "f0x" in files_on(m2) and "f0x" not in files_on(m1)
    assert not (m3 / ".mvcopy-label.json").exists(), "a new drive was used while volume 2 had room"
    drives_hold_the_source(tmp_path, src, [m1, m2], [filler])


def test_a_blank_drive_refused_at_first_is_the_new_volume_once_one_is_needed(
    tmp_path, two_volumes_and_a_blank
):
    src, (m1, m2, m3) = two_volumes_and_a_blank
    fillers = [fill(m1), fill(m2, "another file of someone else")]
    (src / "f0x").write_bytes(os.urandom(150 * KIB))

    run = run_with(tmp_path, src, m3, m1, m2)

    assert run.returncode == 0, run.stderr
    assert f"{m3}: drive refused: it is a blank drive, but volume 1 needs updating" in run.stderr
    assert f"{m3}: blank drive, now volume 3" in run.stderr
    assert label(m3) == 3 and "f0x" in files_on(m3)
    drives_hold_the_source(tmp_path, src, [m1, m2, m3], fillers)
