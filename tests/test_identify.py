"""Which volume a drive is: a blank one is labelled (the jobfile saved before and after the
label), a drive of another job, an old copy, or a blank drive while a labelled volume is
unfinished are refused, and nothing is written to a refused drive.  Drives are plain folders
here (no root); tests/test_real_drives.py refuses real ones through the command line."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from helpers import make_tree, run_mvc
from multivolumecopy import jobfile as jf
from multivolumecopy.identify import Refused, identify, no_drive_at
from stages import context, opened


def refused(ctx, point, reason: str) -> None:
    """``identify`` refuses the drive at ``point`` for ``reason`` (a pattern)."""
    drive = opened(point)
    try:
        with pytest.raises(Refused, match=reason):
            identify(ctx, drive, lambda: None)
    finally:
        drive.close()


@pytest.fixture
def job(tmp_path):
    src = tmp_path / "src"
    make_tree(src, n_files=12, big=0)
    return src, tmp_path / "job.json"


def _label(drive_dir):
    return json.loads((drive_dir / ".mvcopy-label.json").read_text())


def test_a_blank_drive_becomes_the_next_volume_and_is_labelled_between_two_saves(tmp_path, job):
    src, jobfile = job
    usb = tmp_path / "usb"
    usb.mkdir()
    ctx = context(src, jobfile, usb)
    saved: list[bool] = []
    drive = opened(usb)
    try:
        number, blank = identify(ctx, drive, lambda: saved.append((usb / ".mvcopy-label.json").exists()))
    finally:
        drive.close()

    assert (number, blank) == (1, True)
    assert saved == [False, True]  # recorded before the label is written, and after
    assert _label(usb)["volume"] == 1 and _label(usb)["job_id"] == ctx.job.job_id
    assert ctx.job.run.open_volume == 1 and ctx.job.volumes[1].labelled


def test_a_drive_of_another_job_is_refused_and_not_written_to(tmp_path, job):
    src, jobfile = job
    other_src = tmp_path / "other"
    make_tree(other_src, seed=2, n_files=3, big=0)
    usb = tmp_path / "usb"
    usb.mkdir()
    other = run_mvc(str(other_src), "-o", str(usb), "-f", str(tmp_path / "other.json"), cwd=tmp_path)
    assert other.returncode == 0
    before = sorted(p.relative_to(usb) for p in usb.rglob("*"))
    label = _label(usb)

    refused(context(src, jobfile, usb), usb, "of another job")

    assert sorted(p.relative_to(usb) for p in usb.rglob("*")) == before
    assert _label(usb) == label


def test_a_drive_whose_volume_id_the_jobfile_knows_as_another_drive_is_refused_as_an_old_copy(tmp_path, job):
    src, jobfile = job
    usb = tmp_path / "usb"
    usb.mkdir()
    assert run_mvc(str(src), "-o", str(usb), "-f", str(jobfile), cwd=tmp_path).returncode == 0
    saved = jf.load(str(jobfile))
    saved.volumes[1].uuid = "an-other-drive"
    jf.save(str(jobfile), saved)
    (src / "new file").write_text("so the run has work to do")

    refused(context(src, jobfile, usb), usb, "old copy")


def test_a_blank_drive_is_refused_while_the_labelled_volume_is_unfinished(tmp_path, job):
    src, jobfile = job
    first, second = tmp_path / "usb1", tmp_path / "usb2"
    first.mkdir()
    second.mkdir()
    ctx = context(src, jobfile, first)
    drive = opened(first)
    try:
        identify(ctx, drive, lambda: jf.save(str(jobfile), ctx.job))
    finally:
        drive.close()  # a crash now: volume 1 labelled, nothing copied

    refused(context(src, jobfile, second), second, "volume 1 is not finished")
    assert not (second / ".mvcopy-label.json").exists()


def test_a_blank_drive_is_refused_when_only_existing_volumes_need_updating(tmp_path, job):
    src, jobfile = job
    usb, blank = tmp_path / "usb", tmp_path / "blank"
    usb.mkdir()
    blank.mkdir()
    assert run_mvc(str(src), "-o", str(usb), "-f", str(jobfile), cwd=tmp_path).returncode == 0
    victim = next(p for p in sorted(src.rglob("*")) if p.is_file())
    victim.write_bytes(victim.read_bytes() + b" changed")  # a change for volume 1, nothing new

    refused(context(src, jobfile, blank), blank, "volume 1 needs updating, not a new one")


def test_a_bare_mount_point_is_no_drive_for_a_job_of_drives(tmp_path, job):
    src, jobfile = job
    bay = tmp_path / "bay"
    bay.mkdir()
    ctx = context(src, jobfile, bay)
    assert no_drive_at(ctx.job, str(bay)) is None  # a job of folders: a folder is a volume

    ctx.job.volumes[1] = jf.VolumeRecord(1, "u1", "", mounted=True)
    why = no_drive_at(ctx.job, str(bay))
    assert why is not None and "no drive is mounted at" in why

    mount = subprocess.run(["findmnt", "-n", "-o", "TARGET", "/"], capture_output=True, text=True)
    assert no_drive_at(ctx.job, mount.stdout.strip() or "/") is None  # a mount point is a drive


@pytest.mark.parametrize(
    "record,content,says",
    [
        (".mvcopy-label.json", "{not json", "the label .* is unreadable \\(not valid JSON\\)"),
        (".mvcopy-label.json", "null", "is not a multivolumecopy label"),
        (".mvcopy-manifest.json", "[1, 2", "the manifest .* is unreadable \\(not valid JSON\\)"),
    ],
)
def test_a_damaged_record_on_a_drive_stops_the_run_in_one_line_and_the_drive_is_kept(
    tmp_path, job, record, content, says
):
    src, jobfile = job
    usb = tmp_path / "usb"
    usb.mkdir()
    assert run_mvc(str(src), "-o", str(usb), "-f", str(jobfile), cwd=tmp_path).returncode == 0
    (usb / record).write_text(content)
    (src / "new file").write_text("work for the run")
    before = sorted(p.name for p in usb.rglob("*"))

    r = run_mvc(str(src), "-o", str(usb), "-f", str(jobfile), cwd=tmp_path)

    assert r.returncode == 5
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("multivolumecopy: ") and re.search(says, last), r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in usb.rglob("*")) == before
