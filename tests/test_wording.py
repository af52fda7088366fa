"""What a person reads: a count and its noun (and verb) agree, one and many, in real output.

The jobs are folders used as volumes (no root): one, or two split by ``--volume-size`` and
swapped by moving the folder aside."""

from __future__ import annotations

import json

import pytest

from helpers import run_mvc

SWAP_BY_MV = 'mv "$MVCOPY_OUTPUT" "$MVCOPY_OUTPUT-$MVCOPY_VOLUME" && mkdir "$MVCOPY_OUTPUT"'


@pytest.fixture
def src(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in "abc":
        (src / name).write_text(name * 4)
    (tmp_path / "usb").mkdir()
    return src


def backup(tmp_path, *extra: str):
    result = run_mvc("src", "-o", "usb", "-f", "job.json", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def two_volumes(tmp_path, src):
    """The three files on two folder volumes, ``usb-1`` and ``usb``; returns each file's volume."""
    backup(tmp_path, "--volume-size", "8K", "--new-volume-script", SWAP_BY_MV)
    job = json.loads((tmp_path / "job.json").read_text())
    where = {row[0]: row[5] for row in job["files"]}
    assert sorted(set(where.values())) == [1, 2], where
    return where


def test_removed_entries_one_and_many(tmp_path, src):
    backup(tmp_path)
    (src / "a").unlink()
    one = backup(tmp_path)
    (src / "b").unlink()
    (src / "c").unlink()
    many = backup(tmp_path)

    assert "volume 1: removed 1 entry that no longer belongs there\n" in one.stderr
    assert "volume 1: removed 2 entries that no longer belong there\n" in many.stderr


def test_restored_entries_and_volumes_one_and_many(tmp_path, two_volumes):
    alone = next(path for path, v in two_volumes.items() if list(two_volumes.values()).count(v) == 1)
    volume = two_volumes[alone]
    drives = ["-o", "usb-1", "-o", "usb"]

    one = run_mvc("--restore", "-f", "job.json", *drives, "--to", "one", alone, cwd=tmp_path)
    many = run_mvc("--restore", "-f", "job.json", *drives, "--to", "all", cwd=tmp_path)

    assert one.returncode == 0 and many.returncode == 0, one.stderr + many.stderr
    assert f"restoring 1 file (4 B) from volume {volume}; " in one.stderr
    assert f"  restored 1 entry (4 B) from volume {volume} in " in one.stderr
    assert "restoring 3 files (12 B) from volumes 1 and 2; " in many.stderr
    assert "  restored 3 entries (12 B) from volumes 1 and 2 in " in many.stderr


def test_status_counts_volumes_and_entries_one_and_many(tmp_path, two_volumes):
    (tmp_path / "solo").mkdir()
    (tmp_path / "solo/a").write_text("a")
    (tmp_path / "usb-solo").mkdir()
    assert run_mvc("solo", "-o", "usb-solo", "-f", "solo.json", cwd=tmp_path).returncode == 0

    one = run_mvc("--status", "-f", "solo.json", cwd=tmp_path)
    many = run_mvc("--status", "-f", "job.json", cwd=tmp_path)

    assert one.stdout.startswith("MULTIVOLUMECOPY OK - 1 volume, 1 entry; "), one.stdout
    assert "; 1 entry, " in one.stdout  # the volume's line
    assert many.stdout.startswith("MULTIVOLUMECOPY OK - 2 volumes, 3 entries; "), many.stdout


def test_verify_names_the_indexes_of_the_volume_it_checked(tmp_path, two_volumes):
    """A whole volume's check says which indexes that volume holds, not the whole catalog's."""
    job = json.loads((tmp_path / "job.json").read_text())
    index = {row[0]: i for i, row in enumerate(job["files"])}
    for volume, drive in ((1, "usb-1"), (2, "usb")):
        held = sorted(index[path] for path, v in two_volumes.items() if v == volume)
        result = run_mvc("--verify", "-f", "job.json", "-o", drive, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        span = f"{held[0]}-{held[-1]}" if len(held) > 1 else f"{held[0]}"
        scope = f"its entries (indexes {span})"
        assert f"OK: volume {volume} at {tmp_path / drive}, {scope}: " in result.stdout

    ranged = run_mvc("--verify", "-f", "job.json", "-o", "usb", "-i", "0", "-si", "2", cwd=tmp_path)
    assert ", indexes 0-1: checked 2 entries " in ranged.stdout, ranged.stdout
