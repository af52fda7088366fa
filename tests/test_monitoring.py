"""Unattended runs: events for machines, notifications for people, --status for monitoring."""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from pathlib import Path

import pexpect
import pytest

from conftest import needs_root
from helpers import backup, make_tree, mvc_argv, mvc_env, mvc_pty, run_mvc
from multivolumecopy.clock import epoch, iso


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_root
def test_the_events_of_a_three_drive_run_come_in_order(tmp_path, drives, bay):
    make_tree(tmp_path / "src")
    images = [drives.image(f"d{i}", 700) for i in range(1, 7)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    log = tmp_path / "events.jsonl"

    result = backup(tmp_path, bay, "--events", str(log))

    assert result.returncode == 0, result.stderr
    events = read_events(log)
    names = [e["event"] for e in events]
    assert all(e["v"] == 1 for e in events)
    assert names[:2] == ["scan_done", "run_started"]
    assert names[-1] == "run_done" and events[-1]["exit_code"] == 0
    swaps = [k for k, n in enumerate(names) if n == "waiting_for_drive"]
    assert len(swaps) >= 2
    for k in swaps:  # a full volume, done, then the wait, then the next drive
        before = names[:k]
        assert before[-1] == "volume_done" and "volume_full" in before[-3:]
        assert names[k + 1] == "volume_mounted"
        assert events[k + 1]["volume"] == events[k]["next_volume"]
    done = [e for e in events if e["event"] == "volume_done"]
    assert [d["volume"] for d in done] == list(range(1, len(done) + 1))
    assert all(d["ranges"] for d in done)


@needs_root
def test_a_program_waiting_on_a_fifo_is_told_when_a_drive_is_needed(tmp_path, drives, bay):
    make_tree(tmp_path / "src")
    images = [drives.image(f"d{i}", 700) for i in range(1, 7)]
    bay.insert(images[0])
    bay.enqueue(*images[1:])
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    told = tmp_path / "told"
    seen: list[str] = []

    def listener():
        with open(fifo) as fh:  # blocks until the run opens it, then wakes on every line
            for line in fh:
                event = json.loads(line)
                seen.append(event["event"])
                if event["event"] == "waiting_for_drive":
                    told.write_text(event["message"])

    thread = threading.Thread(target=listener, daemon=True)
    thread.start()
    # The swap script refuses to swap until the listener has been told.
    script = tmp_path / "swap-when-told.sh"
    script.write_text(
        f'for i in $(seq 50); do [ -s "{told}" ] && break; sleep 0.1; done\n'
        f'[ -s "{told}" ] || exit 1\nrm "{told}"\n{bay.script}\n'
    )

    result = run_mvc(
        str(tmp_path / "src"),
        "-o",
        str(bay.point),
        "-f",
        str(tmp_path / "job.json"),
        "--events",
        str(fifo),
        "--new-volume-script",
        f"sh {script}",
        cwd=tmp_path,
    )
    thread.join(timeout=10)

    assert result.returncode == 0, result.stderr
    assert seen.count("waiting_for_drive") >= 2 and seen[-1] == "run_done"


def test_events_to_a_fifo_with_no_reader_says_it_waits_for_one_then_runs(tmp_path):
    make_tree(tmp_path / "src", n_files=20, big=1)
    (tmp_path / "usb").mkdir()
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    args = ["src", "-o", "usb", "-f", "job.json", "--events", str(fifo)]
    run = subprocess.Popen(mvc_argv(*args), cwd=tmp_path, env=mvc_env(), stderr=subprocess.PIPE, text=True)
    try:
        said = select.select([run.stderr], [], [], 20)[0]  # before it waits: no reader yet
        first = run.stderr.readline() if said else ""  # (silence fails the test, not hangs it)
        time.sleep(1.0)  # the reader comes late; meanwhile the run waits, and does nothing
        assert run.poll() is None and not (tmp_path / "job.json.lock").exists()
        with open(fifo) as fh:
            events = [json.loads(line) for line in fh]
        rest = run.stderr.read()
        assert run.wait(timeout=60) == 0, first + rest
    finally:
        run.kill()
        run.wait()

    assert first == (
        f"note: waiting for a program to read the FIFO {fifo} (--events) before starting; "
        "start it, or press Ctrl-C to stop\n"
    )
    assert "waiting for a program" not in rest  # said once
    assert events[0]["event"] == "scan_done" and events[-1]["event"] == "run_done"
    assert events[-1]["exit_code"] == 0


def test_the_notify_command_hears_of_swaps_and_of_the_end(tmp_path):
    make_tree(tmp_path / "src", n_files=20, big=1)
    (tmp_path / "usb").mkdir()
    notes = tmp_path / "notes"
    notify = f'echo "$MVCOPY_EVENT|$MVCOPY_EXIT_CODE|$MVCOPY_MESSAGE" >> {notes}'
    args = ("src", "-o", "usb", "-f", "job.json", "--volume-size", "150K", "--notify-command", notify)

    stopped = run_mvc(*args, cwd=tmp_path)  # no terminal, no script: it stops at the swap

    assert stopped.returncode == 3
    lines = notes.read_text().splitlines()
    assert lines[0].startswith("swap||a blank drive is needed for volume 2")
    assert lines[1].startswith("stopped|3|")
    os.rename(tmp_path / "usb", tmp_path / "usb-1")
    (tmp_path / "usb").mkdir()
    swap = 'mv "$MVCOPY_OUTPUT" "$MVCOPY_OUTPUT-$MVCOPY_VOLUME" && mkdir "$MVCOPY_OUTPUT"'
    finished = run_mvc(*args, "--new-volume-script", swap, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert notes.read_text().splitlines()[-1].startswith("done|0|backup done: wrote ")


def test_the_notify_command_does_not_read_the_operators_terminal(tmp_path):
    """A notify command that reads its input (``mail`` with no body given) must not wait on
    the terminal, nor take the Enter meant for the prompt."""
    make_tree(tmp_path / "src", n_files=20, big=1)
    (tmp_path / "usb").mkdir()
    notes = tmp_path / "notes"
    notify = (
        f'if read -r line; then echo "$MVCOPY_EVENT read $line"; else echo "$MVCOPY_EVENT eof"; fi >> {notes}'
    )
    args = ("src", "-o", "usb", "-f", "job.json", "--volume-size", "150K", "--notify-command", notify)
    child = mvc_pty(*args, cwd=tmp_path, columns=120, timeout=20)

    child.expect_exact("Press Enter when it is mounted, or type q and Enter to stop: ")
    child.sendline("q")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 3
    assert notes.read_text().splitlines() == ["swap eof", "stopped eof"]


@pytest.fixture
def finished_job(tmp_path):
    make_tree(tmp_path / "src", n_files=10, big=0)
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    job = json.loads((tmp_path / "job.json").read_text())
    return epoch(job["volumes"][0]["updated"])


def status(tmp_path, days_later: float, *extra: str):
    env_now = {"MVCOPY_NOW": iso(time.time() + days_later * 86400)}
    return run_mvc("--status", "-f", "job.json", *extra, cwd=tmp_path, env_extra=env_now)


@pytest.mark.parametrize("days,code,word", [(1, 0, "OK"), (40, 1, "WARNING"), (80, 2, "CRITICAL")])
def test_status_says_how_old_the_backup_is_with_nagios_codes(tmp_path, finished_job, days, code, word):
    result = status(tmp_path, days)

    assert result.returncode == code, result.stdout
    assert result.stdout.startswith(f"MULTIVOLUMECOPY {word} - 1 volume, ")
    doc = json.loads(status(tmp_path, days, "--json").stdout)
    assert doc["status"] == word and doc["volumes"][0]["state"] == word
    assert doc["volumes"][0]["verified"] is None


def test_status_of_an_unreadable_jobfile_is_critical(tmp_path):
    (tmp_path / "job.json").write_text("{broken")
    result = run_mvc("--status", "-f", "job.json", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.startswith("MULTIVOLUMECOPY CRITICAL - jobfile job.json is corrupt")


def test_a_run_in_progress_is_reported_as_such_not_as_out_of_date(tmp_path):
    make_tree(tmp_path / "src", n_files=20, big=1)
    (tmp_path / "usb").mkdir()
    assert (
        run_mvc("src", "-o", "usb", "-f", "job.json", "--volume-size", "150K", cwd=tmp_path).returncode == 3
    )

    soon = status(tmp_path, 1)
    late = status(tmp_path, 40)

    assert soon.returncode == 0, soon.stdout
    assert "run 1 in progress for" in soon.stdout
    assert late.returncode == 1
    assert "longer than --max-age 35 days: is it waiting for a drive?" in late.stdout


def test_the_last_drives_copy_of_the_jobfile_knows_the_run_finished(tmp_path, finished_job):
    copy = json.loads((tmp_path / "usb" / ".mvcopy-jobdata.json").read_text())
    job = json.loads((tmp_path / "job.json").read_text())

    assert copy["run"]["state"] == "done"
    assert copy["run"]["finished"] == job["run"]["finished"]
    from_drive = run_mvc("--status", "-f", "usb/.mvcopy-jobdata.json", cwd=tmp_path)
    assert from_drive.returncode == 0, from_drive.stdout
    assert "in progress" not in from_drive.stdout


def test_bwlimit_caps_the_rate_read_from_the_sources(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(4):  # four files, so both workers read at once, under one shared limit
        (src / f"part{k}.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    (tmp_path / "usb").mkdir()

    start = time.monotonic()
    result = run_mvc("src", "-o", "usb", "-f", "job.json", "--bwlimit", "10M", cwd=tmp_path)
    took = time.monotonic() - start

    assert result.returncode == 0, result.stderr
    assert took >= 1.5, f"20 MiB at 10 MiB/s took only {took:.2f} s"
    assert all((tmp_path / "usb" / p.name).read_bytes() == p.read_bytes() for p in src.iterdir())


def test_the_operation_log_records_every_action_next_to_the_jobfile_and_on_the_drive(tmp_path):
    src = tmp_path / "src"
    make_tree(src, n_files=8, big=0)
    (tmp_path / "usb").mkdir()
    assert run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path).returncode == 0
    (src / "top-level file.txt").unlink()
    os.rename(src / "beta/run.sh", src / "beta/renamed.sh")

    again = run_mvc("src", "-o", "usb", "-f", "job.json", "-vv", cwd=tmp_path)

    assert again.returncode == 0, again.stderr
    assert "renamed beta/run.sh -> beta/renamed.sh" in again.stderr  # -vv names every file
    here = (tmp_path / "job.json.log").read_text()
    there = (tmp_path / "usb/.mvcopy-log").read_text()
    for log in (here, there):
        assert " run=1 vol=1 copied 'beta/run.sh'" in log
        assert " run=2 vol=1 deleted 'top-level file.txt'" in log
        assert " run=2 vol=1 renamed 'beta/run.sh' -> 'beta/renamed.sh'" in log
