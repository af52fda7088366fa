"""The copy pool on its own: an interrupt while outcomes are being recorded loses none; new
folders are staged and moved into place whole, and whatever appears in their way is kept;
nothing of the pool stays in /dev/shm, however the run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import make_tree, mvc_argv, mvc_env
from multivolumecopy import copier
from multivolumecopy.catalog import DIR, FILE
from multivolumecopy.copier import BatchDone, CopyItem, CopyPool, Status, WorkerDied, make_batches
from multivolumecopy.copier import worker as copy_worker

OK, CONFLICT = Status.OK, Status.CONFLICT


def _named_semaphores() -> set[str]:
    """POSIX named semaphores (multiprocessing's locks, queues and events are made of them):
    files /dev/shm/sem.NAME, which stay until unlinked, after every process using them died."""
    return {name for name in os.listdir("/dev/shm") if name.startswith("sem.")}


def _mapped_semaphores(pid: int) -> set[str]:
    """The named semaphores process ``pid`` has open (mapped), whoever made them."""
    with open(f"/proc/{pid}/maps") as fh:
        return {line.split("/dev/shm/", 1)[1].split()[0] for line in fh if "/dev/shm/sem." in line}


def _left_for_good(before: set[str]) -> set[str]:
    """Named semaphores made since ``before`` that no process has open: nobody will unlink them.
    Other runs on this machine may be using multiprocessing meanwhile; theirs are open while
    those runs live, and gone soon after they end."""
    new = _named_semaphores() - before
    if new:
        time.sleep(1.0)  # let runs that just ended clean up theirs
        new &= _named_semaphores()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            new -= _mapped_semaphores(int(pid))
        except OSError:
            pass  # gone meanwhile
    return new


def test_a_pool_run_leaves_no_named_semaphore_behind(tmp_path):
    src, usb = tmp_path / "src", tmp_path / "usb"
    src.mkdir()
    (usb / ".tmp").mkdir(parents=True)
    items = []
    for n in range(200):
        (src / f"f{n}").write_bytes(b"x" * n)
        st = (src / f"f{n}").stat()
        items.append(CopyItem(n, f"f{n}", FILE, st.st_size, st.st_mtime_ns, 0o644, None, None))
    before, mine = _named_semaphores(), _mapped_semaphores(os.getpid())
    held: list[set[str]] = []

    def record(done: BatchDone) -> bool:  # while the workers are there: what do they hold?
        held.append(set().union(*(_mapped_semaphores(p.pid) for p in pool.procs)))
        held.append(_mapped_semaphores(os.getpid()) - mine)
        return True

    pool = CopyPool(2, bwlimit=1e12)  # the --bwlimit throttle's shared clock too
    try:
        pool.run(
            make_batches(iter(items), str(src), str(usb), str(usb / ".tmp"), "k", max_items=16), record, print
        )
    finally:
        pool.close()

    assert held and set().union(*held) == set()
    assert _left_for_good(before) == set()
    assert sorted(p.name for p in usb.iterdir() if p.is_file()) == sorted(p.name for p in src.iterdir())


def test_a_backup_killed_with_its_whole_process_group_leaves_no_named_semaphore(tmp_path):
    make_tree(tmp_path / "src")
    (tmp_path / "usb").mkdir()
    before = _named_semaphores()

    killed = subprocess.run(  # as tests/test_faults.py kills runs: SIGKILL to the whole group, mid-copy
        mvc_argv("src", "-o", "usb", "-f", "job.json", "-w", "2", "--bwlimit", "1G"),
        cwd=tmp_path,
        env=mvc_env({"MVCOPY_FAULT": "before-rename:7"}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=120,
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _left_for_good(before) == set()


def test_ctrl_c_while_a_batch_is_recorded_neither_cuts_the_record_short_nor_loses_a_batch(tmp_path):
    src, usb = tmp_path / "src", tmp_path / "usb"
    src.mkdir()
    (usb / ".tmp").mkdir(parents=True)  # a drive made ready for copies (Drive.prepare)
    items = []
    for n in range(400):
        path = src / f"f{n:03d}"
        path.write_bytes(b"x" * (n + 1))
        st = path.stat()
        items.append(CopyItem(n, path.name, FILE, st.st_size, st.st_mtime_ns, 0o644, None, None))
    st = usb.stat()
    batches = make_batches(
        iter(items), str(src), str(usb), str(usb / ".tmp"), "key", root_id=(st.st_dev, st.st_ino), max_items=8
    )
    handed_out: list[int] = []
    recorded: list[int] = []

    def counted():
        for batch in batches:
            handed_out.append(batch.batch_id)
            yield batch

    def record(done: BatchDone) -> bool:
        if not recorded:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the parent records a batch
        recorded.append(done.batch_id)  # the rest of the record must still happen
        return True

    pool = CopyPool(2)
    watchdog = threading.Timer(60, lambda: [p.kill() for p in pool.procs])  # a hang fails, not blocks
    watchdog.start()
    try:
        interrupted = False
        try:
            pool.run(counted(), record, lambda n: None)
        except KeyboardInterrupt:
            interrupted = True
    finally:
        watchdog.cancel()
        pool.close()

    assert interrupted
    assert sorted(recorded) == sorted(handed_out)  # every batch handed out came back and was recorded
    assert len(handed_out) < 50  # and the interrupt stopped the hand-out early
    copied = sorted(p.name for p in usb.iterdir() if p.is_file())
    assert copied and all((usb / name).read_bytes() == (src / name).read_bytes() for name in copied)


def test_workers_that_died_are_reported_not_waited_for(tmp_path):
    src, usb = tmp_path / "src", tmp_path / "usb"
    src.mkdir()
    (usb / ".tmp").mkdir(parents=True)
    (src / "a").write_bytes(b"a")
    st = (src / "a").stat()
    items = [CopyItem(n, "a", FILE, st.st_size, st.st_mtime_ns, 0o644, None, None) for n in range(50)]
    pool = CopyPool(2)
    for p in pool.procs:  # as if they had died starting up (killed, out of memory)
        p.kill()
        p.join()
    outcome: list[BaseException] = []

    def run():
        try:
            pool.run(
                make_batches(iter(items), str(src), str(usb), str(usb / ".tmp"), "k", max_items=1),
                lambda d: True,
                print,
            )
        except BaseException as err:  # noqa: BLE001 - what the run ended with is the result
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)  # a hang must fail the test, not block it
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the run waited for ever for dead workers"
    pool.close()
    assert len(outcome) == 1 and isinstance(outcome[0], WorkerDied)
    assert "a copy worker died" in str(outcome[0])


def _folder_items(src: Path, folders: list[str], files: int) -> list[tuple]:
    """Catalog order: each folder, then its files."""
    items: list[tuple] = []
    for folder in folders:
        (src / folder).mkdir(parents=True)
        st = (src / folder).stat()
        items.append(CopyItem(len(items), folder, DIR, 0, st.st_mtime_ns, 0o755, None, None))
        for n in range(files):
            path = src / folder / f"f{n:03d}"
            path.write_bytes(f"{folder} {n}".encode() * (n + 1))
            st = path.stat()
            items.append(
                CopyItem(
                    len(items), f"{folder}/f{n:03d}", FILE, st.st_size, st.st_mtime_ns, 0o640, None, None
                )
            )
    return items


def _same_files(src: Path, usb: Path, items: list[tuple]) -> list[str]:
    wrong = []
    for item in items:
        if item[2] == FILE:
            a, b = src / item[1], usb / item[1]
            if not b.is_file() or b.read_bytes() != a.read_bytes() or b.stat().st_mtime_ns != item[4]:
                wrong.append(item[1])
        elif not (usb / item[1]).is_dir():
            wrong.append(item[1])
    return wrong


def test_a_new_folder_split_over_batches_on_two_workers_arrives_whole(tmp_path):
    src, usb = tmp_path / "src", tmp_path / "usb"
    src.mkdir()
    (usb / ".tmp").mkdir(parents=True)
    items = _folder_items(src, ["photos", "photos/2024", "mail"], 60)
    st = usb.stat()
    batches = make_batches(
        iter(items), str(src), str(usb), str(usb / ".tmp"), "key", root_id=(st.st_dev, st.st_ino), max_items=7
    )
    statuses: list[str] = []
    pool = CopyPool(2)
    try:
        pool.run(batches, lambda done: statuses.extend(o[1] for o in done.outcomes) or True, lambda n: None)
    finally:
        pool.close()

    assert statuses == [OK] * len(items)
    assert _same_files(src, usb, items) == []
    assert sorted(p.name for p in usb.iterdir()) == [".tmp", "mail", "photos"]
    assert [p for p in (usb / ".tmp").rglob("*") if not p.is_dir()] == []  # nothing left staged


class _Appears:
    """Makes something appear where a staged folder is about to go, right after it is staged:
    another program writing to the drive, or another worker's batch of the same folder."""

    def __init__(self, monkeypatch, make):
        self.make = make
        self.real = copy_worker.open_group
        monkeypatch.setattr(copy_worker, "open_group", self)

    def __call__(self, batch, tmpdir, item):
        group = self.real(batch, tmpdir, item)
        if group is not None:
            self.make(Path(batch.dst_root) / group.rel)
        return group


class _NoStop:
    def is_set(self) -> bool:
        return False


class _StopAfter:
    """Ctrl-C after the worker has looked ``checks`` times (once before each item)."""

    def __init__(self, checks: int):
        self.left = checks

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


def _copy_in_process(src: Path, usb: Path, items: list[tuple], stop=None) -> list[tuple]:
    (usb / ".tmp").mkdir(parents=True, exist_ok=True)
    st = usb.stat()
    (batch,) = make_batches(
        iter(items), str(src), str(usb), str(usb / ".tmp"), f"k{id(items)}", root_id=(st.st_dev, st.st_ino)
    )
    return list(copier.copy_batch(batch, stop or _NoStop(), lambda msg: None).outcomes)


def test_an_interrupt_inside_a_staged_folder_moves_it_into_place_once_with_what_is_done(tmp_path):
    src, usb = tmp_path / "src", tmp_path / "usb"
    items = _folder_items(src, ["docs"], 6)  # the folder, then its files: all staged together

    outcomes = _copy_in_process(src, usb, items, stop=_StopAfter(4))  # the folder and 3 files

    assert [o[1] for o in outcomes] == [OK] * 4 + [Status.NOT_DONE] * 3
    assert _same_files(src, usb, items[:4]) == []
    assert sorted(p.name for p in (usb / "docs").iterdir()) == ["f000", "f001", "f002"]
    assert [p for p in (usb / ".tmp").rglob("*") if not p.is_dir()] == []


def test_a_file_not_ours_appearing_in_a_staged_folder_is_kept_and_ours_land_beside_it(tmp_path, monkeypatch):
    src, usb = tmp_path / "src", tmp_path / "usb"
    items = _folder_items(src, ["docs"], 5)

    def theirs(folder: Path) -> None:
        folder.mkdir()
        (folder / "notes.txt").write_text("the user's own")

    _Appears(monkeypatch, theirs)
    outcomes = _copy_in_process(src, usb, items)

    assert [o[1] for o in outcomes] == [OK] * len(items)
    assert (usb / "docs/notes.txt").read_text() == "the user's own"
    assert _same_files(src, usb, items) == []


def test_an_empty_folder_appearing_where_a_staged_one_goes_is_not_replaced(tmp_path, monkeypatch):
    src, usb = tmp_path / "src", tmp_path / "usb"
    items = _folder_items(src, ["docs"], 5)
    made: list[int] = []

    def empty(folder: Path) -> None:
        folder.mkdir()
        made.append(folder.stat().st_ino)

    _Appears(monkeypatch, empty)
    outcomes = _copy_in_process(src, usb, items)

    assert [o[1] for o in outcomes] == [OK] * len(items)
    assert (usb / "docs").stat().st_ino == made[0]  # the same folder, filled; not swapped for ours
    assert _same_files(src, usb, items) == []


def test_a_file_appearing_where_a_staged_folder_goes_is_kept_and_reported(tmp_path, monkeypatch):
    src, usb = tmp_path / "src", tmp_path / "usb"
    items = _folder_items(src, ["docs"], 3)
    _Appears(monkeypatch, lambda folder: folder.write_text("a file, not a folder"))

    outcomes = _copy_in_process(src, usb, items)

    assert [o[1] for o in outcomes] == [CONFLICT] * len(items)
    assert (usb / "docs").read_text() == "a file, not a folder"


@pytest.mark.parametrize("fold_at", [4, 256])
def test_batches_past_fold_at_end_where_a_folder_does(tmp_path, fold_at):
    items = [
        CopyItem(n, f"{folder}/f{n}", FILE, 10, 0, 0o644, None, None)
        for n, folder in enumerate(["a"] * 6 + ["b"] * 6)
    ]
    batches = list(make_batches(iter(items), "s", "d", "t", "k", max_items=8, fold_at=fold_at))

    sizes = [len(b.items) for b in batches]
    assert sizes == ([6, 6] if fold_at == 4 else [8, 4])


def test_a_drive_pulled_while_a_folder_is_staged_gets_nothing_on_the_bare_mount_point(tmp_path, monkeypatch):
    src, usb = tmp_path / "src", tmp_path / "usb"
    items = _folder_items(src, ["docs/deep"], 3)

    def pulled(folder: Path) -> None:
        usb.rename(tmp_path / "the drive, elsewhere")
        usb.mkdir()  # what is left at the path: the mount point's own empty folder

    _Appears(monkeypatch, pulled)
    outcomes = _copy_in_process(src, usb, items)

    assert Status.DRIVE_ERROR in [o[1] for o in outcomes]
    assert OK not in [o[1] for o in outcomes]
    assert list(usb.iterdir()) == []
