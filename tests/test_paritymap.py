"""The parity plan (pure): runs kept stable across runs, dirty blocks, ranges."""

from __future__ import annotations

import random

from multivolumecopy.paritymap import (
    BLOCK,
    File,
    Row,
    allocate,
    blocks_for,
    dirty,
    merge,
    over,
    overlaps,
    size_in_blocks,
    subtract,
    unprotected,
    windows,
)


def f(path, size, sha="h", mtime=1):
    return File(path, size, mtime, sha + path if sha else None)


def runs(rows):
    return {r.path: (r.start, r.nblocks) for r in rows}


def test_a_first_allocation_packs_files_in_order_each_rounded_up_to_a_block():
    rows = allocate([], [f("a", 1), f("b", BLOCK), f("c", BLOCK + 1), f("empty", 0)])
    assert runs(rows) == {"a": (0, 1), "b": (1, 1), "c": (2, 2), "empty": (0, 0)}
    assert blocks_for(0) == 0 and blocks_for(1) == 1 and blocks_for(BLOCK + 1) == 2


def test_an_unchanged_or_shrunk_file_keeps_its_run_and_a_grown_one_gets_a_new_run():
    old = allocate([], [f("a", 3 * BLOCK), f("b", BLOCK), f("c", BLOCK)])
    new = allocate(old, [f("a", BLOCK, sha="x"), f("b", 2 * BLOCK, sha="y"), f("c", BLOCK)])
    got = runs(new)
    assert got["a"] == (0, 1)  # shrunk in place: its tail (blocks 1 and 2) is free
    assert got["c"] == (4, 1)  # unchanged
    assert got["b"] == (1, 2)  # grown: a new run, first fit in the freed tail of a


def test_a_deleted_file_frees_its_run_for_a_new_one():
    old = allocate([], [f("a", BLOCK), f("b", BLOCK), f("c", BLOCK)])
    new = allocate(old, [f("a", BLOCK), f("c", BLOCK), f("d", BLOCK)])
    assert runs(new) == {"a": (0, 1), "c": (2, 1), "d": (1, 1)}


def test_a_moved_file_takes_the_run_of_the_path_it_left_and_dirties_nothing():
    old = allocate([], [f("a", BLOCK), File("old/x", 2 * BLOCK, 1, "same"), f("z", BLOCK)])
    new = allocate(old, [f("a", BLOCK), File("new/x", 2 * BLOCK, 1, "same"), f("z", BLOCK)])
    assert runs(new)["new/x"] == runs(old)["old/x"]
    assert dirty({1: old}, {1: new}, []) == []


def test_runs_never_overlap_and_files_that_stay_keep_their_runs_through_random_churn():
    rnd = random.Random(5)
    files = {f"p{k}": rnd.randrange(0, 5 * BLOCK) for k in range(40)}
    rows = allocate([], [File(p, s, 1, f"{p}:{s}") for p, s in sorted(files.items())])
    for _ in range(30):
        before = runs(rows)
        for p in rnd.sample(sorted(files), min(8, len(files))):
            roll = rnd.random()
            if roll < 0.2:
                del files[p]
            else:
                files[p] = rnd.randrange(0, 5 * BLOCK)
        files[f"n{rnd.randrange(10**6)}"] = rnd.randrange(1, 3 * BLOCK)
        old_sizes = {r.path: r.size for r in rows}
        rows = allocate(rows, [File(p, s, 1, f"{p}:{s}") for p, s in sorted(files.items())])
        taken = sorted((r.start, r.stop) for r in rows if r.nblocks)
        assert all(a[1] <= b[0] for a, b in zip(taken, taken[1:])), "two runs share a block"
        for r in rows:
            assert r.nblocks == blocks_for(r.size)
            if r.path in before and r.nblocks and blocks_for(old_sizes[r.path]) >= r.nblocks:
                assert r.start == before[r.path][0], f"{r.path} moved without growing"


def test_dirty_blocks_are_where_the_included_rows_differ_from_the_wanted_ones_or_invalid():
    one = allocate([], [f("a", BLOCK), f("b", 2 * BLOCK), f("c", BLOCK)])
    changed = allocate(one, [f("a", BLOCK), f("b", 2 * BLOCK, sha="new"), f("c", BLOCK)])
    two = allocate([], [f("q", 5 * BLOCK)])
    assert dirty({1: one, 2: two}, {1: one, 2: two}, []) == []
    assert dirty({1: one, 2: two}, {1: changed, 2: two}, []) == [(1, 3)]
    assert dirty({1: one, 2: two}, {1: one, 2: two}, [(7, 9)]) == [(7, 9)]
    assert dirty({}, {1: one}, []) == [(0, 4)]  # never computed
    assert dirty({1: one, 2: two}, {1: one}, []) == [(0, 5)]  # a volume given up


def test_a_file_renamed_in_place_dirties_no_block_but_counts_as_another_file():
    one = [Row("a", 0, 1, 10, 1, "h")]
    renamed = [Row("b", 0, 1, 10, 1, "h")]
    assert dirty({1: one}, {1: renamed}, []) == []
    missing, broken = unprotected(renamed, one, [])
    assert [r.path for r in missing] == ["b"] and broken == []


def test_unprotected_rows_are_those_not_included_or_over_invalid_blocks():
    rows = [Row("a", 0, 1, 10, 1, "h"), Row("b", 1, 2, 5000, 1, "i"), Row("e", 0, 0, 0, 1, "z")]
    missing, broken = unprotected(rows, rows[:2] + [rows[2]], [(2, 3)])
    assert missing == [] and [r.path for r in broken] == ["b"]
    missing, broken = unprotected(rows, rows[:1], [])
    assert [r.path for r in missing] == ["b", "e"]


def test_ranges_merge_subtract_overlap_and_cut_into_windows():
    assert merge([(5, 6), (0, 2), (2, 3), (4, 4), (1, 2)]) == [(0, 3), (5, 6)]
    assert subtract([(0, 10), (20, 30)], [(2, 3), (5, 22), (29, 40)]) == [(0, 2), (3, 5), (22, 29)]
    assert subtract([(0, 4)], []) == [(0, 4)]
    assert subtract([(0, 4)], [(0, 4)]) == []
    assert overlaps([(2, 4), (8, 9)], 3, 5) and overlaps([(2, 4)], 0, 3)
    assert not overlaps([(2, 4), (8, 9)], 4, 8) and not overlaps([(2, 4)], 0, 2)
    assert not overlaps([(2, 4)], 3, 3)
    assert list(windows([(0, 5), (7, 8)], size=2)) == [(0, 2), (2, 4), (4, 5), (7, 8)]
    rows = [Row("a", 0, 2, 1, 1, "h"), Row("e", 0, 0, 0, 1, "z"), Row("b", 2, 2, 1, 1, "h")]
    assert [r.path for r in over(rows, [(1, 2)])] == ["a"]
    assert size_in_blocks({1: rows, 2: [Row("c", 9, 1, 1, 1, "h")]}) == 10
    assert size_in_blocks({}) == 0


def test_xor_into_gives_the_same_bytes_with_numpy_and_with_python_integers(monkeypatch):
    from multivolumecopy import parity

    rnd = random.Random(3)
    base = bytes(rnd.randrange(256) for _ in range(5000))
    data = bytes(rnd.randrange(256) for _ in range(3000))
    want = base[:700] + bytes(a ^ b for a, b in zip(base[700:3700], data)) + base[3700:]
    for numpy in ([], [None]):  # as found (numpy if installed), then without it
        monkeypatch.setattr(parity, "_NUMPY", numpy)
        buf = bytearray(base)
        parity.xor_into(buf, 700, data)
        assert bytes(buf) == want


def test_a_moved_file_keeps_its_run_rather_than_taking_the_first_free_one():
    # "gone" frees block 1 and "old/x" blocks 2-3: first fit would put "new/x" at 1.
    old = allocate([], [f("a", BLOCK), f("gone", BLOCK), File("old/x", 2 * BLOCK, 1, "s"), f("z", BLOCK)])
    new = allocate(old, [f("a", BLOCK), File("new/x", 2 * BLOCK, 1, "s"), f("z", BLOCK), f("d", BLOCK)])
    assert runs(new) == {"a": (0, 1), "new/x": (2, 2), "z": (4, 1), "d": (1, 1)}


def test_a_new_copy_of_a_file_still_there_gets_a_run_of_its_own():
    old = allocate([], [File("a", BLOCK, 1, "s")])
    new = allocate(old, [File("a", BLOCK, 1, "s"), File("copy", BLOCK, 1, "s")])
    assert runs(new) == {"a": (0, 1), "copy": (1, 1)}


def test_a_file_without_a_hash_is_never_taken_for_a_move():
    old = allocate([], [File("a", BLOCK, 1, None), f("z", BLOCK)])
    new = allocate(old, [File("b", BLOCK, 1, None), f("z", BLOCK)])
    assert runs(new) == {"b": (0, 1), "z": (1, 1)}  # first fit, not a's run by hash


def test_new_files_fill_a_freed_hole_one_after_another():
    old = allocate([], [f("a", BLOCK), f("b", 3 * BLOCK), f("c", BLOCK)])
    new = allocate(old, [f("a", BLOCK), f("c", BLOCK), f("d", BLOCK), f("e", BLOCK)])
    assert runs(new) == {"a": (0, 1), "c": (4, 1), "d": (1, 1), "e": (2, 1)}


def test_every_row_records_what_its_drive_holds_and_rows_come_sorted_by_start():
    files = [f("z", 2 * BLOCK, mtime=7), f("empty", 0, mtime=8), f("m", BLOCK, mtime=9)]
    rows = allocate([], files)
    assert [r.path for r in rows] == ["empty", "z", "m"]  # by start: 0 (no blocks), 0, 2
    assert {(r.path, r.size, r.mtime_ns, r.sha256) for r in rows} == set(files)
    # ... and so does each row of a later allocation: kept, moved or placed anew
    moved = File("moved", 2 * BLOCK, 10, "hz")
    again = [f("empty", 0, mtime=11), f("m", BLOCK, mtime=12), moved, f("n", BLOCK, mtime=13)]
    assert {(r.path, r.size, r.mtime_ns, r.sha256) for r in allocate(rows, again)} == set(again)


def test_subtract_and_overlaps_agree_with_sets_of_blocks():
    rnd = random.Random(7)
    for _ in range(400):
        a = merge((s, s + rnd.randint(0, 4)) for s in rnd.sample(range(40), rnd.randint(0, 8)))
        b = merge((s, s + rnd.randint(0, 4)) for s in rnd.sample(range(40), rnd.randint(0, 8)))
        blocks_a = {k for s, e in a for k in range(s, e)}
        blocks_b = {k for s, e in b for k in range(s, e)}
        assert {k for s, e in subtract(a, b) for k in range(s, e)} == blocks_a - blocks_b
        start = rnd.randint(0, 45)
        stop = start + rnd.randint(0, 5)
        assert overlaps(a, start, stop) == bool(blocks_a & set(range(start, stop)))
