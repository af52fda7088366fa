"""--dry-run predicts the run: the sequences the model test found where it did not, replayed.

The model test (tests/test_model.py) compares every clean run with the --dry-run made just
before it, on random change sets; these are the shrunk sequences it failed on, as named
tests on plain folders (no root needed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers import run_mvc, source_of


def backup(tmp_path: Path, *extra: str):
    return run_mvc("src", "-o", "usb", "-f", "job.json", *extra, cwd=tmp_path)


def predicted_then_done(tmp_path: Path) -> tuple[dict, dict]:
    """The dry run's plan, then what the run did (its change report), volume by volume."""
    dry = backup(tmp_path, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    run = backup(tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "job.json.changes.json").read_text())
    return json.loads(dry.stdout)["volumes"], report["volumes"]


def start(tmp_path: Path, files: dict[str, str]) -> Path:
    src = source_of(tmp_path, files)
    assert backup(tmp_path).returncode == 0
    return src


def test_a_rewritten_file_rewrites_its_hard_links_and_the_report_says_so(tmp_path):
    src = start(tmp_path, {"a": "", "b": ""})
    os.link(src / "a", src / "a3")
    assert backup(tmp_path).returncode == 0
    t = os.stat(src / "a").st_mtime_ns + 1_000_000_000
    os.utime(src / "a", ns=(t, t))  # the same size, a new time: a changed file, both links

    predicted, done = predicted_then_done(tmp_path)

    assert predicted["1"]["rewrite"] == ["a", "a3"]
    assert sorted(done["1"]["rewritten"]) == ["a", "a3"] and done["1"]["copied"] == []


def test_a_folder_made_for_a_moved_file_is_reported_as_written(tmp_path):
    src = start(tmp_path, {"a": "moved into a new folder\n", "a2": "moved aside\n"})
    (src / "b").mkdir()
    os.rename(src / "a", src / "b/a")
    os.rename(src / "a2", src / "a6")

    predicted, done = predicted_then_done(tmp_path)

    assert predicted["1"]["copy"] == ["b"]
    assert done["1"]["copied"] == ["b"]
    assert sorted(map(tuple, done["1"]["renamed"])) == [("a", "b/a"), ("a2", "a6")]
    assert (tmp_path / "usb/b/a").read_text() == "moved into a new folder\n"


def test_a_mode_change_alone_is_predicted_and_done_as_a_chmod(tmp_path):
    src = start(tmp_path, {"d/x": "x\n", "y": "y\n"})
    os.chmod(src / "d/x", 0o600)
    os.chmod(src / "d", 0o750)

    predicted, done = predicted_then_done(tmp_path)

    assert predicted["1"]["chmod"] == ["d", "d/x"] and predicted["1"]["rewrite"] == []
    assert sorted(done["1"]["chmod"]) == ["d", "d/x"] and done["1"]["rewritten"] == []
    assert os.stat(tmp_path / "usb/d/x").st_mode & 0o777 == 0o600
