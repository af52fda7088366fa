"""Special files and what the scan cannot read (issue 16): a FIFO, a socket and a device node
are left out of the drives by design (the run exits 0, and says so once), recorded in the
jobfile, and made again by ``--restore``; a folder the scan cannot list is *not saved*: the
run lists it and does not exit 0, as ``rsync`` (23) and ``cp -a`` (1) do not."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

from conftest import needs_root
from helpers import USER, as_user, files_on, reachable, run_mvc
from multivolumecopy.errors import ExitCode


def special_tree(src: Path) -> None:
    (src / "run").mkdir(parents=True)
    (src / "run/data.txt").write_text("data\n")
    os.mkfifo(src / "run/pipe", 0o640)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(src / "run/sock"))
    os.mknod(src / "run/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chown(src / "run/pipe", 1005, 1006)
    os.utime(src / "run/pipe", ns=(1_500_000_000_000_000_001, 1_500_000_000_000_000_001))
    os.utime(src / "run", ns=(1_500_000_000_000_000_003, 1_500_000_000_000_000_003))


@needs_root
def test_special_files_are_left_out_by_design_recorded_and_made_again_by_restore(tmp_path):
    src = tmp_path / "src"
    special_tree(src)
    (tmp_path / "usb").mkdir()

    run = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert run.returncode == 0, run.stderr  # nothing lost: they hold no data
    told = [line for line in run.stderr.splitlines() if "left out by design" in line]
    assert told == [
        "note: 1 FIFO, 1 socket and 1 device node left out by design (no data to copy): recorded, "
        "--restore makes them again"
    ], run.stderr
    assert files_on(tmp_path / "usb") == {"run/data.txt"}  # nothing special on the drive
    kinds = {row[0]: row[1] for row in json.loads((tmp_path / "job.json").read_text())["specials"]}
    assert kinds == {"run/null": "char", "run/pipe": "fifo", "run/sock": "socket"}

    back = run_mvc("--restore", "-f", "job.json", "-o", "usb", "--to", "back", cwd=tmp_path)

    assert back.returncode == 0, back.stderr
    oracle = subprocess.run(
        ["rsync", "-naHAXc", "--itemize-changes", f"{src}/", f"{tmp_path / 'back'}/"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert oracle.stdout == "", oracle.stdout  # kinds, device number, owners, modes, times
    again = run_mvc("--restore", "-f", "job.json", "-o", "usb", "--to", "back", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # what is there already, as it was, is left


@needs_root
def test_something_else_where_a_special_file_goes_is_reported_not_replaced(tmp_path):
    src = tmp_path / "src"
    special_tree(src)
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    (tmp_path / "back/run").mkdir(parents=True)
    (tmp_path / "back/run/pipe").write_text("mine\n")

    back = run_mvc("--restore", "-f", "job.json", "-o", "usb", "--to", "back", cwd=tmp_path)

    assert back.returncode == int(ExitCode.FILES_FAILED), back.stderr
    assert "run/pipe" in back.stderr and (tmp_path / "back/run/pipe").read_text() == "mine\n"


@needs_root
def test_a_folder_the_scan_cannot_list_is_not_saved_and_the_run_does_not_exit_0(tmp_path):
    """Run as a user without root (root reads every folder): its own tree, with one folder it
    cannot open."""
    work = tmp_path / "user"
    src = work / "src"
    (src / "locked").mkdir(parents=True)
    (src / "locked/secret.txt").write_text("not readable by the user\n")
    (src / "open.txt").write_text("fine\n")
    (work / "usb").mkdir()
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(work)], check=True)
    os.chown(src / "locked", 0, 0)
    os.chmod(src / "locked", 0o700)

    with reachable(work):
        first = as_user([str(src), "-o", str(work / "usb"), "-f", str(work / "job.json")], work)
        again = as_user([str(src), "-o", str(work / "usb"), "-f", str(work / "job.json")], work)

    assert first.returncode == int(ExitCode.FILES_FAILED), first.stderr
    assert "locked: cannot list directory: Permission denied" in first.stderr
    assert files_on(work / "usb") == {"open.txt"}
    failed = json.loads((work / "job.json").read_text())["failed"]
    assert failed == [["locked", "cannot list directory: Permission denied"]]
    # Nothing else to do the next time: still not saved, still not 0.
    assert again.returncode == int(ExitCode.FILES_FAILED), again.stderr


@needs_root
def test_a_new_fifo_alone_reaches_a_drives_copy_of_the_jobfile(tmp_path):
    """No drive holds a FIFO: the drives' copies of the jobfile are its only record once the
    server is gone, so a FIFO made since the last run sends the run to a drive (its folder's)
    to refresh that copy, instead of "nothing to do"."""
    src = tmp_path / "src"
    (src / "run").mkdir(parents=True)
    (src / "run/data.txt").write_text("data\n")
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    before = (src / "run").stat()
    os.mkfifo(src / "run/pipe", 0o640)
    os.utime(src / "run", ns=(before.st_atime_ns, before.st_mtime_ns))  # nothing else changed

    again = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert again.returncode == 0, again.stderr
    assert "nothing to do" not in again.stderr
    copy = json.loads((tmp_path / "usb/.mvcopy-jobdata.json").read_text())
    assert [row[0] for row in copy["specials"]] == ["run/pipe"]
    (tmp_path / "job.json").unlink()  # the server is gone
    back = run_mvc("--restore", "-f", "usb/.mvcopy-jobdata.json", "-o", "usb", "--to", "back", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert stat.S_ISFIFO((tmp_path / "back/run/pipe").lstat().st_mode)


@needs_root
def test_a_folder_that_cannot_be_read_for_a_while_keeps_its_copies_on_the_drives(tmp_path):
    """Backed up, then unreadable (a permission, a share gone for a moment): the run says so
    and does not exit 0, but it deletes nothing of that folder from the drive or the jobfile
    (rsync skips its deletions after an I/O error); readable again, all is as before."""
    work = tmp_path / "user"
    src = work / "src"
    (src / "locked/sub").mkdir(parents=True)
    (src / "locked/secret.txt").write_text("the user's, for now\n")
    (src / "locked/sub/deeper.txt").write_text("deeper\n")
    (src / "open.txt").write_text("fine\n")
    (work / "usb").mkdir()
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(work)], check=True)
    argv = [str(src), "-o", str(work / "usb"), "-f", str(work / "job.json")]
    held = {"open.txt", "locked/secret.txt", "locked/sub/deeper.txt"}

    with reachable(work):
        first = as_user(argv, work)
        assert first.returncode == 0, first.stderr
        assert files_on(work / "usb") == held
        os.chown(src / "locked", 0, 0)
        os.chmod(src / "locked", 0o700)
        cut_off = as_user(argv, work)
        rows = [row[0] for row in json.loads((work / "job.json").read_text())["files"]]
        after_cut = files_on(work / "usb")
        os.chown(src / "locked", USER, USER)
        back = as_user(argv, work)

    assert cut_off.returncode == int(ExitCode.FILES_FAILED), cut_off.stderr
    assert "locked: cannot list directory: Permission denied" in cut_off.stderr
    assert "removed" not in cut_off.stderr, cut_off.stderr
    assert {"locked/secret.txt", "locked/sub/deeper.txt"} <= set(rows)
    assert after_cut == held, "the drive's copies of what could not be read were deleted"
    assert back.returncode == 0, back.stderr
    assert files_on(work / "usb") == held
