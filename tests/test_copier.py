"""The copy pool on its own: an interrupt while outcomes are being recorded loses none."""

from __future__ import annotations

import os
import signal
import threading

from multivolumecopy.catalog import FILE
from multivolumecopy.copier import BatchDone, CopyPool, WorkerDied, make_batches


def test_ctrl_c_while_a_batch_is_recorded_neither_cuts_the_record_short_nor_loses_a_batch(tmp_path):
    src, usb = tmp_path / "src", tmp_path / "usb"
    src.mkdir()
    (usb / ".tmp").mkdir(parents=True)  # a drive made ready for copies (Drive.prepare)
    items = []
    for n in range(400):
        path = src / f"f{n:03d}"
        path.write_bytes(b"x" * (n + 1))
        st = path.stat()
        items.append((n, path.name, FILE, st.st_size, st.st_mtime_ns, 0o644, None, None))
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
    items = [(n, "a", FILE, st.st_size, st.st_mtime_ns, 0o644, None, None) for n in range(50)]
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
