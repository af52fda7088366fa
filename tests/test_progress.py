"""The progress bars: the whole file count and the ETA on any width, in tqdm's own rendering and
on a real pseudo-terminal; no bars when stderr is not a terminal."""

from __future__ import annotations

import re

import pexpect
import pytest
from tqdm import tqdm

from helpers import mvc_pty, run_mvc
from multivolumecopy.progress import MIN_BAR, bar_format, eta_text

ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ETA = r"ETA (\d+:)?\d+:\d\d"  # a number: --:-- is what shows before one is known


def rendered(width: int, desc: str, files, seconds, nbytes, rate=None) -> str:
    """The line tqdm draws for a bar ``width`` columns wide."""
    fmt = bar_format(width, desc, files, seconds, nbytes, rate)
    return tqdm.format_meter(nbytes[0], nbytes[1], 1.0, ncols=width, prefix=desc, bar_format=fmt)


@pytest.mark.parametrize("width", [200, 79, 59, 39, 29, 19])
@pytest.mark.parametrize(
    "desc, files, nbytes",
    [
        ("volume 1", (73, 110), (3 * 2**20, 9 * 2**20)),
        ("job", (73, 1000000), (3 * 2**30, 900 * 2**30)),
        ("volume 12", (999999, 1000000), (2**40, 2**40 + 1)),
    ],
)
def test_the_whole_file_count_and_the_eta_fit_every_width(width, desc, files, nbytes):
    line = rendered(width, desc, files, 3725.0, nbytes, rate=12.5 * 2**20)
    count_eta = f"{files[0]}/{files[1]} files, ETA 1:02:05"

    if len(count_eta) <= width:
        assert count_eta in line and len(line) <= width
    else:  # narrower than the count and the ETA: cut at the edge, the count last
        assert line == count_eta[:width]


def test_the_bar_shrinks_first_then_the_bytes_go_then_the_bar():
    args = ("volume 1", (73, 110), 4.2, (3 * 2**20, 9 * 2**20), 512 * 1024.0)
    wide, narrower, narrow = (rendered(w, *args) for w in (100, 59, 39))

    assert re.fullmatch(r"volume 1: 73/110 files, ETA 0:04 \|.{36}\| 33% 3\.0/9\.0 MiB, 512\.0 KiB/s", wide)
    assert "| 33% 3.0/9.0 MiB" in narrower and "KiB/s" not in narrower
    assert len(re.search(r"\|(.*)\|", narrower)[1]) >= MIN_BAR
    assert narrow == "volume 1: 73/110 files, ETA 0:04"


def test_eta_reads_as_a_clock():
    assert [eta_text(s) for s in (None, 0, 4.4, 59.6, 600, 3599, 3600, 86399)] == [
        "--:--",
        "0:00",
        "0:04",
        "1:00",
        "10:00",
        "59:59",
        "1:00:00",
        "23:59:59",
    ]


@pytest.fixture
def small_files(tmp_path):
    """1,200 files of 512 B to 4 KiB in 12 folders, and a folder to back them up to."""
    src = tmp_path / "src"
    for d in range(12):
        folder = src / f"d{d:02d}"
        folder.mkdir(parents=True)
        for i in range(100):
            (folder / f"f{i:03d}").write_bytes(b"x" * (512 * (1 + (i * 7 + d) % 8)))
    (tmp_path / "usb").mkdir()
    return src


@pytest.mark.parametrize("columns", [60, 40])
def test_the_bars_on_a_narrow_terminal_show_the_whole_count_and_an_eta(tmp_path, small_files, columns):
    # --bwlimit spreads the 2.8 MiB over a few seconds, -w 1 over several batches in turn: the
    # bars are drawn between batches, after the first increment gives an ETA.
    run = ["src", "-o", "usb", "-f", "job.json", "--volume-size", "1G", "-w", "1", "--bwlimit", "1M"]
    child = mvc_pty(*run, cwd=tmp_path, columns=columns, timeout=120)
    child.expect(pexpect.EOF)
    child.close()
    out = child.before

    assert child.exitstatus == 0, out
    total = int(re.search(r"starting run 1: (\d+) entries", out)[1])
    lines = [ESCAPE.sub("", part).strip() for part in re.split(r"[\r\n]", out)]
    bars = [line for line in lines if " files, ETA " in line]
    assert bars
    for line in bars:
        assert len(line) < columns, line
        assert re.match(rf"(job|volume 1): \d+/{total} files, ETA ", line), line
    for desc in ("job", "volume 1"):
        assert any(re.match(rf"{desc}: \d+/{total} files, {ETA}( |$)", line) for line in bars), (desc, bars)


def test_no_bars_when_stderr_is_not_a_terminal(tmp_path, small_files):
    result = run_mvc("src", "-o", "usb", "-f", "job.json", "--volume-size", "1G", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert not re.search(r"\d+/\d+ files, ETA", result.stderr), result.stderr
