"""Sequences the long run of the model test (tests/test_model.py) failed on, replayed as named
tests on plain folders (no root needed); each judged by rsync, not by the tool.

The dry-run sequences it found are in tests/test_dry_run.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from helpers import mvc_argv, mvc_env, run_mvc, source_of, tree_differences


def backup(tmp_path: Path, *extra: str, fault: str = "") -> subprocess.CompletedProcess:
    if not fault:
        return run_mvc("src", "-o", "usb", "-f", "job.json", *extra, cwd=tmp_path)
    return subprocess.run(
        mvc_argv("src", "-o", "usb", "-f", "job.json", *extra),
        cwd=tmp_path,
        env=mvc_env({"MVCOPY_FAULT": fault}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # the fault point kills its whole process group
    )


def drive_equals_source(tmp_path: Path) -> str:
    """rsync's differences between the source and the drive (the tool's records left out)."""
    usb = tmp_path / "usb"
    out = subprocess.run(
        ["rsync", "-rlpcn", "--delete", "--itemize-changes", "--exclude=/.mvcopy-*", "src/", "usb/"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert usb.is_dir()
    return out.strip()


def test_a_file_left_dirty_by_a_crash_where_a_folder_now_goes_is_replaced(tmp_path):
    """Killed during volume 1's first commit, the drive's files are ours of unknown content
    (dirty); a2 then became a folder: the dirty file is removed first, the folder written."""
    src = source_of(tmp_path, {"a": "a\n", "a2": "a2\n"})
    killed = backup(tmp_path, fault="replace:.mvcopy-sha256sums")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (src / "a2").unlink()
    (src / "a2").mkdir()
    (src / "a2/inner").write_text("inside the folder a2 became\n")

    rerun = backup(tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    assert drive_equals_source(tmp_path) == ""
    assert backup(tmp_path).returncode == 0


def test_a_crash_between_the_drives_jobfile_copy_and_the_jobfile_leaves_no_stale_copy(tmp_path):
    """Killed while the drive's copy of the jobfile is replaced at the end of a re-run, the next
    run must not call the job done with that copy older than the drive: it visits the drive
    again, and a restore from the drive's copy alone gives the source back."""
    src = source_of(tmp_path, {"a": "version one\n", "b": "b\n"})
    assert backup(tmp_path).returncode == 0
    (src / "a").write_text("version two, longer\n")
    killed = backup(tmp_path, fault="replace:.mvcopy-jobdata.json")
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    rerun = backup(tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    copy = json.loads((tmp_path / "usb/.mvcopy-jobdata.json").read_text())
    manifest = json.loads((tmp_path / "usb/.mvcopy-manifest.json").read_text())
    assert copy["run"]["number"] == manifest["run"] and copy["run"]["state"] == "done"
    (tmp_path / "copy.json").write_text((tmp_path / "usb/.mvcopy-jobdata.json").read_text())
    out = tmp_path / "restored"
    restored = run_mvc("--restore", "--to", str(out), "-f", "copy.json", "-o", "usb", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert tree_differences(src, out) == ""


def test_a_crash_after_the_drives_jobfile_copy_visits_the_drive_again(tmp_path):
    """Killed after the drive's copy is written and before the jobfile is: the jobfile still
    says the volume is open, so the next run finishes it, and both agree."""
    src = source_of(tmp_path, {"a": "version one\n", "b": "b\n"})
    assert backup(tmp_path).returncode == 0
    (src / "a").write_text("version two, longer\n")
    killed = backup(tmp_path, fault="replace:job.json")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((tmp_path / "usb/.mvcopy-jobdata.json").read_text())["run"]["state"] == "done"

    rerun = backup(tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    assert "nothing to do" not in rerun.stderr  # the drive is visited to finish the volume
    assert json.loads((tmp_path / "job.json").read_text())["run"]["state"] == "done"
    assert drive_equals_source(tmp_path) == ""


def test_a_rewrite_that_did_not_grow_is_not_the_one_given_up(tmp_path):
    """Volume 1 too small for its rewrites: the file that grew goes to a new drive, not the
    touched one beside it; none is written twice (the dry run said copy and rewrite of one)."""
    src = source_of(tmp_path, {"a": "x" * 60_000, "b": "y" * 40_000, "z": "z" * 4_000})
    (tmp_path / "usb2").mkdir()
    args = ("-o", "usb2", "--volume-size", "120K")
    assert backup(tmp_path, *args).returncode == 0
    (src / "a").write_text("x" * 90_000)  # grew past the room left
    (src / "z").write_text("Z" * 4_000)  # same size, new bytes

    dry = backup(tmp_path, *args, "--dry-run", "--json")
    rerun = backup(tmp_path, *args)

    assert dry.returncode == 0 and rerun.returncode == 0, rerun.stderr
    predicted = json.loads(dry.stdout)
    assert predicted["volumes"]["1"]["rewrite"] == ["z"] and predicted["volumes"]["1"]["copy"] == []
    assert predicted["new_drive"]["copy"] == ["a"]
    report = json.loads((tmp_path / "job.json.changes.json").read_text())
    assert report["volumes"]["1"]["rewritten"] == ["z"]
    assert report["volumes"]["2"]["copied"] == ["a"]


def _sums_without_a_file(tmp_path: Path) -> list[str]:
    """Paths the drive's .mvcopy-sha256sums lists that are not files on the drive."""
    usb = tmp_path / "usb"
    listed = [line.split("  ", 1)[1] for line in (usb / ".mvcopy-sha256sums").read_text().splitlines()]
    return [path for path in listed if not (usb / path).is_file()]


def test_a_folder_moved_then_killed_after_its_rename_leaves_no_file_listed_that_is_not_there(tmp_path):
    """A folder moved in the source is renamed on the drive; killed right after (at the purge of
    the emptied folders), the journal had not yet told of the rename.  The re-run must not keep
    listing the old path as held: it is not on the drive any more."""
    src = source_of(tmp_path, {"x": "x\n", "tree/l0/l1/l2/f0": "deep\n"})
    assert backup(tmp_path).returncode == 0
    (src / "tree/l0/l1/l2").rename(src / "a2")

    killed = backup(tmp_path, fault="after-purge")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rerun = backup(tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    assert drive_equals_source(tmp_path) == ""
    assert _sums_without_a_file(tmp_path) == []


def test_a_file_removed_then_killed_before_the_removal_was_recorded_is_copied_when_it_comes_back(tmp_path):
    """A file deleted from the source is removed from the drive; killed before that removal is
    recorded, then the file comes back as it was: the drive's records must not count the copy
    that is gone as kept."""
    src = source_of(tmp_path, {"a": "a\n", "b": "b, which goes and comes back\n"})
    assert backup(tmp_path).returncode == 0
    kept = tmp_path / "b, kept aside"
    (src / "b").rename(kept)

    killed = backup(tmp_path, fault="after-purge")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "usb/b").exists()
    kept.rename(src / "b")  # the same bytes and time
    rerun = backup(tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    assert drive_equals_source(tmp_path) == ""


def test_a_moved_file_killed_right_after_its_rename_on_the_drive_is_not_listed_at_its_old_path(tmp_path):
    """Killed after a move was renamed on the drive and before the journal heard of it: the old
    path is gone from the drive, and must not stay listed as held there."""
    src = source_of(tmp_path, {"a": "a\n", "docs/report.txt": "the report\n"})
    assert backup(tmp_path).returncode == 0
    (src / "docs/report.txt").rename(src / "report, moved.txt")

    killed = backup(tmp_path, fault="after-rename")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rerun = backup(tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    assert drive_equals_source(tmp_path) == ""
    assert _sums_without_a_file(tmp_path) == []
