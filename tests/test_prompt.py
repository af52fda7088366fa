"""The swap prompt, driven through a real pseudo-terminal as an operator would."""

from __future__ import annotations

import pexpect

from conftest import needs_root
from helpers import backup, make_tree, mvc_pty, restored, tree_differences

pytestmark = needs_root

PROMPT = "Press Enter when it is mounted, or type q and Enter to stop: "


def spawn(tmp_path, bay) -> pexpect.spawn:
    src, job = str(tmp_path / "src"), str(tmp_path / "job.json")
    return mvc_pty(src, "-o", str(bay.point), "-f", job, cwd=tmp_path, columns=200, lines=40)


def test_prompt_refuses_the_full_drive_then_goes_on_after_a_real_swap(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 700) for i in range(1, 7)]
    bay.insert(images[0])
    child = spawn(tmp_path, bay)

    child.expect("Volume 1 is done; the drive is synced and safe to remove.")
    child.expect("A blank drive is needed for volume 2")
    child.expect_exact(PROMPT)
    child.sendline("")  # Enter without swapping
    child.expect("That drive was refused: volume 1 was already updated in this run")
    child.expect_exact(PROMPT)
    used = 1
    while True:
        bay.insert(images[used])
        used += 1
        child.sendline("")
        if child.expect_exact([PROMPT, pexpect.EOF]) == 1:
            break
    child.close()

    assert child.exitstatus == 0
    assert used >= 3
    bay.eject()
    assert tree_differences(src, restored(drives, images[:used], tmp_path / "union")) == ""


def test_quitting_at_the_prompt_stops_cleanly_and_a_rerun_finishes(tmp_path, drives, bay):
    src = tmp_path / "src"
    make_tree(src)
    images = [drives.image(f"d{i}", 700) for i in range(1, 7)]
    bay.insert(images[0])
    child = spawn(tmp_path, bay)
    child.expect_exact(PROMPT)

    child.sendline("q")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 3
    assert "stopped at the drive swap" in child.before
    assert "Traceback" not in child.before
    bay.insert(images[1])
    bay.enqueue(*images[2:])
    rerun = backup(tmp_path, bay)
    assert rerun.returncode == 0, rerun.stderr
    used = len(bay.swaps()) + 2
    bay.eject()
    assert tree_differences(src, restored(drives, images[:used], tmp_path / "union")) == ""
