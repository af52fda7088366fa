"""Restore and locate from an earlier drive's copy of the jobfile: every drive carries its own record.

The scenario of a fileserver that is gone: a job backed up onto several drives, then a re-run that
wrote the last volume and new ones; all that is left is the drives, and the copy of the jobfile on
the first of them is older than the one on the drive written last.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from conftest import needs_root
from helpers import backup, files_on, make_tree, run_mvc, tree_differences
from multivolumecopy.errors import ExitCode

pytestmark = needs_root

LATER = "zz later"  # sorts after everything else: its files go to the last volume, then new ones


def labels(drives, images) -> dict[Path, dict]:
    with drives.inspect(images) as points:
        return {
            img: json.loads((p / ".mvcopy-label.json").read_text())
            for img, p in zip(images, points)
            if (p / ".mvcopy-label.json").exists()
        }


@pytest.fixture
def after_a_rerun(tmp_path, drives, bay):
    """Run 1 onto three drives or more, run 2 adds files that land on the last of them and on new
    ones; returns (src, labelled images in volume order, the first drive's record as run 1 left it)."""
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 700) for i in range(1, 9)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    first = backup(tmp_path, bay)
    assert first.returncode == 0, first.stderr
    used = len(bay.swaps()) + 1
    assert used >= 3, f"the fixture wants three volumes or more, got {used}"
    rnd = random.Random(7)
    (src / LATER).mkdir()
    for k, size in enumerate([1500, 3000, 800, 160_000, 170_000, 180_000, 2000]):
        (src / LATER / f"new {k}.bin").write_bytes(rnd.randbytes(size))
    bay.log.write_text("")
    bay.insert(images[used - 1])  # the last volume, then blank drives
    bay.enqueue(*images[used:])
    second = backup(tmp_path, bay)
    assert second.returncode == 0, second.stderr
    bay.eject()
    found = labels(drives, images)
    by_volume = sorted(found, key=lambda img: found[img]["volume"])
    assert len(by_volume) > used, "run 2 should have needed a new drive"
    with drives.inspect(by_volume) as points:
        runs = [json.loads((p / ".mvcopy-manifest.json").read_text())["run"] for p in points]
        record = tmp_path / "first-drive-record.json"
        shutil.copy(points[0] / ".mvcopy-jobdata.json", record)
    assert runs[used - 1] == 2 and runs[used] == 2 and runs[0] == 1, runs
    assert json.loads(record.read_text())["run"]["number"] == 1
    (tmp_path / "job.json").unlink()  # the fileserver, and its jobfile, are gone
    return src, by_volume, record


@pytest.mark.parametrize(
    "where,seed", [("copied off drive 1", 1), ("copied off drive 1", 4), ("on drive 1", 2)]
)
def test_a_restore_from_the_first_drives_record_goes_by_the_newer_ones_and_gives_the_source_back(
    tmp_path, bay, after_a_rerun, where, seed
):
    src, images, record = after_a_rerun
    order = list(images)
    random.Random(seed).shuffle(order)
    if where == "on drive 1":
        order.remove(images[0])
        order.insert(0, images[0])
        record = bay.point / ".mvcopy-jobdata.json"  # read off the drive in the bay, then swapped out
    bay.insert(order[0])
    bay.enqueue(*order[1:])
    to = tmp_path / "restored"

    result = run_mvc(
        "--restore", "--to", str(to), "-f", str(record), "-o", str(bay.point),
        "--new-volume-script", bay.script, cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert tree_differences(src, to) == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"warning: the record in use (the jobfile {record}: run 1"), lines[0]
    assert "describes a run that did not finish" in lines[0]
    assert any("using the newer record on volume" in line and "(run 2, finished" in line for line in lines)
    assert "never copied" not in result.stderr and "holds nothing still to restore" not in result.stderr


def test_locate_from_the_first_drives_record_goes_by_the_newest_record_of_the_drives_given(
    tmp_path, drives, after_a_rerun
):
    src, images, record = after_a_rerun
    with drives.inspect(images) as points:
        holder = {
            p: json.loads((pt / ".mvcopy-label.json").read_text())["volume"]
            for pt in points
            for p in files_on(pt)
        }
        new_file = f"{LATER}/new 5.bin"
        early = sorted(p for p, v in holder.items() if v == 2 and (src / p).is_file())[0]

        alone = run_mvc("--locate", new_file, early, "-f", str(record), cwd=tmp_path)
        only_new = run_mvc("--locate", LATER, "-f", str(record), cwd=tmp_path)
        outputs = [arg for p in points for arg in ("-o", str(p))]
        newest = run_mvc("--locate", new_file, early, "-f", str(record), *outputs, cwd=tmp_path)
        as_json = run_mvc("--locate", new_file, "--json", "-f", str(record), *outputs, cwd=tmp_path)

    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.splitlines()[0].startswith("on no drive ")
    assert alone.stdout.splitlines()[0].endswith(early)
    assert len(alone.stdout.splitlines()) == 1  # run 1's record has never heard of the new file
    assert "was still going" in alone.stderr
    assert only_new.returncode == ExitCode.NOT_FOUND and only_new.stdout == ""
    assert newest.returncode == 0, newest.stderr
    said = {line.split("  ")[-1]: line.split("  ")[0].strip() for line in newest.stdout.splitlines()}
    assert said == {early: "volume 2", new_file: f"volume {holder[new_file]}"}
    assert "using the newest record: volume" in newest.stderr and "(run 2, finished" in newest.stderr
    assert [f["volume"] for f in json.loads(as_json.stdout)["found"]] == [holder[new_file]]
