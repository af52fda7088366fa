"""The job remembers its options: a cron job's bare command keeps the first run's ``--exclude``,
``--device-padding`` and ``--volume-size``; a run giving other values is refused before it
touches anything, and ``--change-options`` makes them the job's.  Checked on the drives with
rsync and a walk of the drive, not through the tool's own records."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import oracle
from conftest import needs_root
from helpers import bay_args, files_on, make_tree, run_mvc, union_of
from multivolumecopy.errors import ExitCode

EXCLUDES = (".cache", "*.tmp")
EXCLUDE_ARGS = ("--exclude", ".cache", "--exclude", "*.tmp")


def differences_but_excluded(src: Path, other: Path, excludes: tuple[str, ...]) -> str:
    """What rsync sees between ``src`` and ``other`` (a drive, or the union of drives) once
    ``excludes`` are left out of both: an excluded file found in ``other`` is a difference too
    (``--delete-excluded``); the tool's own records at the top are not."""
    st = os.stat(src)
    os.chmod(other, st.st_mode & 0o7777)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    rules = ["--filter=P /.mvcopy-*", "--filter=P /lost+found", *(f"--exclude={p}" for p in excludes)]
    cmd = ["rsync", "-rlptcn", "--delete", "--delete-excluded", "--itemize-changes", *rules]
    return subprocess.run(
        [*cmd, f"{src}/", f"{other}/"], capture_output=True, text=True, check=True
    ).stdout.strip()


def excluded_on(held: set[str]) -> list[str]:
    """Paths on a drive that ``EXCLUDES`` leave out (a ``.cache`` folder anywhere, a ``*.tmp``)."""
    return sorted(p for p in held if ".cache" in p.split("/") or p.endswith(".tmp"))


def leave_out_stuff(src: Path, tag: str, size: int) -> None:
    """What the job's excludes are for: caches and temporary files, big enough to matter."""
    for folder in ("", "Alpha", "beta/deep"):
        (src / folder / ".cache").mkdir(parents=True, exist_ok=True)
        (src / folder / ".cache" / f"blob {tag}").write_bytes(os.urandom(size))
        (src / folder / f"scratch {tag}.tmp").write_bytes(os.urandom(size // 2))


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# -------------------------------------------------------------- a bare re-run keeps the options


@needs_root
def test_a_bare_rerun_keeps_the_first_runs_excludes_and_device_padding(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    leave_out_stuff(src, "first", 120_000)
    images = [drives.image(f"d{i}", 1400) for i in range(1, 8)]
    padding = 300 * 1024
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    first = run_mvc(*bay_args(tmp_path, bay, *EXCLUDE_ARGS, "--device-padding", "300K"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # A month later: new files, and new caches and scratch files the job must leave out too.
    for k in range(6):
        (src / "zeta" / f"new {k}.bin").write_bytes(os.urandom(90_000))
    leave_out_stuff(src, "later", 150_000)
    bay.eject()
    bay.insert(images[0])
    bay.enqueue(*images[1:])

    rerun = run_mvc(*bay_args(tmp_path, bay), cwd=tmp_path)  # the bare command

    assert rerun.returncode == 0, rerun.stderr
    bay.eject()
    with drives.inspect(images) as points:
        labelled = [p for p in points if (p / ".mvcopy-label.json").exists()]
        held = {p: files_on(p) for p in labelled}
        free = {p: os.statvfs(p).f_bavail * os.statvfs(p).f_frsize for p in labelled}
        union = union_of(labelled, tmp_path / "union")
    assert len(labelled) >= 3
    for point, paths in held.items():
        assert excluded_on(paths) == [], f"{point} holds what the job leaves out"
        assert free[point] >= padding, (
            f"{point} was filled past the job's --device-padding: {free[point]} B free"
        )
    assert differences_but_excluded(src, union, EXCLUDES) == ""


def test_a_bare_rerun_onto_folders_keeps_the_jobs_volume_size(tmp_path):
    """Three folders on one filesystem are three volumes only by the job's --volume-size: the
    bare command is not refused for it, and no volume takes more."""
    src = tmp_path / "src"
    make_tree(src, n_files=30, big=0)
    leave_out_stuff(src, "first", 30_000)
    outs = []
    for n in (1, 2, 3, 4):
        (tmp_path / f"v{n}").mkdir()
        outs += ["-o", f"v{n}"]
    limit = 150 * 1024
    first = run_mvc("src", *outs, "-f", "job.json", "--volume-size", "150K", *EXCLUDE_ARGS, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (src / "Alpha" / "later.bin").write_bytes(os.urandom(50_000))
    leave_out_stuff(src, "later", 30_000)

    rerun = run_mvc("src", *outs, "-f", "job.json", cwd=tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    volumes = [tmp_path / f"v{n}" for n in (1, 2, 3, 4)]
    for v in volumes:
        data = sum(os.lstat(v / p).st_size for p in files_on(v))
        assert data <= limit, f"{v.name} holds {data} B, more than the job's --volume-size 150K"
        assert excluded_on(files_on(v)) == [], f"{v.name} holds what the job leaves out"
    assert differences_but_excluded(src, union_of(volumes, tmp_path / "union"), EXCLUDES) == ""


# ------------------------------------------------- other values: refused, or adopted on request


@pytest.fixture
def made_with_excludes(tmp_path):
    """A job on one folder made with ``--exclude .cache --exclude '*.tmp'``."""
    src = tmp_path / "src"
    for rel, size in [("photos/a.jpg", 9000), ("photos/b.iso", 20000), ("c.iso", 5000), ("notes.txt", 300)]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(os.urandom(size))
    leave_out_stuff(src, "first", 4000)
    (tmp_path / "usb").mkdir()
    first = run_mvc("src", "-o", "usb", "-f", "job.json", *EXCLUDE_ARGS, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    return src


def state(tmp_path: Path) -> tuple[oracle.Tree, bytes]:
    """Everything on the drive (our records too), and the jobfile's bytes."""
    return oracle.tree(str(tmp_path / "usb")), (tmp_path / "job.json").read_bytes()


def test_a_run_giving_another_exclude_is_refused_in_one_line_and_touches_nothing(
    tmp_path, made_with_excludes
):
    before = state(tmp_path)

    refused = run_mvc("src", "-o", "usb", "-f", "job.json", "--exclude", "*.iso", cwd=tmp_path)
    dry = run_mvc("src", "-o", "usb", "-f", "job.json", "--exclude", "*.iso", "--dry-run", cwd=tmp_path)

    assert refused.returncode == ExitCode.USAGE
    assert one_line_error(refused.stderr) == (
        "multivolumecopy: the job has --exclude .cache --exclude '*.tmp'; this run gives "
        "--exclude '*.iso': give --change-options to change the job's options (files they leave "
        "out are then deleted from the drives), or leave out --exclude to keep the job's"
    )
    assert dry.returncode == ExitCode.USAGE and dry.stdout == ""
    assert state(tmp_path) == before


def test_giving_the_jobs_own_options_is_no_change(tmp_path, made_with_excludes):
    same = run_mvc(
        "src", "-o", "usb", "-f", "job.json", "--exclude", "*.tmp", "--exclude", ".cache", cwd=tmp_path
    )

    assert same.returncode == 0, same.stderr
    assert "nothing to do" in same.stderr
    assert json.loads((tmp_path / "job.json").read_text())["options"]["exclude"] == [".cache", "*.tmp"]


def test_change_options_narrows_the_job_deletes_what_is_left_out_and_keeps_the_rest(
    tmp_path, made_with_excludes
):
    src, usb = made_with_excludes, tmp_path / "usb"
    kept = {p: os.lstat(usb / p) for p in ("photos/a.jpg", "notes.txt")}
    wider = (*EXCLUDE_ARGS, "--exclude", "*.iso")

    preview = run_mvc(
        "src", "-o", "usb", "-f", "job.json", *wider, "--change-options", "--dry-run", "--json", cwd=tmp_path
    )
    changed = run_mvc("src", "-o", "usb", "-f", "job.json", *wider, "--change-options", cwd=tmp_path)
    bare = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert preview.returncode == 0, preview.stderr
    assert sorted(json.loads(preview.stdout)["volumes"]["1"]["delete"]) == ["c.iso", "photos/b.iso"]
    assert (
        "the job's options would change to --exclude .cache --exclude '*.tmp' --exclude '*.iso'"
        in preview.stderr
    )
    assert changed.returncode == 0, changed.stderr
    assert (
        "note: the job's options change to --exclude .cache --exclude '*.tmp' --exclude '*.iso' (were "
        "--exclude .cache --exclude '*.tmp'); files now left out are deleted from the drives, as files "
        "deleted from the sources are"
    ) in changed.stderr
    assert sorted(files_on(usb)) == ["notes.txt", "photos/a.jpg"]
    for p, st in kept.items():  # kept in place, not copied again
        assert (os.lstat(usb / p).st_ino, os.lstat(usb / p).st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert differences_but_excluded(src, usb, (*EXCLUDES, "*.iso")) == ""
    assert (src / "c.iso").exists() and (src / "photos/b.iso").exists()  # only the drive lost them
    assert bare.returncode == 0 and "nothing to do" in bare.stderr, bare.stderr


def test_a_dry_run_of_a_change_writes_nothing(tmp_path, made_with_excludes):
    before = state(tmp_path)

    preview = run_mvc(
        "src", "-o", "usb", "-f", "job.json", "--no-exclude", "--change-options", "--dry-run", cwd=tmp_path
    )

    assert preview.returncode == 0, preview.stderr
    assert "the job's options would change to --no-exclude" in preview.stderr
    assert state(tmp_path) == before


def test_change_options_widens_the_job_and_copies_what_is_no_longer_left_out(tmp_path, made_with_excludes):
    src, usb = made_with_excludes, tmp_path / "usb"

    changed = run_mvc(
        "src", "-o", "usb", "-f", "job.json", "--exclude", ".cache", "--change-options", cwd=tmp_path
    )

    assert changed.returncode == 0, changed.stderr
    assert "files no longer left out are copied" in changed.stderr
    assert sorted(p for p in files_on(usb) if p.endswith(".tmp")) == [
        "Alpha/scratch first.tmp",
        "beta/deep/scratch first.tmp",
        "scratch first.tmp",
    ]
    assert differences_but_excluded(src, usb, (".cache",)) == ""
    assert json.loads((tmp_path / "job.json").read_text())["options"]["exclude"] == [".cache"]


def test_a_change_that_alters_no_entry_is_still_recorded(tmp_path, made_with_excludes):
    """Nothing to copy or delete (no file matches the new pattern): the jobfile still takes the
    new options, so the next bare run keeps them."""
    changed = run_mvc(
        "src",
        "-o",
        "usb",
        "-f",
        "job.json",
        *EXCLUDE_ARGS,
        "--exclude",
        "*.bak",
        "--change-options",
        cwd=tmp_path,
    )
    (made_with_excludes / "old.bak").write_text("left out from now on\n")
    bare = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert changed.returncode == 0 and "nothing to do" in changed.stderr, changed.stderr
    assert bare.returncode == 0, bare.stderr
    assert "old.bak" not in files_on(tmp_path / "usb")


# --------------------------------------------------------------------------------- --status


def test_status_shows_the_jobs_options(tmp_path, made_with_excludes):
    text = run_mvc("--status", "-f", "job.json", cwd=tmp_path)
    as_json = run_mvc("--status", "--json", "-f", "job.json", cwd=tmp_path)

    assert text.returncode == 0, text.stdout
    assert text.stdout.splitlines()[-1] == "  job options: --exclude .cache --exclude '*.tmp'"
    assert json.loads(as_json.stdout)["options"] == {
        "exclude": [".cache", "*.tmp"],
        "one_file_system": False,
        "device_padding": 0,
        "volume_size": None,
        "owner": True,
        "acls": True,
        "xattrs": True,
    }


def test_status_of_a_job_with_the_default_options_says_so(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a").write_text("a")
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0

    text = run_mvc("--status", "-f", "job.json", cwd=tmp_path)

    assert text.stdout.splitlines()[-1] == "  job options: the defaults"


# ------------------------------------------------------------------------ what the jobfile says


@pytest.mark.parametrize(
    "options,code,says",
    [
        (
            {"exclude": [], "device_padding": 0, "volume_size": None, "one_file_system": False, "parity": 2},
            ExitCode.JOBFILE_ERROR,
            "records job options this multivolumecopy does not know (parity); run the job with the "
            "multivolumecopy that made it, or a newer one",
        ),
        (
            {"exclude": "*.tmp"},
            ExitCode.JOBFILE_ERROR,
            "is damaged (a field is missing or of the wrong type)",
        ),
    ],
)
def test_options_the_jobfile_records_that_this_version_cannot_honour_stop_the_run(
    tmp_path, options, code, says
):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a").write_text("a")
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    job = tmp_path / "job.json"
    doc = json.loads(job.read_text())
    doc["options"] = options
    job.write_text(json.dumps(doc))  # as a later version, or a hand, left it
    before = oracle.tree(str(tmp_path / "usb"))

    run = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert run.returncode == code
    assert says in one_line_error(run.stderr)
    assert oracle.tree(str(tmp_path / "usb")) == before


def test_a_jobfile_picked_up_from_a_drive_brings_the_jobs_options(tmp_path, made_with_excludes):
    """The jobfile lost: the bare command carries the job on from the drive's copy, options and
    all, so what the job leaves out stays off the drive."""
    (tmp_path / "job.json").unlink()
    leave_out_stuff(made_with_excludes, "later", 4000)

    bare = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert bare.returncode == 0, bare.stderr
    assert "continuing the job from the copy on volume 1" in bare.stderr
    assert excluded_on(files_on(tmp_path / "usb")) == []
    assert differences_but_excluded(made_with_excludes, tmp_path / "usb", EXCLUDES) == ""


def test_a_jobfile_of_other_sources_is_refused_as_another_jobs_whatever_the_options(
    tmp_path, made_with_excludes
):
    (tmp_path / "other").mkdir()
    (tmp_path / "other/x").write_text("x")

    run = run_mvc("other", "-o", "usb", "-f", "job.json", "--exclude", "*.iso", cwd=tmp_path)

    assert run.returncode == ExitCode.JOBFILE_ERROR
    assert "belongs to another job" in one_line_error(run.stderr)


@needs_root
def test_the_job_remembers_what_of_the_metadata_it_keeps(tmp_path):
    """``--no-xattrs`` at the first run: a bare re-run still leaves extended attributes out (a
    new file's attribute does not reach the drive), ``--xattrs`` alone is refused, and with
    ``--change-options`` the job keeps them again."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a\n")
    os.setxattr(src / "a", "user.tag", b"red")
    (tmp_path / "usb").mkdir()
    first = run_mvc("src", "-o", "usb", "-f", "job.json", "--no-xattrs", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (src / "b").write_text("b\n")
    os.setxattr(src / "b", "user.tag", b"blue")

    bare = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)
    refused = run_mvc("src", "-o", "usb", "-f", "job.json", "--xattrs", cwd=tmp_path)

    assert bare.returncode == 0, bare.stderr
    assert os.listxattr(tmp_path / "usb/b") == [], "the job's --no-xattrs was forgotten"
    assert refused.returncode == int(ExitCode.USAGE), refused.stderr
    assert "--no-xattrs" in one_line_error(refused.stderr) and "--change-options" in refused.stderr
    (src / "c").write_text("c\n")
    os.setxattr(src / "c", "user.tag", b"green")
    changed = run_mvc("src", "-o", "usb", "-f", "job.json", "--xattrs", "--change-options", cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert os.getxattr(tmp_path / "usb/c", "user.tag") == b"green"
    status = run_mvc("--status", "-f", "job.json", cwd=tmp_path)
    assert "--no-xattrs" not in status.stdout
