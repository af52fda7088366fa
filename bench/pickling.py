"""What the copy protocol's named tuples cost on the wire: a batch of 1,024 items and its
outcomes pickled and unpickled as plain tuples (the wire format), as named tuples pickled as
they are, and as the protocol sends them (named in code, plain on the pipe).

    python bench/pickling.py [--rounds 200]

Prints microseconds a file, on the parent's side (it makes the items, pickles the batch,
unpickles the answer) and on a worker's (the other way round).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from multivolumecopy.copier.protocol import BatchDone, CopyBatch, CopyItem, Outcome, Status  # noqa: E402

N = 1024
PROTOCOL = pickle.HIGHEST_PROTOCOL


def best(func, rounds: int) -> float:
    least = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        least = min(least, time.perf_counter() - start)
    return least / N * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    rounds = ap.parse_args().rounds
    rows = [
        (i, f"d{i % 200:03d}/f{i:06d}", "f", 4096, 1_700_000_000_000_000_000 + i, 0o644, None, None)
        for i in range(N)
    ]
    answers = [(i, "ok", 4096, 1_700_000_000_000_000_000 + i, "", 0, "a" * 64) for i in range(N)]

    def plain_parent() -> None:
        items = tuple([tuple(r) for r in rows])
        pickle.dumps(("batch", items), PROTOCOL)
        pickle.loads(plain_answer)

    def plain_worker() -> None:
        pickle.loads(plain_batch)
        pickle.dumps(tuple([tuple(a) for a in answers]), PROTOCOL)

    plain_batch = pickle.dumps(("batch", tuple(rows)), PROTOCOL)
    plain_answer = pickle.dumps(tuple(answers), PROTOCOL)

    named_items = tuple(CopyItem(*r) for r in rows)
    named_answers = tuple(Outcome(a[0], Status.OK, *a[2:]) for a in answers)

    def named_parent() -> None:
        items = tuple([CopyItem(*r) for r in rows])
        pickle.dumps(("batch", items), PROTOCOL)
        pickle.loads(named_answer)

    def named_worker() -> None:
        pickle.loads(named_batch)
        pickle.dumps(tuple([Outcome(a[0], Status.OK, *a[2:]) for a in answers]), PROTOCOL)

    named_batch = pickle.dumps(("batch", named_items), PROTOCOL)
    named_answer = pickle.dumps(named_answers, PROTOCOL)

    new = tuple.__new__

    def wire_parent() -> None:
        items = tuple([new(CopyItem, r) for r in rows])
        pickle.dumps(CopyBatch(0, "s", "d", "t", items), PROTOCOL)
        pickle.loads(wire_answer)

    def wire_worker() -> None:
        pickle.loads(wire_batch)
        pickle.dumps(BatchDone(0, tuple([Outcome(a[0], Status.OK, *a[2:]) for a in answers])), PROTOCOL)

    wire_batch = pickle.dumps(CopyBatch(0, "s", "d", "t", named_items), PROTOCOL)
    wire_answer = pickle.dumps(BatchDone(0, named_answers), PROTOCOL)

    print(f"{'':38} {'parent':>8} {'worker':>8}  (microseconds a file)")
    for label, parent, worker in (
        ("plain tuples", plain_parent, plain_worker),
        ("named tuples, pickled as they are", named_parent, named_worker),
        ("the protocol (named, plain on the pipe)", wire_parent, wire_worker),
    ):
        print(f"{label:38} {best(parent, rounds):8.2f} {best(worker, rounds):8.2f}")


if __name__ == "__main__":
    main()
