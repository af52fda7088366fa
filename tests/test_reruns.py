"""Re-runs on real drives: each file keeps its drive, drives come in any order, only changes are written."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import needs_root
from helpers import backup, check_drives, files_on, make_tree, run_mvc

pytestmark = needs_root

VOLUME_SIZE = "450K"


def job_volumes(tmp_path: Path) -> dict[str, int]:
    job = json.loads((tmp_path / "job.json").read_text())
    return {row[0]: row[5] for row in job["files"]}


def inodes(drives, images) -> dict[tuple[int, str], int]:
    """(volume, path) -> inode, over every drive: a file rewritten or moved gets a new one."""
    found = {}
    with drives.inspect(images) as points:
        for point in points:
            volume = json.loads((point / ".mvcopy-label.json").read_text())["volume"]
            for rel in files_on(point):
                found[(volume, rel)] = os.lstat(point / rel).st_ino
    return found


def touch_content(path: Path) -> None:
    """Same size, other bytes, a later mtime: a changed file."""
    data = bytearray(path.read_bytes())
    data[:4] = b"EDIT"
    path.write_bytes(bytes(data))
    os.utime(path, ns=(time.time_ns(), time.time_ns()))


def rerun_backwards(tmp_path: Path, bay, images):
    """A re-run with the drives out of the drawer in another order: the last one first, then
    backwards."""
    order = list(reversed(images))
    bay.insert(order[0])
    bay.enqueue(*order[1:])
    return backup(tmp_path, bay, "--volume-size", VOLUME_SIZE)


@pytest.fixture
def first_backup(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 1400) for i in range(1, 8)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    first = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE)
    assert first.returncode == 0, first.stderr
    used = len(bay.swaps()) + 1
    assert used >= 3, f"the scenario wants three volumes or more, got {used}"
    bay.eject()
    bay.log.write_text("")
    return src, images, used


def test_a_rerun_writes_only_the_changes_and_every_file_keeps_its_drive(tmp_path, drives, bay, first_backup):
    src, images, used = first_backup
    where = job_volumes(tmp_path)
    middle = 2
    files = {p: v for p, v in where.items() if (src / p).is_file() and not (src / p).is_symlink()}
    # Deletions on volume 1 (room for new files beside them) and on a middle volume only.
    on_first = sorted(p for p, v in files.items() if v == 1 and p.startswith("Alpha/"))
    gone_first = on_first[:2]
    gone_middle = sorted(p for p, v in files.items() if v == middle)[0]
    for p in [*gone_first, gone_middle]:
        (src / p).unlink()
    # New files: in the first folder of the sort order, and beside the moved folder.
    (src / "Alpha/a new one.txt").write_bytes(os.urandom(3000))
    (src / "Alpha/another new.txt").write_bytes(os.urandom(2000))
    # A changed file on the first and on the last volume.
    changed = [
        on_first[2],  # a file in the first folder
        "zeta/big 0.dat",  # a big file further on
    ]
    for p in changed:
        touch_content(src / p)
    # A folder renamed: its files move, they are not copied again.
    moved_folder = "ünïcødé dir"
    moved = sorted(p for p in files if p.startswith(moved_folder + "/"))
    assert moved
    os.rename(src / moved_folder, src / "renamed dir")
    (src / "renamed dir/new beside moved.txt").write_bytes(os.urandom(1000))
    before = inodes(drives, images[:used])

    dry = run_mvc(
        str(src),
        "-f",
        str(tmp_path / "job.json"),
        "--volume-size",
        VOLUME_SIZE,
        "--dry-run",
        "--json",
        cwd=tmp_path,
    )
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    rerun = rerun_backwards(tmp_path, bay, images[:used])

    assert rerun.returncode == 0, rerun.stderr
    # 3 new files and the renamed folder; 2 changed; the moved files; 3 files and the old folder gone
    assert "since the last run: 4 new, 2 changed" in rerun.stderr
    assert f"{len(moved)} moved, 4 deleted" in rerun.stderr
    report = json.loads((tmp_path / "job.json.changes.json").read_text())
    new_and_changed = sum(
        os.path.getsize(src / p)
        for p in [
            "Alpha/a new one.txt",
            "Alpha/another new.txt",
            "renamed dir/new beside moved.txt",
            *changed,
        ]
    )
    assert report["counts"]["bytes_written"] == new_and_changed, "renames must cost nothing"
    # The middle volume held nothing but a deletion: that is all it got.
    assert report["volumes"][str(middle)] == {
        "copied": [],
        "rewritten": [],
        "renamed": [],
        "deleted": [gone_middle],
        "chmod": [],
    }
    # The new files went beside their neighbours, not to a new drive.
    copied_files = {p for p in report["volumes"]["1"]["copied"] if not (src / p).is_dir()}
    assert copied_files == {"Alpha/a new one.txt", "Alpha/another new.txt"}
    copied_to = {
        v for v, did in report["volumes"].items() if "renamed dir/new beside moved.txt" in did["copied"]
    }
    assert copied_to and int(copied_to.pop()) <= used, "the new file should join an existing volume"
    renamed = [pair for did in report["volumes"].values() for pair in did["renamed"]]
    assert sorted(new for _old, new in renamed) == sorted(
        "renamed dir/" + p[len(moved_folder) + 1 :] for p in moved
    )
    for v, did in report["volumes"].items():  # each moved file was renamed on the volume it was on
        assert all(files[old] == int(v) for old, _new in did["renamed"])
    # --dry-run said exactly this, file for file.
    for v, did in report["volumes"].items():
        plan = planned["volumes"].get(v, {"copy": [], "rewrite": [], "rename": [], "delete": []})
        assert sorted(plan["copy"]) == sorted(did["copied"]), v
        assert sorted(plan["rewrite"]) == sorted(did["rewritten"]), v
        assert sorted(map(tuple, plan["rename"])) == sorted(map(tuple, did["renamed"])), v
        assert sorted(plan["delete"]) == sorted(did["deleted"]), v
    assert planned["new_drive"]["copy"] == []
    # Unchanged files were not touched: same volume, same inode.
    bay.eject()
    after = inodes(drives, images[:used])
    untouched = {
        k: ino for k, ino in before.items() if k[1] not in (*gone_first, gone_middle, *changed, *moved)
    }
    assert {k: after.get(k) for k in untouched} == untouched
    check_drives(tmp_path, drives, images[:used], src)


def test_a_replaced_volume_gets_its_files_back_on_a_blank_drive(tmp_path, drives, bay, first_backup):
    src, images, used = first_backup
    on_two = sorted(p for p, v in job_volumes(tmp_path).items() if v == 2)
    blank = images[used]
    bay.insert(images[1])  # the old volume 2 first: it is refused
    bay.enqueue(blank)

    result = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE, "--replace-volume", "2")

    assert result.returncode == 0, result.stderr
    assert "volume 2 is being replaced (--replace-volume): insert a blank drive" in result.stderr
    assert json.loads((bay.point / ".mvcopy-label.json").read_text())["volume"] == 2
    assert {p for p in files_on(bay.point)} >= {p for p in on_two if not (src / p).is_dir()}
    bay.eject()
    check_drives(tmp_path, drives, [images[0], blank, *images[2:used]], src)


def test_a_forgotten_volume_has_its_files_placed_again(tmp_path, drives, bay, first_backup):
    src, images, used = first_backup
    bay.insert(images[used])  # a blank drive first, then the other volumes, then more blanks
    bay.enqueue(images[0], *images[2:used], *images[used + 1 :])

    result = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE, "--forget-volume", "2")

    assert result.returncode == 0, result.stderr
    job = json.loads((tmp_path / "job.json").read_text())
    assert 2 not in {row[5] for row in job["files"]}
    assert [v["forgotten"] for v in job["volumes"] if v["number"] == 2] == [True]
    bay.eject()
    labelled = []
    with drives.inspect([images[0], *images[2:]]) as points:
        for img, point in zip([images[0], *images[2:]], points):
            if (point / ".mvcopy-label.json").exists():
                labelled.append(img)
    check_drives(tmp_path, drives, labelled, src)
    # The given-up drive, if it turns up when a drive is wanted, is refused and left as it is.
    (src / "Alpha/later.txt").write_text("a file for the next run\n")
    bay.log.write_text("")
    bay.insert(images[1])
    bay.enqueue(*labelled, *[img for img in images[used:] if img not in labelled])
    again = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE)
    assert again.returncode == 0, again.stderr
    assert "volume 2 was given up (--forget-volume)" in again.stderr
    bay.eject()
    with drives.inspect([images[1]]) as (old_two,):
        assert "Alpha/later.txt" not in files_on(old_two)


def test_a_chmod_alone_reaches_the_drive_without_copying_the_data(tmp_path, drives, bay, first_backup):
    src, images, used = first_backup
    where = job_volumes(tmp_path)
    private = sorted(
        p for p, v in where.items() if v == 2 and (src / p).is_file() and not (src / p).is_symlink()
    )[0]
    folder = next(p for p, v in sorted(where.items()) if (src / p).is_dir() and not (src / p).is_symlink())
    os.chmod(src / private, 0o600)  # a chmod moves neither the size nor the mtime
    os.chmod(src / folder, 0o750)
    before = inodes(drives, images[:used])

    rerun = rerun_backwards(tmp_path, bay, images[:used])

    assert rerun.returncode == 0, rerun.stderr
    assert (
        "0 new, 0 changed (0 B), 0 moved, 0 deleted, 2 with new metadata only (mode, owner, ACLs, attributes)"
        in rerun.stderr
    )
    report = json.loads((tmp_path / "job.json.changes.json").read_text())
    assert report["counts"]["bytes_written"] == 0
    bay.eject()
    assert inodes(drives, images[:used]) == before  # nothing copied again
    check_drives(tmp_path, drives, images[:used], src)  # rsync -p sees the modes equal
    with drives.inspect([images[1]]) as (point,):
        assert os.stat(point / private).st_mode & 0o7777 == 0o600
        rows = json.loads((point / ".mvcopy-manifest.json").read_text())["entries"]
        assert next(r for r in rows if r[0] == private)[4] == 0o600  # the records follow
