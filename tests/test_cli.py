"""The command line as a user meets it: bad input gets one clear line and its exit code."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time

import pytest

from helpers import files_on, make_tree, mvc_argv, mvc_env, run_mvc
from multivolumecopy.cli import main
from multivolumecopy.errors import ExitCode


@pytest.fixture
def place(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.txt").write_text("a")
    (tmp_path / "usb").mkdir()
    os.symlink("nowhere", tmp_path / "dangling")
    return tmp_path


def one_line_error(result) -> str:
    """The one error line (other lines are progress reports), with no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("multivolumecopy: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize(
    "args,code,says",
    [
        (["missing", "-o", "usb"], ExitCode.SOURCE_ERROR, "source missing does not exist"),
        (["src", "src", "-o", "usb"], ExitCode.SOURCE_ERROR, "are the same; give each source once"),
        (["src", "-o", "nowhere"], ExitCode.OUTPUT_ERROR, "output nowhere does not exist"),
        (["src", "-o", "src/a.txt"], ExitCode.OUTPUT_ERROR, "is not a directory"),
        (["src", "-o", "src"], ExitCode.OUTPUT_ERROR, "is inside source"),
        (["src", "-o", "usb", "-o", "usb"], ExitCode.OUTPUT_ERROR, "is given twice"),
        (["src", "-o", "usb", "--device-padding", "5Q"], ExitCode.USAGE, "'5Q' is not a size"),
        (["src", "-o", "usb", "-i", "3"], ExitCode.USAGE, "only go with --verify"),
        (["src", "-o", "usb", "--bogus"], ExitCode.USAGE, "unrecognized arguments: --bogus"),
        (["-o", "usb"], ExitCode.USAGE, "name at least one source"),
        (["src", "-o", "usb", "--checksum"], ExitCode.USAGE, "--checksum goes with --verify"),
        (["dangling", "-o", "usb"], ExitCode.SOURCE_ERROR, "source dangling is a broken symlink"),
        (["src", "-o", "usb", "-f", "usb/job.json"], ExitCode.OUTPUT_ERROR, "is on the backup drive"),
        (
            ["src", "-o", "usb", "--volume-size", "1"],
            ExitCode.TOO_LARGE,
            "a.txt (1 B, 4.0 KiB on the drive) is larger than a whole volume (1 B)",
        ),
    ],
)
def test_bad_input_is_one_line_with_its_exit_code_and_writes_nothing(place, args, code, says):
    if "-f" not in args:
        args = [*args, "-f", "job.json"]
    before = sorted(os.listdir(place / "usb"))

    result = run_mvc(*args, cwd=place)

    assert result.returncode == code
    assert says in one_line_error(result)
    assert sorted(os.listdir(place / "usb")) == before
    assert not (place / "job.json").exists()


@pytest.mark.parametrize("mode", [[], ["--dry-run"]])
def test_a_jobfile_in_a_missing_folder_is_refused_in_one_line_and_the_folder_is_not_made(place, mode):
    folder = place / "no such folder"  # a mistyped path, or a share's mount point while unmounted
    result = run_mvc("src", "-o", "usb", "-f", str(folder / "job.json"), *mode, cwd=place)

    assert result.returncode == ExitCode.JOBFILE_ERROR
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"multivolumecopy: the jobfile's folder {folder} does not exist; create it "
        f"(mkdir -p '{folder}'), or give -f a path in an existing folder"
    ]
    assert not folder.exists()
    assert os.listdir(place / "usb") == []


@pytest.mark.parametrize(
    "content,says",
    [
        ("{not json", "corrupt or truncated"),
        ('{"format": "multivolumecopy-jobfile", "version": 7}', "format version 7"),
    ],
)
def test_a_damaged_jobfile_stops_the_run_with_what_to_do(place, content, says):
    (place / "job.json").write_text(content)
    result = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=place)
    assert result.returncode == ExitCode.JOBFILE_ERROR
    assert says in one_line_error(result)


def test_a_jobfile_of_other_sources_is_refused(place):
    (place / "other").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=place).returncode == 0
    (place / "usb2").mkdir()
    result = run_mvc("other", "-o", "usb2", "-f", "job.json", cwd=place)
    assert result.returncode == ExitCode.JOBFILE_ERROR
    assert "belongs to another job" in one_line_error(result)


def test_a_second_run_on_the_same_jobfile_is_refused_naming_the_first(place):
    with open(place / "job.json.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("pid 4242 on fileserver, started earlier")
        lock.flush()
        result = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=place)
    assert result.returncode == ExitCode.LOCKED
    assert "in use by another multivolumecopy run (pid 4242 on fileserver" in one_line_error(result)
    assert "scanned" not in result.stderr  # refused before the scan
    assert sorted(os.listdir(place)) == ["dangling", "job.json.lock", "src", "usb"]  # the holder's lock
    # The holder is gone: its lock no longer blocks.
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=place).returncode == 0


def test_a_run_refused_for_a_busy_drive_is_refused_before_the_scan_and_leaves_nothing(place):
    for i in range(2000):  # a scan that would be seen: the refusal comes before it
        (place / f"src/f{i}").write_text("x")
    before = sorted(os.listdir(place))
    with open(place / "usb/.mvcopy-lock", "a+") as lock:  # a backup or --verify holds the drive
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("pid 4242 on fileserver, started earlier")
        lock.flush()
        result = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=place)

    assert result.returncode == ExitCode.LOCKED
    error = one_line_error(result)
    assert f"the drive at {place / 'usb'} is in use by another multivolumecopy run (pid 4242" in error
    assert result.stderr.splitlines() == [error]  # no "scanned ...", no "starting run ..."
    assert sorted(os.listdir(place)) == before  # no job.json.lock, no job.json.log
    assert os.listdir(place / "usb") == [".mvcopy-lock"]


def test_help_lists_the_exit_codes_and_the_cards_calls(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "3 stopped at a drive swap" in out
    assert "multivolumecopy --verify -f .mvcopy-jobdata.json -i 0 -si 300 -o /mnt/usb" in out


def test_python_dash_m_runs_the_program(place):
    result = run_mvc("--version", cwd=place)
    assert result.returncode == 0 and result.stdout.startswith("multivolumecopy ")


SWAP_BY_MV = 'mv "$MVCOPY_OUTPUT" "$MVCOPY_OUTPUT-$MVCOPY_VOLUME" && mkdir "$MVCOPY_OUTPUT"'


def test_directories_as_volumes_with_volume_size_as_in_the_readme(tmp_path):
    src = tmp_path / "src"
    total = make_tree(src)
    (tmp_path / "usb").mkdir()
    args = (
        "src",
        "-o",
        "usb",
        "-f",
        "job.json",
        "--volume-size",
        str(total // 3),
        "--new-volume-script",
        SWAP_BY_MV,
    )

    result = run_mvc(*args, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "volume 3 done" in result.stderr
    # The printed ranges are what --verify takes: the card's call passes on volume 1 ...
    line = next(x for x in result.stderr.splitlines() if x.startswith("volume 1 done: holds indexes 0-"))
    last = int(line.split("indexes 0-")[1].split()[0])
    ok = run_mvc("--verify", "-f", "job.json", "-i", "0", "-si", str(last + 1), "-o", "usb-1", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout
    # ... and fails when asked for one index more than the volume holds.
    bad = run_mvc("--verify", "-f", "job.json", "-i", "0", "-si", str(last + 2), "-o", "usb-1", cwd=tmp_path)
    assert bad.returncode == ExitCode.VERIFY_FAILED
    assert f"missing    {last + 1:>8}" in bad.stdout


def test_a_rerun_after_new_files_puts_them_on_a_drive_and_copies_nothing_else(tmp_path):
    src = tmp_path / "src"
    make_tree(src, n_files=10, big=0)
    (tmp_path / "usb").mkdir()
    args = ("src", "-o", "usb", "-f", "job.json")
    assert run_mvc(*args, cwd=tmp_path).returncode == 0
    stamp = {p: os.lstat(tmp_path / "usb" / p).st_ino for p in files_on(tmp_path / "usb")}
    time.sleep(0.01)
    (src / "zeta/new.txt").write_text("new")

    result = run_mvc(*args, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "wrote 1 " in result.stderr
    assert (tmp_path / "usb/zeta/new.txt").read_text() == "new"
    after = {p: os.lstat(tmp_path / "usb" / p).st_ino for p in files_on(tmp_path / "usb")}
    assert {k: v for k, v in after.items() if k in stamp} == stamp


def first_volume_filled(tmp_path) -> tuple[str, ...]:
    """A job of three directory volumes, stopped at the first swap; returns its arguments."""
    total = make_tree(tmp_path / "src")
    (tmp_path / "usb").mkdir()
    args = ("src", "-o", "usb", "-f", "job.json", "--volume-size", str(total // 3))
    assert run_mvc(*args, cwd=tmp_path).returncode == ExitCode.SWAP_NEEDED
    return args


def test_a_crash_before_a_new_drive_was_labelled_lets_a_blank_drive_take_its_place(tmp_path):
    args = first_volume_filled(tmp_path)
    # What the jobfile holds when a crash comes after volume 2 was recorded, before its label:
    job = json.loads((tmp_path / "job.json").read_text())
    ghost = dict(job["volumes"][0], number=2, uuid="ghost", labelled=False)
    job["volumes"].append(ghost)
    job["run"]["open_volume"] = 2
    (tmp_path / "job.json").write_text(json.dumps(job))
    os.rename(tmp_path / "usb", tmp_path / "usb-1")
    (tmp_path / "usb").mkdir()

    result = run_mvc(*args, cwd=tmp_path)

    assert result.returncode == ExitCode.SWAP_NEEDED, result.stderr
    assert "blank drive, now volume 2" in result.stderr
    label = json.loads((tmp_path / "usb/.mvcopy-label.json").read_text())
    assert label["volume"] == 2 and label["volume_uuid"] != "ghost"


def test_a_crash_after_a_new_drive_was_labelled_needs_that_drive_not_a_blank_one(tmp_path):
    """Found by the model test: killed after labelling volume 2's drive and copying to it, but
    before any record of those files; a blank drive offered next must not become volume 2 (the
    labelled drive, holding the files, would be left an orphan copy of them)."""
    args = first_volume_filled(tmp_path)
    job = json.loads((tmp_path / "job.json").read_text())
    labelled = dict(job["volumes"][0], number=2, uuid="labelled", labelled=True)
    job["volumes"].append(labelled)
    job["run"]["open_volume"] = 2
    (tmp_path / "job.json").write_text(json.dumps(job))
    os.rename(tmp_path / "usb", tmp_path / "usb-1")
    (tmp_path / "usb").mkdir()

    result = run_mvc(*args, cwd=tmp_path)

    assert result.returncode == ExitCode.SWAP_NEEDED, result.stderr
    assert "it is a blank drive, but volume 2 is not finished" in result.stderr
    assert "insert volume 2 (not finished yet)" in result.stderr
    assert not (tmp_path / "usb/.mvcopy-label.json").exists()


def test_a_blank_drive_is_refused_while_a_volume_with_files_is_unfinished(tmp_path):
    args = first_volume_filled(tmp_path)
    job = json.loads((tmp_path / "job.json").read_text())
    job["run"]["open_volume"] = 1  # as after Ctrl-C in the middle of volume 1
    job["run"]["done_volumes"] = []
    (tmp_path / "job.json").write_text(json.dumps(job))
    os.rename(tmp_path / "usb", tmp_path / "usb-1")
    (tmp_path / "usb").mkdir()

    result = run_mvc(*args, cwd=tmp_path)

    assert result.returncode == ExitCode.SWAP_NEEDED
    assert "drive refused: it is a blank drive, but volume 1 is not finished" in result.stderr
    assert "insert volume 1 (not finished yet)" in result.stderr
    assert os.listdir(tmp_path / "usb") == []  # a refused drive is left as it was


def test_a_jobfile_write_cut_short_leaves_nothing_behind_after_the_next_run(place):
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=place).returncode == 0
    # a run killed while replacing its jobfile:
    (place / "job.json.tmp-99999").write_text('{"format": "multivolumecopy-jobfile", "vers')

    result = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=place)

    assert result.returncode == 0, result.stderr
    assert not (place / "job.json.tmp-99999").exists()


def test_counts_of_one_are_said_in_the_singular(place):
    first = run_mvc("src", "-o", "usb", "-f", "job.json", "--hide-progress", cwd=place)
    assert first.returncode == 0, first.stderr
    assert "scanned 1 file, 0 folders, 0 symlinks (1 B)" in first.stderr
    assert "(1 entry, " in first.stderr
    again = run_mvc("src", "-o", "usb", "-f", "job.json", "--hide-progress", cwd=place)
    assert "nothing to do: 1 entry on 1 volume, all current" in again.stderr


def test_a_source_restored_with_new_inodes_is_recorded_so_later_moves_are_still_seen(place):
    from multivolumecopy import jobfile as jf

    args = ("src", "-o", "usb", "-f", "job.json", "--hide-progress")
    assert run_mvc(*args, cwd=place).returncode == 0
    a = place / "src/a.txt"
    os.link(a, place / "a copy")  # keep the old inode busy, so the new one surely differs
    shutil.copy2(a, place / "new.tmp")  # same bytes and mtime, another inode (cp -p, a restore)
    os.replace(place / "new.tmp", a)

    again = run_mvc(*args, cwd=place)

    assert "nothing to do" in again.stderr, again.stderr
    job = jf.load(str(place / "job.json"))
    assert job.cached  # the cache written with the jobfile is the one read
    assert job.catalog.inodes[job.catalog.paths.index("a.txt")] == a.stat().st_ino


def test_an_empty_folder_on_a_blank_drive_where_a_file_goes_is_left_and_the_file_is_not_saved(place):
    """Something not ours in the way is never replaced, nor worked around by putting the file on
    another drive (copied back, the drives would then disagree about that path): the run says
    what is in the way and where, and exits 1; once it is moved away, a re-run saves the file."""
    (place / "src/b.txt").write_text("b")
    (place / "usb/a.txt").mkdir()  # a blank drive holding nothing but a folder of that name
    (place / "usb2").mkdir()

    result = run_mvc("src", "-o", "usb", "-o", "usb2", "-f", "job.json", "--volume-size", "1M", cwd=place)

    assert result.returncode == ExitCode.FILES_FAILED, result.stderr
    assert f"a.txt: something not put there by multivolumecopy is in its way at {place}/usb/a.txt" in (
        result.stderr
    )
    assert (place / "usb/a.txt").is_dir() and os.listdir(place / "usb/a.txt") == []
    assert (place / "usb/b.txt").read_text() == "b"
    assert not (place / "usb2/a.txt").exists()
    (place / "usb/a.txt").rmdir()
    again = run_mvc("src", "-o", "usb", "-o", "usb2", "-f", "job.json", "--volume-size", "1M", cwd=place)
    assert again.returncode == 0, again.stderr
    assert (place / "usb/a.txt").read_text() == "a"


def test_a_run_leaves_no_process_of_its_group_behind(tmp_path):
    """What a run started (copy workers, multiprocessing's resource tracker) has ended when it
    exits: a script that waits for the run, then for its process group, does not wait on."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(20):
        (src / f"f{n}").write_bytes(os.urandom(1000))
    (tmp_path / "usb").mkdir()
    run = subprocess.Popen(
        mvc_argv("src", "-o", "usb", "-f", "job.json"),
        cwd=tmp_path,
        env=mvc_env(),
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    assert run.wait(timeout=120) == 0
    left = subprocess.run(["pgrep", "-a", "-g", str(run.pid)], capture_output=True, text=True).stdout
    assert left == "", f"still in the run's process group after it exited: {left}"
