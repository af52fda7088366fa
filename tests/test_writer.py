"""Carrying a volume's plan out up to the copy (``VolumeWriter.prepare``): what the writer
removes, renames, adopts and leaves alone on a drive, and what it hands to the copy.  The
drive is a plain folder (no root), the run's stages before the writer run in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import run_mvc
from multivolumecopy.identify import identify
from multivolumecopy.writer import VolumeWriter
from stages import context, opened, plan_for


def _tree(src: Path) -> None:
    (src / "docs").mkdir(parents=True)
    (src / "docs/a.txt").write_text("alpha")
    (src / "docs/b.txt").write_text("beta")
    (src / "photos").mkdir()
    (src / "photos/p.jpg").write_bytes(b"\xff\xd8" * 100)


@pytest.fixture
def backed_up(tmp_path):
    """A source backed up once onto the folder ``usb``."""
    src, usb, jobfile = tmp_path / "src", tmp_path / "usb", tmp_path / "job.json"
    _tree(src)
    usb.mkdir()
    assert run_mvc(str(src), "-o", str(usb), "-f", str(jobfile), cwd=tmp_path).returncode == 0
    return src, usb, jobfile


def _prepare(src: Path, usb: Path, jobfile: Path, events: list | None = None):
    """The writer's work on ``usb`` up to the copy: (the entries to copy, the context)."""
    ctx = context(src, jobfile, usb, events)
    drive = opened(usb)
    try:
        number, blank = identify(ctx, drive, lambda: None)
        drive.prepare()
        plan = plan_for(ctx, drive, number, fresh=blank)
        writer = VolumeWriter(ctx, drive, ctx.job.volumes[number], plan, bare=False)
        to_copy = writer.prepare()
    finally:
        drive.close()
    return [ctx.catalog.paths[i] for i in to_copy], ctx


def test_a_folder_gone_from_the_source_goes_from_the_drive_but_a_file_not_ours_in_it_stays(backed_up):
    src, usb, jobfile = backed_up
    (usb / "photos/mine.txt").write_text("the user's own, put there by hand")
    (src / "photos/p.jpg").unlink()
    (src / "photos").rmdir()

    to_copy, _ = _prepare(src, usb, jobfile)

    assert to_copy == []
    assert not (usb / "photos/p.jpg").exists()
    assert (usb / "photos/mine.txt").read_text() == "the user's own, put there by hand"


def test_a_moved_file_is_renamed_on_the_drive_not_copied(backed_up):
    src, usb, jobfile = backed_up
    os.rename(src / "docs/a.txt", src / "docs/renamed.txt")

    to_copy, _ = _prepare(src, usb, jobfile)

    assert to_copy == []
    assert (usb / "docs/renamed.txt").read_text() == "alpha"
    assert not (usb / "docs/a.txt").exists()


def test_a_moved_file_with_new_bytes_but_the_same_size_and_time_is_copied_not_renamed(backed_up):
    src, usb, jobfile = backed_up
    moved = src / "docs/renamed.txt"
    os.rename(src / "docs/a.txt", moved)
    st = moved.stat()
    with open(moved, "r+") as fh:  # the same inode, size and time: only the bytes tell
        fh.write("ALPHA")
    os.utime(moved, ns=(st.st_atime_ns, st.st_mtime_ns))

    to_copy, _ = _prepare(src, usb, jobfile)

    assert to_copy == ["docs/renamed.txt"]
    assert not (usb / "docs/renamed.txt").exists()  # not yet: the copy writes it


def test_a_copy_already_on_the_drive_is_adopted_and_a_different_file_in_the_way_is_kept(backed_up):
    src, usb, jobfile = backed_up
    (src / "docs/c.txt").write_text("gamma")
    (src / "docs/d.txt").write_text("delta")
    (usb / "docs/c.txt").write_text("gamma")  # cp -a'd there by hand: the same bytes and time
    st = (src / "docs/c.txt").stat()
    os.utime(usb / "docs/c.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    (usb / "docs/d.txt").write_text("not the source's d")

    to_copy, ctx = _prepare(src, usb, jobfile)

    assert to_copy == []  # c adopted, d refused
    assert (usb / "docs/d.txt").read_text() == "not the source's d"
    failed = {ctx.catalog.paths[i]: why for i, why in ctx.failed.items()}
    assert list(failed) == ["docs/d.txt"] and "not put there by multivolumecopy" in failed["docs/d.txt"]


def test_a_symlink_not_ours_where_a_new_folder_goes_is_never_written_through(backed_up, tmp_path):
    src, usb, jobfile = backed_up
    outside = tmp_path / "outside"
    outside.mkdir()
    (src / "music").mkdir()
    (src / "music/song.ogg").write_bytes(b"ogg")
    (usb / "music").symlink_to(outside)

    to_copy, ctx = _prepare(src, usb, jobfile)

    assert to_copy == []
    assert list(outside.iterdir()) == []
    assert {ctx.catalog.paths[i] for i in ctx.failed} == {"music", "music/song.ogg"}
