"""Verify, scrub, locate and restore, on real drives and on directory volumes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import needs_root
from helpers import backup, files_on, make_tree, run_mvc, tree_differences
from multivolumecopy.errors import ExitCode


def flip_a_byte(path: Path) -> None:
    """Change one byte, keeping size and modification time: only the content tells."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 2)
        byte = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def printed_ranges(stderr: str) -> dict[int, tuple[int, int]]:
    """``volume 2 done: holds indexes 54-80`` lines, as the operator reads them."""
    found = {}
    for m in re.finditer(r"^volume (\d+) done: holds indexes (\d+)-(\d+) ", stderr, re.M):
        found[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return found


@pytest.fixture
def three_drives(tmp_path, drives, bay):
    """A tree backed up onto three or more loop-mounted drives; returns (src, images, stderr)."""
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 700) for i in range(1, 7)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    result = backup(tmp_path, bay)
    assert result.returncode == 0, result.stderr
    used = len(bay.swaps()) + 1
    assert used >= 3, f"the fixture wants three volumes or more, got {used}"
    bay.eject()
    bay.log.write_text("")
    return src, images[:used], result.stderr


def verify(tmp_path, point, *extra):
    return run_mvc("--verify", "-f", str(tmp_path / "job.json"), "-o", str(point), *extra, cwd=tmp_path)


@needs_root
def test_a_flipped_byte_passes_plain_verify_and_fails_checksum_and_sha256sum(tmp_path, drives, three_drives):
    src, images, stderr = three_drives
    point = drives.mount(images[1], tmp_path / "vol2")
    victim = sorted(p for p in files_on(point) if (point / p).is_file() and (point / p).stat().st_size > 0)[0]
    flip_a_byte(point / victim)

    plain = verify(tmp_path, point)
    scrub = verify(tmp_path, point, "--checksum")
    sums = subprocess.run(
        ["sha256sum", "-c", "--quiet", ".mvcopy-sha256sums"], cwd=point, capture_output=True, text=True
    )

    assert plain.returncode == 0, plain.stdout
    assert scrub.returncode == ExitCode.VERIFY_FAILED
    assert re.search(rf"^corrupt\s+\d+\s+{re.escape(victim)}: content differs", scrub.stdout, re.M)
    assert "1 corrupt" in scrub.stdout
    assert sums.returncode != 0 and f"{victim}: FAILED" in sums.stdout
    # The card's own call, with the range the backup printed for volume 2, still passes:
    first, last = printed_ranges(stderr)[2]
    card = run_mvc(
        "--verify", "-f", "job.json", "-i", str(first), "-si", str(last + 1), "-o", str(point), cwd=tmp_path
    )
    assert card.returncode == 0, card.stdout


@needs_root
def test_verify_lists_a_deleted_file_and_a_stray_one(tmp_path, drives, three_drives):
    src, images, _ = three_drives
    point = drives.mount(images[0], tmp_path / "vol1")
    gone = sorted(p for p in files_on(point) if (point / p).is_file())[0]
    os.unlink(point / gone)
    (point / "stray.txt").write_text("not from the backup")

    result = verify(tmp_path, point)
    as_json = json.loads(verify(tmp_path, point, "--json").stdout)

    assert result.returncode == ExitCode.VERIFY_FAILED
    assert re.search(rf"^missing\s+\d+\s+{re.escape(gone)}$", result.stdout, re.M)
    assert re.search(r"^extra\s+-\s+stray.txt$", result.stdout, re.M)
    assert as_json["ok"] is False and as_json["extra"] == ["stray.txt"]
    assert [p for _, p in as_json["missing"]] == [gone]


def restore_through_bay(tmp_path, bay, to, *patterns: str):
    """``--restore`` into ``to``, the drives offered by the bay's swap script."""
    args = ("--restore", "--to", str(to), "-f", str(tmp_path / "job.json"), "-o", str(bay.point))
    return run_mvc(*args, "--new-volume-script", bay.script, *patterns, cwd=tmp_path)


@needs_root
def test_restore_from_drives_offered_in_reverse_order_gives_the_source_back(tmp_path, three_drives, bay):
    src, images, _ = three_drives
    bay.insert(images[-1])
    bay.enqueue(*reversed(images[:-1]))
    to = tmp_path / "restored"

    result = restore_through_bay(tmp_path, bay, to)

    assert result.returncode == 0, result.stderr
    order = ", ".join(str(n) for n in range(len(images), 0, -1))
    assert f"from volumes {order} in" in result.stderr
    assert tree_differences(src, to) == ""
    # Run again: everything is already there and intact.
    again = run_mvc(
        "--restore", "--to", str(to), "-f", str(tmp_path / "job.json"), "-o", str(bay.point), cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert "restoring 0 files" in again.stderr


@needs_root
def test_a_pattern_restore_takes_only_matching_files_and_asks_only_for_their_drives(
    tmp_path, three_drives, bay
):
    src, images, _ = three_drives
    job = json.loads((tmp_path / "job.json").read_text())
    wanted = {r[0]: r[5] for r in job["files"] if r[0].startswith("zeta/") and r[1] == "f"}
    volumes = sorted(set(wanted.values()))
    assert len(volumes) < len(images), "the pattern should need fewer drives than the whole job"
    unneeded = next(v for v in range(1, len(images) + 1) if v not in volumes)
    bay.insert(images[unneeded - 1])  # a drive it does not need, first
    bay.enqueue(*[images[v - 1] for v in volumes])
    to = tmp_path / "restored"

    result = restore_through_bay(tmp_path, bay, to, "zeta/")

    assert result.returncode == 0, result.stderr
    assert f"drive refused: volume {unneeded} holds nothing still to restore" in result.stderr
    assert f"from volumes {', '.join(map(str, volumes))} in" in result.stderr
    assert len(bay.swaps()) == len(volumes)  # asked for exactly the drives it needed
    assert set(files_on(to)) == set(wanted)
    for rel in wanted:
        assert (to / rel).read_bytes() == (src / rel).read_bytes()


@needs_root
def test_restore_never_leaves_a_damaged_file_under_its_final_name(tmp_path, drives, three_drives):
    src, images, _ = three_drives
    point = drives.mount(images[0], tmp_path / "vol1")
    victim = sorted(p for p in files_on(point) if (point / p).is_file() and (point / p).stat().st_size > 0)[0]
    flip_a_byte(point / victim)
    to = tmp_path / "restored"

    result = run_mvc(
        "--restore", "--to", str(to), "-f", str(tmp_path / "job.json"), "-o", str(point), victim, cwd=tmp_path
    )

    assert result.returncode == ExitCode.FILES_FAILED
    assert f"{victim}: damaged on volume 1" in result.stderr
    assert not (to / victim).exists()
    assert not [p for p in files_on(to) if ".mvcopy-restore" in p]


def test_locate_answers_from_a_drive_copy_when_the_jobfile_is_gone(tmp_path):
    src = tmp_path / "src"
    make_tree(src, n_files=12, big=1)
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    (tmp_path / "job.json").unlink()

    found = run_mvc("--locate", "big 0.dat", "*.sh", "-f", "usb/.mvcopy-jobdata.json", cwd=tmp_path)
    as_json = run_mvc("--locate", "*.sh", "--json", "-f", "usb/.mvcopy-jobdata.json", cwd=tmp_path)
    nothing = run_mvc("--locate", "no-such-thing", "-f", "usb/.mvcopy-jobdata.json", cwd=tmp_path)

    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert len(lines) == 2
    assert any(line.startswith("volume 1") and line.endswith("zeta/big 0.dat") for line in lines)
    assert any(line.endswith("beta/run.sh") for line in lines)
    assert json.loads(as_json.stdout)["found"][0]["path"] == "beta/run.sh"
    assert nothing.returncode == ExitCode.NOT_FOUND and nothing.stdout == ""


def test_a_scrub_can_be_limited_by_time_and_by_age(tmp_path):
    src = tmp_path / "src"
    make_tree(src, n_files=12, big=1)
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    files = sum(
        1
        for p in files_on(tmp_path / "usb")
        if (tmp_path / "usb" / p).is_file() and not (tmp_path / "usb" / p).is_symlink()
    )

    none = verify(tmp_path, tmp_path / "usb", "--checksum", "--time-budget", "0", "--json")
    full = verify(tmp_path, tmp_path / "usb", "--checksum", "--json")
    again = verify(tmp_path, tmp_path / "usb", "--checksum", "--max-age", "1", "--json")

    assert json.loads(none.stdout)["not_reached"] == files
    assert json.loads(full.stdout)["scrubbed"] == files
    report = json.loads(again.stdout)
    assert report["recent"] == files and report["scrubbed"] == 0
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["volumes"][0]["last_verified"] is not None


def test_restore_does_not_overwrite_a_different_file_already_there(tmp_path):
    src = tmp_path / "src"
    make_tree(src, n_files=6, big=0)
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    to = tmp_path / "restored"
    to.mkdir()
    (to / "top-level file.txt").write_text("mine, newer\n")

    result = run_mvc("--restore", "--to", "restored", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert result.returncode == ExitCode.FILES_FAILED
    assert "top-level file.txt: a different file is already at that place" in result.stderr
    assert (to / "top-level file.txt").read_text() == "mine, newer\n"
    assert (to / "beta/run.sh").read_bytes() == (src / "beta/run.sh").read_bytes()


@pytest.mark.parametrize("given", [("-i", "3"), ("-si", "5"), ("-i", "2", "-si", "2")])
def test_verify_takes_either_index_alone(tmp_path, given):
    src = tmp_path / "src"
    make_tree(src, n_files=6, big=0)
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0

    result = verify(tmp_path, tmp_path / "usb", *given)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: volume 1 at ")


def test_restore_reports_a_file_its_drive_lost_and_restores_the_rest(tmp_path):
    src = tmp_path / "src"
    make_tree(src, n_files=6, big=0)
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    os.unlink(tmp_path / "usb/beta/run.sh")

    result = run_mvc("--restore", "--to", "restored", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert result.returncode == ExitCode.FILES_FAILED
    assert "1 could not be restored:\n    beta/run.sh: missing on volume 1" in result.stderr
    st = (src / "beta").stat()
    (src / "beta/run.sh").unlink()
    os.utime(src / "beta", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tree_differences(src, tmp_path / "restored") == ""
