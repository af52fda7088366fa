"""Every drive attached is used for what it can take (issue 18): a blank drive given with the
volumes of a job, and refused while they still had work, becomes the new volume once one is
needed in the same run, without asking for a swap.  Real loop-mounted ext4 drives (root)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import needs_root
from helpers import backup, files_on, mvc_argv, mvc_env, tree_differences, union_of

pytestmark = needs_root

KIB = 1024


def label(point: Path) -> int:
    return json.loads((point / ".mvcopy-label.json").read_text())["volume"]


def test_a_blank_drive_refused_at_first_is_the_new_volume_once_one_is_needed(tmp_path, drives, bay):
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
    on_first = sorted(files_on(points[0]))
    # Someone else's file takes the first drive's room, which its record still counts on; a new
    # file whose neighbour is on it is bound there by the record, and does not fit.
    filler = points[0] / "someone else's file"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], stderr=subprocess.DEVNULL)
    (src / f"{on_first[0]}x").write_bytes(os.urandom(150 * KIB))

    run = subprocess.run(
        mvc_argv(
            str(src), "-o", str(points[2]), "-o", str(points[0]), "-o", str(points[1]), "-f", "job.json"
        ),
        cwd=tmp_path,
        env=mvc_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stderr
    assert "volume 1 is full" in run.stderr, run.stderr
    assert f"{points[2]}: drive refused: it is a blank drive, but volume 1 needs updating" in run.stderr
    assert f"{points[2]}: blank drive, now volume 3" in run.stderr
    assert label(points[2]) == 3 and f"{on_first[0]}x" in files_on(points[2])
    union = union_of(points, tmp_path / "union")
    (union / filler.name).unlink()
    assert tree_differences(src, union) == ""
