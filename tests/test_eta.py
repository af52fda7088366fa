"""The ETA estimator on synthetic runs: a copy whose time is ``a`` a file plus ``b`` a byte (with
deterministic jitter), sampled as the progress bars sample it.  The estimate at a point of the run
is held against the time the same model gives for what is left, within ``TOLERANCE``."""

from __future__ import annotations

import random

import pytest

from multivolumecopy.eta import FILE_BYTES, Costs, Estimator, fit

TOLERANCE = 0.10  # of the true time left
PER_FILE = 0.0008  # seconds: creating, opening, the metadata
PER_BYTE = 1 / 200e6  # seconds: 200 MB/s
KIB = 1024
MIB = 1024 * KIB


def tree(folders, seed=1):
    """File sizes, folder by folder: ``folders`` is ``(count, typical size)`` pairs, and each
    file is within half its folder's typical size either way (a folder of photos, one of
    notes)."""
    rng = random.Random(seed)
    return [[max(int(typical * rng.uniform(0.5, 1.5)), 0) for _ in range(n)] for n, typical in folders]


def samples(folders, per_file=PER_FILE, per_byte=PER_BYTE, jitter=0.1, seed=1):
    """``(elapsed, files, bytes)`` after each batch, cut as the copy cuts them (at 1,024 files or
    16 MiB, or at a folder's end once it holds 256 files); each batch's time off the model by up
    to ``jitter`` either way."""
    rng = random.Random(seed)
    out, elapsed, files, nbytes, held = [(0.0, 0, 0)], 0.0, 0, 0, []

    def cut():
        nonlocal elapsed, files, nbytes, held
        cost = per_file * len(held) + per_byte * sum(held)
        elapsed += cost * (1 + rng.uniform(-jitter, jitter))
        files, nbytes, held = files + len(held), nbytes + sum(held), []
        out.append((elapsed, files, nbytes))

    for folder in folders:
        for size in folder:
            if held and (len(held) == 1024 or sum(held) + size > 16 * MIB):
                cut()
            held.append(size)
        if len(held) >= 256:
            cut()
    if held:
        cut()
    return out


def true_left(sizes, done_files):
    rest = sizes[done_files:]
    return PER_FILE * len(rest) + PER_BYTE * sum(rest)


def estimate_at(sizes, run, k, estimator=None):
    """The estimator fed ``run`` up to its sample ``k``, asked for what is left then."""
    est = estimator or Estimator()
    for sample in run[: k + 1]:
        est.add(*sample)
    _, files, nbytes = run[k]
    return est.seconds_left(len(sizes) - files, sum(sizes) - nbytes)


def bytes_only(sizes, run, k):
    """What a rate in bytes alone, over the run so far, says is left."""
    elapsed, _, nbytes = run[k]
    return (sum(sizes) - nbytes) / (nbytes / elapsed)


def flat(folders):
    return [size for folder in folders for size in folder]


def test_many_small_files_bytes_alone_says_five_times_too_long():
    # The run: small files, the later ones a few KiB larger than those copied first.
    # Bytes alone took the first files' byte rate for the whole run (21 s said, 4.2 s taken).
    rng = random.Random(3)
    first = [(rng.randint(40, 160), rng.choice([150, 300, 600, 1200])) for _ in range(20)]
    later = [(rng.randint(40, 160), rng.choice([3 * KIB, 6 * KIB, 12 * KIB])) for _ in range(30)]
    folders = tree(first + later)
    sizes, run = flat(folders), samples(folders)
    k = max(i for i, (_, files, _) in enumerate(run) if files <= sum(n for n, _ in first))
    truth = true_left(sizes, run[k][1])

    assert bytes_only(sizes, run, k) > 5 * truth
    assert estimate_at(sizes, run, k) == pytest.approx(truth, rel=TOLERANCE)


def test_many_small_files_of_varied_sizes_all_along():
    rng = random.Random(4)
    folders = tree(
        [(rng.randint(20, 300), rng.choice([500, 2 * KIB, 8 * KIB, 16 * KIB])) for _ in range(200)]
    )
    sizes, run = flat(folders), samples(folders)
    for k in (5, 20, 40, len(run) - 5):
        truth = true_left(sizes, run[k][1])
        assert estimate_at(sizes, run, k) == pytest.approx(truth, rel=TOLERANCE), k


def test_a_few_large_files_told_every_32_mib():
    # Large files move the count rarely: the progress inside them comes in bytes alone.
    sizes = [700 * MIB, 300 * MIB, 1200 * MIB, 500 * MIB]
    run, elapsed, nbytes = [(0.0, 0, 0)], 0.0, 0
    rng = random.Random(2)
    for finished, size in enumerate(sizes, start=1):
        for _ in range(size // (32 * MIB)):
            elapsed += PER_BYTE * 32 * MIB * (1 + rng.uniform(-0.1, 0.1))
            nbytes += 32 * MIB
            run.append((elapsed, finished - 1, nbytes))
        elapsed += PER_FILE + PER_BYTE * (size % (32 * MIB))
        nbytes += size % (32 * MIB)
        run.append((elapsed, finished, nbytes))
    for k in (10, 30, 50):
        _, files, done = run[k]
        truth = PER_FILE * (len(sizes) - files) + PER_BYTE * (sum(sizes) - done)
        assert estimate_at(sizes, run, k) == pytest.approx(truth, rel=TOLERANCE), k


def test_a_mixed_window_predicts_a_rest_of_small_files():
    # Folders of photos and of notes, then a tree of source files: both costs are needed.
    rng = random.Random(5)
    mixed = [(rng.randint(10, 200), rng.choice([2 * KIB, 300 * KIB, 4 * MIB])) for _ in range(30)]
    small = [(rng.randint(50, 300), rng.choice([1 * KIB, 4 * KIB, 9 * KIB])) for _ in range(30)]
    folders = tree(mixed + small)
    sizes, run = flat(folders), samples(folders)
    k = max(i for i, (_, files, _) in enumerate(run) if files <= sum(n for n, _ in mixed))
    truth = true_left(sizes, run[k][1])

    assert bytes_only(sizes, run, k) < truth / 3  # bytes alone says far too little here
    assert estimate_at(sizes, run, k) == pytest.approx(truth, rel=TOLERANCE)


def test_no_estimate_before_two_samples():
    est = Estimator()
    assert est.seconds_left(10, 1000) is None
    est.add(0.0, 0, 0)
    assert est.seconds_left(10, 1000) is None


def test_two_samples_give_one_rate_paid_by_the_file_for_small_files():
    est = Estimator()
    est.add(0.0, 0, 0)
    est.add(1.0, 500, 500 * 2 * KIB)

    assert est.seconds_left(1000, 1000 * 2 * KIB) == pytest.approx(2.0)  # more of the same
    assert est.seconds_left(1000, 0) == pytest.approx(2.0, rel=0.05)  # their bytes hardly count


def test_two_samples_give_one_rate_paid_by_the_byte_for_large_files():
    est = Estimator()
    est.add(0.0, 0, 0)
    est.add(2.0, 2, 200 * MIB)

    assert est.seconds_left(1, 100 * MIB) == pytest.approx(1.0)  # more of the same
    assert est.seconds_left(0, 50 * MIB) == pytest.approx(0.5, rel=0.01)  # the files hardly count


@pytest.mark.parametrize("size", [0, 4 * KIB, FILE_BYTES, 10 * MIB])
def test_files_all_of_one_size_give_one_rate_exact_for_more_of_them(size):
    # Files and bytes in one ratio in every increment: the split between the costs is unknown.
    folders = [[size] * 250 for _ in range(20)]
    sizes, run = flat(folders), samples(folders, jitter=0.0)
    est = Estimator()
    for sample in run[:10]:
        est.add(*sample)

    truth = true_left(sizes, run[9][1])
    assert est.seconds_left(len(sizes) - run[9][1], sum(sizes) - run[9][2]) == pytest.approx(truth)


def test_bytes_without_a_file_finished_are_paid_by_the_byte():
    est = Estimator()
    for i in range(6):
        est.add(float(i), 0, i * 100 * MIB)
    assert est.seconds_left(0, 300 * MIB) == pytest.approx(3.0)


def test_empty_files_and_folders_are_paid_by_the_file():
    est = Estimator()
    for i in range(6):
        est.add(float(i), i * 1000, 0)
    assert est.costs() == Costs(1 / 1000, 1 / 1000 / FILE_BYTES)
    assert est.seconds_left(3000, 0) == pytest.approx(3.0)


def test_no_progress_at_all_gives_no_estimate():
    est = Estimator()
    est.add(0.0, 5, 5000)
    est.add(3.0, 5, 5000)
    assert est.seconds_left(10, 10000) is None


def test_costs_are_never_negative():
    # Rows where more bytes came with less time: least squares alone would make bytes negative.
    rows = [(1.0, 100, 1000), (0.8, 100, 900000), (1.2, 120, 2000), (0.9, 90, 800000)]
    costs = fit(rows)
    assert costs is not None
    assert costs.per_file > 0 and costs.per_byte == 0
    assert costs.per_file == pytest.approx(sum(t * f for t, f, _ in rows) / sum(f * f for _, f, _ in rows))


def test_the_time_of_a_pause_is_not_counted():
    est = Estimator()
    est.add(0.0, 0, 0)
    est.add(1.0, 100, 100 * KIB)
    est.pause()  # the drive swap: 99 s with nothing copied
    est.add(100.0, 100, 100 * KIB)
    est.add(101.0, 200, 200 * KIB)
    assert est.seconds_left(100, 100 * KIB) == pytest.approx(1.0)


def test_counts_that_go_back_start_afresh():
    est = Estimator()
    est.add(0.0, 0, 0)
    est.add(1.0, 100, 100 * KIB)
    est.add(2.0, 40, 40 * KIB)  # a bar started over: no increment from a count that went back
    est.add(3.0, 140, 140 * KIB)
    assert est.seconds_left(100, 100 * KIB) == pytest.approx(1.0)


def test_samples_closer_than_the_spacing_are_merged_into_the_next():
    est = Estimator(spacing=0.25)
    assert est.add(0.0, 0, 0)
    assert not est.add(0.1, 10, 10 * KIB)
    assert est.add(0.5, 50, 50 * KIB)
    assert est.seconds_left(100, 100 * KIB) == pytest.approx(1.0)


def test_a_window_forgets_old_progress():
    # Slow at first (a cold cache), then ten times faster: the window follows the recent pace.
    est = Estimator(window=10, spacing=0.0)
    t, files = 0.0, 0
    est.add(t, files, 0)
    for i in range(40):
        t += 1.0 if i < 20 else 0.1
        files += 100
        est.add(t, files, files * KIB)
    assert est.seconds_left(1000, 1000 * KIB) == pytest.approx(1.0)
