"""The first stage, before any drive is touched: the outputs checked, the scan merged with the
jobfile into the run's context (what changed, which volumes the run must visit, the record
carried over).  In-process, on plain folders (no root)."""

from __future__ import annotations

import os

import pytest

from helpers import run_mvc
from multivolumecopy.catalog import NO_VOLUME
from multivolumecopy.context import Options
from multivolumecopy.errors import JobfileError, LockedError, OutputError
from multivolumecopy.lock import FileLock, reading_lock
from multivolumecopy.prepare import check_outputs, jobfile_lock
from multivolumecopy.scan import resolve_sources
from stages import context


@pytest.fixture
def src(tmp_path):
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    for name in "abc":
        (src / "docs" / f"{name}.txt").write_text(name * 10)
    return src


def test_a_new_job_has_every_entry_on_no_volume_and_no_volume_to_visit(tmp_path, src):
    ctx = context(src, tmp_path / "job.json", tmp_path / "usb")

    assert ctx.old is None
    assert set(ctx.catalog.volumes) == {NO_VOLUME}
    assert ctx.job.run.pending_volumes == []
    assert ctx.worklist.left()[0] == len(ctx.catalog)


def test_a_change_since_the_last_run_marks_the_entry_stale_on_its_volume_and_the_volume_pending(
    tmp_path, src
):
    usb, jobfile = tmp_path / "usb", tmp_path / "job.json"
    usb.mkdir()
    assert run_mvc(str(src), "-o", str(usb), "-f", str(jobfile), cwd=tmp_path).returncode == 0
    (src / "docs/b.txt").write_text("b changed")
    os.rename(src / "docs/c.txt", src / "docs/moved.txt")

    ctx = context(src, jobfile, usb)

    cat = ctx.catalog
    b, moved = cat.index_of("docs/b.txt"), cat.index_of("docs/moved.txt")
    assert cat.volumes[b] == 1 and cat.stale[b] == 1
    assert cat.volumes[cat.index_of("docs/a.txt")] == 1 and cat.stale[cat.index_of("docs/a.txt")] == 0
    assert ctx.job.run.moves == {"docs/moved.txt": "docs/c.txt"}
    assert cat.volumes[moved] == 1  # bound for the volume that holds it, to be renamed there
    assert ctx.job.run.pending_volumes == [1]
    # Neither is saved until its drive commits it; nor is the folder's new time (the rename).
    assert cat.unsaved() == [cat.index_of("docs"), b, moved]


def test_a_jobfile_of_other_sources_is_refused(tmp_path, src):
    usb, jobfile = tmp_path / "usb", tmp_path / "job.json"
    usb.mkdir()
    assert run_mvc(str(src), "-o", str(usb), "-f", str(jobfile), cwd=tmp_path).returncode == 0
    other = tmp_path / "other"
    other.mkdir()

    with pytest.raises(JobfileError, match="belongs to another job"):
        context(other, jobfile, usb)


@pytest.mark.parametrize(
    "where,says",
    [
        ("src/docs", "is inside source"),
        ("missing", "does not exist"),
        ("a file", "is not a directory"),
    ],
)
def test_outputs_that_cannot_hold_the_backup_are_refused_before_anything_is_written(
    tmp_path, src, where, says
):
    (tmp_path / "a file").write_text("")
    opts = Options(sources=[str(src)], outputs=[str(tmp_path / where)], jobfile=str(tmp_path / "job.json"))

    with pytest.raises(OutputError, match=says):
        check_outputs(opts, resolve_sources(opts.sources))
    assert not (tmp_path / "job.json").exists()


def test_the_jobfile_on_the_drive_itself_is_refused(tmp_path, src):
    usb = tmp_path / "usb"
    usb.mkdir()
    opts = Options(sources=[str(src)], outputs=[str(usb)], jobfile=str(usb / "job.json"))

    with pytest.raises(OutputError, match="is on the backup drive"):
        check_outputs(opts, resolve_sources(opts.sources))


def test_a_run_that_never_wrote_its_jobfile_takes_away_the_lock_and_log_it_made(tmp_path):
    # the drive was taken by another run between the check before the scan and its opening
    job = tmp_path / "job.json"
    with pytest.raises(LockedError), jobfile_lock(str(job), "job.json"):
        (tmp_path / "job.json.log").write_text("run=1 run_started {}\n")  # what the run logged
        raise LockedError("the drive at /mnt/usb is in use by another multivolumecopy run")

    assert os.listdir(tmp_path) == []


def test_a_lock_and_log_that_were_there_before_the_run_stay(tmp_path):
    job = tmp_path / "job.json"
    (tmp_path / "job.json.lock").write_text("")  # left by an earlier run: not this run's to remove
    (tmp_path / "job.json.log").write_text("an earlier run\n")
    with pytest.raises(LockedError), jobfile_lock(str(job), "job.json"):
        raise LockedError("busy")

    assert sorted(os.listdir(tmp_path)) == ["job.json.lock", "job.json.log"]
    assert (tmp_path / "job.json.log").read_text() == "an earlier run\n"


def test_a_run_that_wrote_its_jobfile_keeps_its_lock_file_and_log(tmp_path):
    job = tmp_path / "job.json"
    with jobfile_lock(str(job), "job.json"):
        job.write_text("{}")
        (tmp_path / "job.json.log").write_text("run=1 copied 'a'\n")

    assert sorted(os.listdir(tmp_path)) == ["job.json", "job.json.lock", "job.json.log"]


def test_a_lock_whose_file_its_maker_removed_is_taken_on_a_new_file(tmp_path, monkeypatch):
    # run A made the lock file and removes it as it gives up, between run B's open and flock:
    # B must not hold a lock on the removed file while a third run locks a new one
    path = str(tmp_path / "job.json.lock")
    maker = FileLock(path, "the jobfile").acquire()
    opened = []
    real_open = FileLock._open

    def open_then_maker_leaves(self):
        fd = real_open(self)
        if not opened:
            opened.append(os.fstat(fd).st_ino)
            maker.remove_if_made()
            maker.release()
        return fd

    monkeypatch.setattr(FileLock, "_open", open_then_maker_leaves)
    taker = FileLock(path, "the jobfile").acquire()

    assert os.fstat(taker.fd).st_ino == os.stat(path).st_ino  # the file at the path, not the old one
    with pytest.raises(LockedError):
        FileLock(path, "the jobfile").acquire()
    taker.release()


def test_a_reader_that_made_the_lock_file_leaves_it_while_another_run_holds_it(tmp_path):
    # --verify or --restore on a drive that is not ours: it takes away the lock file it made,
    # but not while another run (here a backup about to label the drive) holds that file
    path = str(tmp_path / ".mvcopy-lock")
    reader = reading_lock(path, "the drive")
    assert reader is not None and reader.created
    other = FileLock(path, "the drive", shared=True).acquire()

    reader.remove_if_made()
    reader.release()

    assert os.path.exists(path)
    other.release()


def test_a_reader_alone_takes_away_the_lock_file_it_made(tmp_path):
    path = str(tmp_path / ".mvcopy-lock")
    reader = reading_lock(path, "the drive")
    assert reader is not None and reader.created

    reader.remove_if_made()
    reader.release()

    assert not os.path.exists(path)


def test_a_lock_file_that_is_never_the_one_at_its_path_is_refused_in_one_line(tmp_path, monkeypatch):
    # removed each time it is opened (or a filesystem whose fstat and lstat disagree): one
    # line, not a run spinning for ever
    monkeypatch.setattr("multivolumecopy.lock._still_at", lambda fd, path: False)

    with pytest.raises(OutputError, match="removes or replaces it each time it is opened"):
        FileLock(str(tmp_path / "job.json.lock"), "the jobfile").acquire()
