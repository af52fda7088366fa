"""A drive visited with nothing on it to change keeps its records as they were: its manifest,
its sums and the change report of the last visit that changed it; the run says so.

The job is two folder volumes (no root), both given with ``-o`` in the re-runs."""

from __future__ import annotations

import json

from test_wording import SWAP_BY_MV

from helpers import run_mvc

RECORDS = (".mvcopy-manifest.json", ".mvcopy-sha256sums", ".mvcopy-changes.json")


def test_a_drive_that_needed_nothing_keeps_its_records_and_says_so(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in "abc":
        (src / name).write_text(name * 3000)
    (tmp_path / "usb").mkdir()
    split = ("--volume-size", "8K")
    first = run_mvc(
        "src", "-o", "usb", "-f", "job.json", *split, "--new-volume-script", SWAP_BY_MV, cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    where = {row[0]: row[5] for row in json.loads((tmp_path / "job.json").read_text())["files"]}
    assert where == {"a": 1, "b": 1, "c": 2}, where
    before = {name: (tmp_path / "usb-1" / name).read_bytes() for name in RECORDS}

    (src / "c").write_text("C" * 3000)  # volume 2's file changes; volume 1 needs nothing
    rerun = run_mvc("src", "-o", "usb-1", "-o", "usb", "-f", "job.json", *split, cwd=tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    assert (
        "volume 1 done: holds indexes 0-1 (2 entries, 5.9 KiB); nothing on it needed changing."
        in rerun.stderr
    )
    assert "volume 2 done: holds indexes 2 (1 entry, 2.9 KiB); wrote 1 (2.9 KiB)." in rerun.stderr
    assert {name: (tmp_path / "usb-1" / name).read_bytes() for name in RECORDS} == before
    assert not (tmp_path / "usb-1/.mvcopy-journal").exists()
    jobcopy = json.loads((tmp_path / "usb-1/.mvcopy-jobdata.json").read_text())
    assert jobcopy["run"]["number"] == 2  # the drive's copy of the jobfile is current
    changes = json.loads((tmp_path / "usb/.mvcopy-changes.json").read_text())
    assert changes["run"] == 2 and changes["volumes"]["2"]["rewritten"] == ["c"]
    verify = run_mvc("--verify", "--checksum", "-f", "job.json", "-o", "usb-1", cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
