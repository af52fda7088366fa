"""Verify, scrub, locate and restore, on real drives and on directory volumes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
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
    order = [str(n) for n in range(len(images), 0, -1)]
    assert f"from volumes {', '.join(order[:-1])} and {order[-1]} in" in result.stderr
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
    named = [str(v) for v in volumes]
    said = f"volume {named[0]}" if len(named) == 1 else f"volumes {', '.join(named[:-1])} and {named[-1]}"
    assert f"from {said} in" in result.stderr
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


def one_volume_job(tmp_path, *extra: str, n_files: int = 8) -> Path:
    """A small tree backed up onto one directory volume ``usb``; returns the source."""
    src = tmp_path / "src"
    make_tree(src, n_files=n_files, big=0)
    (tmp_path / "usb").mkdir(exist_ok=True)
    result = run_mvc("src", "-o", "usb", "-f", "job.json", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return src


def regular_files(root: Path) -> list[str]:
    return sorted(p for p in files_on(root) if (root / p).is_file() and not (root / p).is_symlink())


def last_verified(tmp_path) -> list:
    return [v["last_verified"] for v in json.loads((tmp_path / "job.json").read_text())["volumes"]]


@pytest.mark.parametrize("damage", ["flipped byte", "deleted file", "stray file"])
def test_a_failed_scrub_records_no_verification_and_status_shows_none(tmp_path, damage):
    one_volume_job(tmp_path)
    usb = tmp_path / "usb"
    victim = next(p for p in regular_files(usb) if (usb / p).stat().st_size > 0)
    if damage == "flipped byte":
        flip_a_byte(usb / victim)
    elif damage == "deleted file":
        os.unlink(usb / victim)
    else:
        (usb / "stray.txt").write_text("not from the backup")

    scrub = verify(tmp_path, usb, "--checksum")
    status = run_mvc("--status", "-f", "job.json", cwd=tmp_path)

    assert scrub.returncode == ExitCode.VERIFY_FAILED, scrub.stdout
    assert last_verified(tmp_path) == [None]
    assert "last verified never" in status.stdout, status.stdout


def test_a_complete_clean_scrub_records_the_time_every_file_was_last_checked(tmp_path):
    one_volume_job(tmp_path)
    usb = tmp_path / "usb"
    before = int(time.time())

    verify(tmp_path, usb, "--checksum")
    first = last_verified(tmp_path)[0]
    time.sleep(1.1)
    again = verify(tmp_path, usb, "--checksum", "--max-age", "1")  # every file checked lately: none read

    assert again.returncode == 0, again.stdout
    assert json.loads(verify(tmp_path, usb, "--checksum", "--max-age", "1", "--json").stdout)["scrubbed"] == 0
    # What is recorded is when the oldest check of a file was made, not when this run ended.
    assert last_verified(tmp_path)[0] == first
    assert datetime.fromisoformat(first).timestamp() >= before


@pytest.mark.parametrize("how", ["--no-hash", "adopted, no hash in the manifest"])
def test_a_scrub_that_cannot_check_files_by_hash_says_so_and_fails(tmp_path, how):
    src = tmp_path / "src"
    make_tree(src, n_files=8, big=0)
    usb = tmp_path / "usb"
    usb.mkdir()
    extra = ("--no-hash",) if how == "--no-hash" else ()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", *extra, cwd=tmp_path).returncode == 0
    if how != "--no-hash":
        # What a drive seeded with cp -a and adopted by a version that did not hash what it
        # adopted holds: files in place, their rows with no SHA-256.
        manifest = json.loads((usb / ".mvcopy-manifest.json").read_text())
        for row in manifest["entries"]:
            row[6] = None
        (usb / ".mvcopy-manifest.json").write_text(json.dumps(manifest))
    files = len(regular_files(usb))

    scrub = verify(tmp_path, usb, "--checksum")
    as_json = json.loads(verify(tmp_path, usb, "--checksum", "--json").stdout)
    plain = verify(tmp_path, usb)

    assert scrub.returncode == ExitCode.VERIFY_FAILED, scrub.stdout
    assert scrub.stdout.startswith("PROBLEMS: volume 1"), scrub.stdout
    assert f"{files} files have no recorded hash" in scrub.stdout
    assert "the next backup run without --no-hash asks for volume 1 and hashes them" in scrub.stdout
    assert as_json["ok"] is False and len(as_json["unhashed"]) == files
    assert last_verified(tmp_path) == [None]
    assert plain.returncode == 0, plain.stdout  # without --checksum, size and time are all it checks
    # What it says to do works: a run that hashes, then the scrub passes.
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    again = verify(tmp_path, usb, "--checksum")
    assert again.returncode == 0, again.stdout


@needs_root
def test_a_scrub_of_a_drive_mounted_read_only_reports_and_records_nothing_on_it(tmp_path, drives):
    src = tmp_path / "src"
    make_tree(src, n_files=10, big=1)
    image = drives.image("d1", 2048)
    point = drives.mount(image, tmp_path / "usb")
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    os.unlink(point / ".mvcopy-lock")  # read-only, the lock file cannot be created either
    drives.umount(point)
    drives.mount(image, point, readonly=True)

    scrub = verify(tmp_path, point, "--checksum")
    plain = verify(tmp_path, point)

    assert scrub.returncode == 0, scrub.stdout + scrub.stderr
    assert "Traceback" not in scrub.stderr
    assert scrub.stdout.startswith("OK: volume 1"), scrub.stdout
    assert scrub.stdout.count("read-only") == 1
    assert "the check times were not recorded on it" in scrub.stdout
    assert f"read back {len(regular_files(point))} files" in scrub.stdout
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert not (point / ".mvcopy-lock").exists()
    drives.umount(point)
    drives.mount(image, point)
    rows = json.loads((point / ".mvcopy-manifest.json").read_text())["entries"]
    assert all(row[7] is None for row in rows)  # the manifest was not touched


def test_a_replaced_drive_is_refused_by_verify_and_restore(tmp_path):
    src = one_volume_job(tmp_path)
    os.rename(tmp_path / "usb", tmp_path / "old")
    (tmp_path / "usb").mkdir()
    assert (
        run_mvc("src", "-o", "usb", "-f", "job.json", "--replace-volume", "1", cwd=tmp_path).returncode == 0
    )

    checked = verify(tmp_path, tmp_path / "old")
    scrubbed = verify(tmp_path, tmp_path / "old", "--checksum")
    restore = run_mvc("--restore", "--to", "back", "-o", "old", "-f", "job.json", cwd=tmp_path)

    for result in (checked, scrubbed):
        assert result.returncode == ExitCode.OUTPUT_ERROR, result.stdout
        line = result.stderr.strip()
        assert "\n" not in line and "Traceback" not in line
        assert "is an old copy of volume 1, replaced by another drive" in line
        assert line.endswith("set it aside"), line
    assert restore.returncode == ExitCode.SWAP_NEEDED, restore.stderr
    assert "drive refused: it is an old copy of volume 1, replaced by another drive" in restore.stderr
    assert "insert volume 1 at" in restore.stderr.strip().splitlines()[-1]
    assert not [p for p in files_on(tmp_path / "back") if (tmp_path / "back" / p).is_file()]
    good = run_mvc("--restore", "--to", "back", "-o", "usb", "-f", "job.json", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert tree_differences(src, tmp_path / "back") == ""


def test_a_forgotten_drive_is_refused_by_verify_and_restore(tmp_path):
    one_volume_job(tmp_path)
    (tmp_path / "usb2").mkdir()
    assert (
        run_mvc("src", "-o", "usb2", "-f", "job.json", "--forget-volume", "1", cwd=tmp_path).returncode == 0
    )

    checked = verify(tmp_path, tmp_path / "usb")
    restore = run_mvc("--restore", "--to", "back", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert checked.returncode == ExitCode.OUTPUT_ERROR, checked.stdout
    assert "is volume 1, which was given up (--forget-volume)" in checked.stderr
    assert checked.stderr.strip().endswith("set it aside"), checked.stderr
    assert restore.returncode == ExitCode.SWAP_NEEDED, restore.stderr
    assert "drive refused: it is volume 1, which was given up (--forget-volume)" in restore.stderr
    assert "insert volume 2 at" in restore.stderr.strip().splitlines()[-1]


def hold_drive_lock(drive: Path) -> subprocess.Popen:
    """Another process holding the drive's lock, as a backup writing to it does."""
    code = (
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'a+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.truncate(0); f.write('pid 4242 on nas, a backup'); f.flush()\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(drive / ".mvcopy-lock")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("extra", [(), ("--checksum",)], ids=["plain", "checksum"])
def test_verify_is_refused_while_a_backup_holds_the_drive(tmp_path, extra):
    one_volume_job(tmp_path)
    holder = hold_drive_lock(tmp_path / "usb")
    try:
        result = verify(tmp_path, tmp_path / "usb", *extra)
    finally:
        holder.kill()
        holder.wait()

    assert result.returncode == ExitCode.LOCKED, result.stdout + result.stderr
    assert "is in use by another multivolumecopy run (pid 4242 on nas" in result.stderr
    assert result.stdout == ""
    assert verify(tmp_path, tmp_path / "usb", *extra).returncode == 0  # once it is gone


@pytest.mark.parametrize("extra", [(), ("--checksum",)], ids=["plain", "checksum"])
def test_a_lock_file_planted_as_a_symlink_is_refused_not_followed(tmp_path, extra):
    one_volume_job(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.unlink(tmp_path / "usb/.mvcopy-lock")
    os.symlink(victim, tmp_path / "usb/.mvcopy-lock")

    result = verify(tmp_path, tmp_path / "usb", *extra)

    assert result.returncode == ExitCode.OUTPUT_ERROR, result.stdout + result.stderr
    assert ".mvcopy-lock is a symlink, not a lock file; remove it" in result.stderr
    assert victim.read_text() == "precious\n"


def test_a_ranged_scrub_of_a_slice_copied_by_hand_writes_nothing_on_it_and_promises_nothing(tmp_path):
    # a drive that is not a volume (no label): files copied there by hand from a volume
    src = tmp_path / "src"
    make_tree(src, n_files=8, big=0)
    usb = tmp_path / "usb"
    usb.mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", "--no-hash", cwd=tmp_path).returncode == 0
    by_hand = tmp_path / "copied by hand"
    subprocess.run(["cp", "-a", str(src), str(by_hand)], check=True)
    before = sorted(p.name for p in by_hand.iterdir())

    scrub = run_mvc(
        "--verify", "--checksum", "-f", "job.json", "-i", "0", "-si", "3", "-o", str(by_hand), cwd=tmp_path
    )

    assert "Traceback" not in scrub.stderr, scrub.stderr
    assert sorted(p.name for p in by_hand.iterdir()) == before  # no manifest, sums or lock of ours
    assert "no recorded hash" in scrub.stdout, scrub.stdout
    assert "asks for volume" not in scrub.stdout, scrub.stdout


def test_a_whole_restore_gives_the_top_folder_its_mode_and_time_as_rsync_does(tmp_path):
    """The folder backed up is restored whole into ``--to``: ``--to`` gets its mode and time too
    (``rsync -a src/ dst/`` does); a restore of some paths leaves ``--to`` as it was."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_text("hi")
    src.chmod(0o750)
    os.utime(src, ns=(1_577_836_800_000_000_000, 1_577_836_800_000_000_000))
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0

    whole = run_mvc("--restore", "-f", "job.json", "-o", "usb", "--to", "whole", cwd=tmp_path)
    part = run_mvc("--restore", "-f", "job.json", "-o", "usb", "--to", "part", "d/f", cwd=tmp_path)

    assert whole.returncode == 0 and part.returncode == 0, whole.stderr + part.stderr
    oracle = subprocess.run(
        ["rsync", "-naic", f"{src}/", f"{tmp_path / 'whole'}/"], capture_output=True, text=True, check=True
    )
    assert oracle.stdout == "", oracle.stdout  # the top folder ./ too
    st = (tmp_path / "part").stat()
    assert st.st_mtime_ns != src.stat().st_mtime_ns and st.st_mode & 0o777 != 0o750
