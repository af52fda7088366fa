"""The planner, as tables: what a volume keeps, purges, rewrites and receives."""

from __future__ import annotations

import pytest

from multivolumecopy import clock
from multivolumecopy import jobfile as jf
from multivolumecopy.catalog import DIR, FILE, LINK, Catalog, Entry
from multivolumecopy.metadata import digest
from multivolumecopy.reconcile import (
    ADOPT,
    BLOCKED,
    COPY,
    IN_THE_WAY,
    RECORD,
    TOO_BIG,
    Place,
    Space,
    decide_write,
    metadata_reserve,
    plan_volume,
    record_cost,
)

K = 1024
ROOM = 10**9  # plenty


def cat(*specs, volumes=None) -> Catalog:
    """``("a", 100)`` is a file of 100 bytes; ``("d/", 0)`` a directory."""
    c = Catalog()
    for n, (path, size) in enumerate(specs):
        kind = DIR if path.endswith("/") else FILE
        c.append(Entry(path.rstrip("/"), kind, size, 1000, 0o644), (volumes or {}).get(n, 0))
    return c


def held(c: Catalog, *indexes, **changes) -> dict[str, Entry]:
    out = {}
    for i in indexes:
        e = c.entry(i)
        out[e.path] = e._replace(**changes)
    return out


def space(free, block=K, **kw) -> Space:
    return Space(free=free, block=block, **kw)


def fits(c: Catalog, n: int) -> int:
    """Free space that takes exactly the first ``n`` entries, records included."""
    return sum(-(-c.sizes[i] // K) * K + record_cost(c.paths[i], True) for i in range(n))


def test_blank_volume_takes_a_contiguous_run_and_stops_at_the_first_that_does_not_fit():
    c = cat(("a", 1000), ("b", 3000), ("c", 100), ("d", 100))
    plan = plan_volume(c, 1, {}, (), space(fits(c, 2) + 500), unplaced=range(4))
    assert plan.fill == [0, 1]  # "c" would fit the leftover, but the run stays contiguous
    assert plan.last_index == 1


def test_a_volume_that_cannot_take_every_candidate_says_it_is_full():
    c = cat(("a", 1000), ("b", 3000))
    assert plan_volume(c, 1, {}, (), space(fits(c, 1)), unplaced=range(2)).more
    assert not plan_volume(c, 1, {}, (), space(fits(c, 2)), unplaced=range(2)).more


def test_sizes_are_rounded_up_to_the_block_size():
    c = cat(("a", 1), ("b", 1))
    one_block_each = fits(c, 2)
    assert plan_volume(c, 1, {}, (), space(one_block_each), unplaced=range(2)).fill == [0, 1]
    assert plan_volume(c, 1, {}, (), space(one_block_each - 1), unplaced=range(2)).fill == [0]


@pytest.mark.parametrize(
    "padding,volume_size,expect",
    [(0, None, [0, 1, 2]), (2 * K, None, [0]), (0, 2 * K, [0, 1]), (0, 1, [])],
)
def test_padding_and_volume_size_limit_what_goes_on(padding, volume_size, expect):
    c = Catalog()
    for p in "abc":
        c.append(Entry(p, FILE, K, 1, 0o644))
    free = fits(c, 3)
    plan = plan_volume(c, 1, {}, (), space(free, padding=padding, volume_size=volume_size), unplaced=range(3))
    assert plan.fill == expect


def test_unchanged_files_are_kept_and_deleted_ones_purged_freeing_their_space():
    c = cat(("a", 5 * K), ("c", 5 * K), volumes={0: 1})
    on_drive = held(c, 0)
    on_drive["gone"] = Entry("gone", FILE, 8 * K, 1, 0o644)
    plan = plan_volume(c, 1, on_drive, (), space(0), unplaced=[1])
    assert plan.keep == [0]
    assert plan.purge == ["gone"]
    assert plan.fill == [1]  # the drive was full: only the purge made room for "c"
    on_drive["gone"] = Entry("gone", FILE, 4 * K, 1, 0o644)
    assert plan_volume(c, 1, on_drive, (), space(0), unplaced=[1]).fill == []


def test_a_changed_file_is_rewritten_on_its_own_volume():
    c = cat(("a", 2 * K), volumes={0: 1})
    plan = plan_volume(c, 1, held(c, 0, size=K), (), space(ROOM), unplaced=[])
    assert plan.recopy == [0] and plan.keep == []


def test_mtimes_are_compared_at_the_drive_granularity():
    c = cat(("a", K), volumes={0: 1})
    drive = held(c, 0, mtime_ns=1000 + 1_500_000_000)  # a FAT drive kept it 1.5 s off
    assert plan_volume(c, 1, drive, (), space(ROOM), 2_000_000_000, unplaced=[]).keep == [0]
    assert plan_volume(c, 1, drive, (), space(ROOM), 1, unplaced=[]).recopy == [0]


def test_a_file_recorded_on_another_volume_is_purged_here():
    c = cat(("a", K), volumes={0: 2})
    plan = plan_volume(c, 1, held(c, 0), (), space(ROOM), unplaced=[])
    assert plan.purge == ["a"] and plan.keep == []


def test_an_unplaced_file_already_on_the_drive_is_adopted_not_copied():
    c = cat(("a", K))
    plan = plan_volume(c, 3, held(c, 0), (), space(ROOM), unplaced=[])
    assert plan.keep == [0] and plan.fill == [] and plan.recopy == []


def test_a_file_recorded_here_but_missing_from_the_drive_is_copied_again():
    c = cat(("a", K), ("b", K), volumes={0: 1, 1: 1})
    plan = plan_volume(c, 1, held(c, 0), (), space(ROOM), unplaced=[])
    assert plan.recopy == [1]


def test_dirty_paths_are_removed_first_and_rewritten_if_they_belong_here():
    """A dirty path is ours with unknown content, of unknown kind even (a file where a folder
    goes now, found by the model test): removed first, then written anew if it belongs here."""
    c = cat(("a", K), ("b", K))
    plan = plan_volume(c, 1, {}, {"a", "stale"}, space(ROOM), unplaced=range(2))
    assert plan.fill == [0, 1]
    assert plan.purge == ["a", "stale"]


def test_a_symlink_whose_target_changed_is_rewritten():
    c = Catalog()
    c.append(Entry("l", LINK, 0, 1, 0o777, "new"), 1)
    plan = plan_volume(c, 1, {"l": Entry("l", LINK, 0, 1, 0o777, "old")}, (), space(ROOM), unplaced=[])
    assert plan.recopy == [0]


def test_a_volume_takes_no_more_entries_than_it_has_free_inodes():
    c = cat(*[(f"f{n}", 1) for n in range(40)])
    plan = plan_volume(c, 1, {}, (), space(ROOM, inodes=26), unplaced=range(40))
    assert plan.fill == list(range(10))  # 16 inodes kept for our records and temp files


def test_the_space_of_our_own_dirty_copies_counts_as_coming_back():
    c = cat(("a", 20 * K), ("b", 20 * K))
    room = fits(c, 2) - 10 * K  # room for one file only, unless the dirty copy of "a" is counted
    assert plan_volume(c, 1, {}, {"a": 20 * K}, space(room), unplaced=range(2)).fill == [0, 1]
    assert plan_volume(c, 1, {}, {"a"}, space(room), unplaced=range(2)).fill == [0]


# -- a small language for drives: "f" a file, "d/" a folder, "l -> t" a symlink, "h => f" a
# -- hard link of "f" (stored once per volume).
FAT = 2_000_000_000  # a FAT drive keeps mtimes to 2 s


def catalog(*rows: tuple[str, int, int]) -> Catalog:
    """``(spec, size, volume)`` rows, in index order."""
    c = Catalog()
    for spec, size, volume in rows:
        if " -> " in spec:
            path, target = spec.split(" -> ")
            e = Entry(path, LINK, 0, 1000, 0o777, target)
        elif " => " in spec:
            path, leader = spec.split(" => ")
            e = Entry(path, FILE, size, 1000, 0o644, leader)
        elif spec.endswith("/"):
            e = Entry(spec[:-1], DIR, 0, 1000, 0o755)
        else:
            e = Entry(spec, FILE, size, 1000, 0o644)
        c.append(e, volume)
    return c


def drive(c: Catalog, *paths: str, **changes) -> dict[str, Entry]:
    """What a drive holds: the catalog's entries at ``paths`` (changed by ``changes``)."""
    out = {}
    for p in paths:
        i = c.index_of(p)
        assert i is not None
        out[p] = c.entry(i)._replace(**changes)
    return out


def gone(path: str, size: int = 0, kind: str = FILE) -> dict[str, Entry]:
    """A copy on the drive of something no longer in the sources."""
    return {path: Entry(path, kind, size, 1000, 0o644)}


def plan(c: Catalog, held=None, dirty=(), free=ROOM, granularity=1, **kw):
    """Plan volume 1 with every entry on no volume as a candidate, in index order."""
    options = {k: kw.pop(k) for k in ("moves", "comes_here") if k in kw}
    return plan_volume(
        c, 1, held or {}, dirty, space(free, **kw), granularity, list(c.indexes_on(0)), **options
    )


def test_our_records_cost_a_written_entry_four_rows_and_a_kept_one_two():
    """A manifest row (old and new side by side while replaced), an intent and a put row: each
    about 80 bytes besides the path.  A one-letter name: 4 x 81 written, 2 x 81 kept."""
    c = catalog(("a", K, 0))
    assert plan(c, free=K + 324).fill == [0]
    assert plan(c, free=K + 323).fill == []
    c = catalog(("k", K, 1), ("a", K, 0))
    assert plan(c, drive(c, "k"), free=K + 324 + 162).fill == [1]
    assert plan(c, drive(c, "k"), free=K + 324 + 161).fill == []


def linked(leader_volume: int, leader_held: bool):
    """A new hard link "b" of "a", which is on ``leader_volume`` (and held by this drive)."""
    c = catalog(("a", K, leader_volume), ("b => a", K, 0))
    return c, drive(c, "a") if leader_held else {}


# A new file with a one-letter name, written: its blocks and 4 x (1 + 80) bytes of records.
ONE_KIB = K + 324
FOUR_KIB = 4 * K + 324

# Each row: a drive's state, and the least free space at which every candidate goes on it.
BUDGETS = {
    "a symlink takes only its records": lambda: (catalog(("l -> t", 0, 0)), {}, (), {}, 324),
    "a folder takes one block": lambda: (catalog(("d/", 0, 0)), {}, (), {}, K + 324),
    "the jobfile copy is reserved": lambda: (catalog(("z", K, 0)), {}, (), {"reserve": 500}, ONE_KIB + 500),
    "the padding is left free": lambda: (catalog(("z", K, 0)), {}, (), {"padding": 300}, ONE_KIB + 300),
    "renames cost records of their new paths": lambda: (
        catalog(("n1", K, 1), ("n2", K, 1), ("z", K, 0)),
        {"o1": Entry("o1", FILE, K, 1000, 0o644), "o2": Entry("o2", FILE, K, 1000, 0o644)},
        (),
        {"moves": {"n1": "o1", "n2": "o2"}},
        ONE_KIB + 2 * 4 * 82,
    ),
    "every deleted file frees its blocks": lambda: (
        catalog(("z", 4 * K, 0)),
        {**gone("g1", K), **gone("g2", 1)},
        (),
        {},
        FOUR_KIB - 2 * K,
    ),
    "a deleted folder or symlink frees nothing": lambda: (
        catalog(("z", 4 * K, 0)),
        {**gone("gd", 0, DIR), **gone("gl", 0, LINK)},
        (),
        {},
        FOUR_KIB,
    ),
    "a rewrite frees its old copy": lambda: (
        catalog(("a", 2 * K, 1), ("z", 4 * K, 0)),
        {"a": Entry("a", FILE, 2 * K, 999, 0o644)},
        (),
        {},
        FOUR_KIB + 324,
    ),
    "a deleted file and a rewrite both free their blocks": lambda: (
        catalog(("a", 2 * K, 1), ("z", 4 * K, 0)),
        {**gone("g", K), "a": Entry("a", FILE, 2 * K, 999, 0o644)},
        (),
        {},
        FOUR_KIB + 324 - K,
    ),
    "a folder that became a file frees nothing": lambda: (
        catalog(("x", K, 1), ("z", 4 * K, 0)),
        gone("x", 0, DIR),
        (),
        {},
        FOUR_KIB + ONE_KIB,
    ),
    "our dirty copies come back, as do deleted files": lambda: (
        catalog(("z", 4 * K, 0)),
        gone("g", K),
        {"d": K},
        {},
        FOUR_KIB - 2 * K,
    ),
    "a hard link of a file kept here takes only records": lambda: (*linked(1, True), (), {}, 324 + 162),
    "a hard link of a file copied with it takes only records": lambda: (
        catalog(("a", K, 0), ("b => a", K, 0)),
        {},
        (),
        {},
        ONE_KIB + 324,
    ),
    "a hard link of a file on another volume is stored": lambda: (*linked(2, False), (), {}, ONE_KIB),
}


@pytest.mark.parametrize("row", BUDGETS, ids=list(BUDGETS))
def test_the_least_free_space_that_takes_every_new_entry(row):
    c, on_drive, dirty, kw, least = BUDGETS[row]()
    candidates = list(c.indexes_on(0))
    assert plan(c, on_drive, dirty, free=least, **kw).fill == candidates
    assert plan(c, on_drive, dirty, free=least - 1, **kw).fill == candidates[:-1]


# Each row: a drive's state, and the least --volume-size at which the new file "z" goes on it.
def sized(*rows: tuple[str, int, int], on_drive=(), moves=None, **changes):
    c = catalog(*rows, ("z", K, 0))
    held_now: dict[str, Entry] = {}
    for p in on_drive:
        held_now.update(gone(p, K) if c.index_of(p) is None else drive(c, p, **changes))
    return c, held_now, moves


VOLUME_SIZES = {
    "nothing kept": (sized(), K),
    "a kept file counts": (sized(("k", K, 1), on_drive=["k"]), 2 * K),
    "every kept file counts": (sized(("j", K, 1), ("k", K, 1), on_drive=["j", "k"]), 3 * K),
    "a kept folder counts a block": (sized(("d/", 0, 1), on_drive=["d"]), 2 * K),
    "a file renamed here counts, as does a kept one": (
        sized(("k", K, 1), ("n", K, 1), on_drive=["k", "o"], moves={"n": "o"}),
        3 * K,
    ),
    "a rewrite counts": (sized(("a", K, 1), on_drive=["a"], mtime_ns=5), 2 * K),
}


@pytest.mark.parametrize("row", VOLUME_SIZES, ids=list(VOLUME_SIZES))
def test_the_least_volume_size_that_takes_a_new_file(row):
    (c, on_drive, moves), least = VOLUME_SIZES[row]
    z = c.index_of("z")
    p = plan(c, on_drive, volume_size=least, moves=moves)
    assert (p.fill, p.overflow) == ([z], [])
    assert plan(c, on_drive, volume_size=least - 1, moves=moves).fill == []


# -- files moved in the source ------------------------------------------------------------------


@pytest.mark.parametrize(
    "new_volume,new_path_held,changes,granularity,rename,purge,recopy",
    [
        # renamed on the drive, not copied; the rest of the drive is still looked at
        (1, False, {}, 1, [("old/a", 0)], [], []),
        # the same at a FAT drive's 2 s
        (1, False, {"mtime_ns": 1000 + FAT - 1}, FAT, [("old/a", 0)], [], []),
        # its new path goes on another volume: the old copy here is removed
        (2, False, {}, 1, [], ["old/a"], []),
        # the drive holds the new path already: that is kept, and the old one removed
        (1, True, {}, 1, [], ["old/a"], []),
        # the copy here is of another version: removed, and the file written anew
        (1, False, {"size": K - 1}, 1, [], ["old/a"], [0]),
        # its new path left the job since (excluded, or gone again): the old copy is removed
        (None, False, {}, 1, [], ["old/a"], []),
    ],
)
def test_a_file_moved_in_the_source_is_renamed_on_its_drive_when_its_copy_is_current(
    new_volume, new_path_held, changes, granularity, rename, purge, recopy
):
    c = catalog(("new/a", K, new_volume), ("z", 1, 1)) if new_volume else catalog(("z", 1, 1))
    on_drive = {"old/a": Entry("old/a", FILE, K, 1000, 0o644)._replace(**changes)}
    if new_path_held:
        on_drive.update(drive(c, "new/a"))
    on_drive.update(drive(c, "z"))  # a file kept here, after the moved one
    p = plan(c, on_drive, granularity=granularity, moves={"new/a": "old/a"})
    kept = [c.index_of(path) for path in ("new/a", "z") if path in on_drive]
    assert (p.rename, p.purge, p.recopy, p.keep) == (rename, purge, recopy, kept)
    assert p.volume == 1


# -- rewrites -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "volume,on_drive,comes_here,recopy,purge",
    [
        # on this volume, out of date: rewritten in place, whatever placement says of new entries
        (1, {"size": 1}, lambda i: False, [0], []),
        # on no volume yet, an old copy here: rewritten here if it comes here...
        (0, {"size": 1}, None, [0], []),
        (0, {"size": 1}, lambda i: i == 0, [0], []),
        # ...else removed, to be written where it goes
        (0, {"size": 1}, lambda i: False, [], ["a"]),
        # a folder where a file now is: removed first, then the file written
        (1, {"kind": DIR, "size": 0}, None, [0], ["a"]),
        (0, {"kind": DIR, "size": 0}, lambda i: False, [], ["a"]),
    ],
)
def test_an_out_of_date_copy_is_rewritten_here_or_removed(volume, on_drive, comes_here, recopy, purge):
    c = catalog(("a", K, volume), ("z", K, 1))
    held_now = {**drive(c, "a", **on_drive), **drive(c, "z")}
    p = plan_volume(c, 1, held_now, (), space(ROOM), unplaced=[], comes_here=comes_here)
    assert (p.recopy, p.purge, p.keep) == (recopy, purge, [1])


@pytest.mark.parametrize(
    "spec,mode_on_drive,chmod",
    [
        ("a", 0o600, [0]),  # chmod-ed in the source: its mode is set on the drive, the data kept
        ("a", 0o644, []),
        ("d/", 0o700, [0]),
        ("a -> t", 0o755, []),  # a symlink's mode is not its own to set
    ],
)
def test_a_kept_entry_whose_mode_alone_changed_gets_its_mode_set(spec, mode_on_drive, chmod):
    c = catalog((spec, K, 1))
    p = plan(c, drive(c, c.paths[0], mode=mode_on_drive))
    assert (p.keep, p.chmod, p.recopy) == ([0], chmod, [])


def test_an_unchanged_symlink_is_kept():
    c = catalog(("l -> t", 0, 1))
    p = plan(c, drive(c, "l"))
    assert (p.keep, p.recopy, p.purge) == ([0], [], [])


def test_a_drive_whose_every_file_left_the_sources_is_emptied():
    p = plan(Catalog(), {**gone("a", K), **gone("d", 0, DIR)})
    assert p.purge == ["a", "d"] and p.keep == []


# -- rewrites that no longer fit ----------------------------------------------------------------


def rewrites(*sizes: int) -> tuple[Catalog, dict[str, Entry]]:
    """Files on volume 1 that grew: the drive holds their 1-byte old copies."""
    c = catalog(*[(f"r{n}", size, 1) for n, size in enumerate(sizes)])
    return c, drive(c, *c.paths, size=1)


def test_a_rewrite_that_no_longer_fits_goes_elsewhere_and_its_old_copy_is_removed():
    c, on_drive = rewrites(8 * K)
    p = plan(c, on_drive, free=0)
    assert (p.recopy, p.overflow, p.purge) == ([], [0], ["r0"])


def test_a_rewrite_fits_to_the_byte_and_a_byte_less_overflows():
    c, on_drive = rewrites(2 * K)
    need = 2 * K + 4 * 82 - K  # its records, and the block its old copy frees
    assert plan(c, on_drive, free=need).recopy == [0]
    assert plan(c, on_drive, free=need - 1).overflow == [0]


def test_a_big_rewrite_that_does_not_fit_leaves_room_for_a_smaller_one_after_it():
    c, on_drive = rewrites(64 * K, 2 * K)
    p = plan(c, on_drive, free=4 * K)
    assert (p.recopy, p.overflow, p.purge) == ([1], [0], ["r0"])


def test_rewrites_share_the_space_in_index_order():
    c, on_drive = rewrites(2 * K, 2 * K)
    both = 2 * (2 * K + 4 * 82) - 2 * K
    assert plan(c, on_drive, free=both).recopy == [0, 1]
    p = plan(c, on_drive, free=both - 1)
    assert (p.recopy, p.overflow) == ([0], [1])


def test_rewrites_share_the_volume_size_in_index_order():
    c, on_drive = rewrites(K, K)
    assert plan(c, on_drive, volume_size=2 * K).recopy == [0, 1]
    p = plan(c, on_drive, volume_size=2 * K - 1)
    assert (p.recopy, p.overflow) == ([0], [1])  # the disk has room: the volume size decides


def test_an_entry_missing_from_its_drive_that_no_longer_fits_has_nothing_to_remove():
    c = catalog(("a", 8 * K, 1))
    p = plan(c, {}, free=0)
    assert (p.overflow, p.purge) == ([0], [])


def test_a_folder_in_the_way_of_a_file_that_no_longer_fits_is_removed_once():
    c = catalog(("x", 8 * K, 1))
    p = plan(c, gone("x", 0, DIR), free=0)
    assert (p.overflow, p.purge) == ([0], ["x"])


def test_removing_files_frees_their_inodes_for_new_ones():
    c = catalog(("a", 1, 0), ("b", 1, 0), ("c", 1, 0))
    # 16 inodes are kept for our records and temporary files: 17 free leave one, +1 removed.
    assert plan(c, gone("old", 1), inodes=17).fill == [0, 1]
    assert plan(c, {}, inodes=17).fill == [0]


# -- the jobfile copy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "paths,reserve",
    [
        ([], 2 * 8192),  # the jobfile's header
        (["a"], 2 * (8192 + 90 + 1)),
        (["a", "dir/file"], 2 * (8192 + 2 * 90 + 1 + 8)),  # a row of about 90 bytes besides the path
    ],
)
def test_room_is_kept_for_two_copies_of_the_jobfile(paths, reserve):
    assert metadata_reserve(Catalog.from_entries(Entry(p, FILE, 1, 1, 0o644) for p in paths)) == reserve


def test_the_room_kept_holds_two_copies_of_a_real_jobfile_with_large_numbers(tmp_path):
    cat = Catalog()
    for n in range(500):
        e = Entry(f"folder {n % 7}/file {n:05d}.bin", FILE, 2**40 + n, 1_700_000_000_123_456_789, 0o100755)
        cat.append(e._replace(ino=2**63 + n), 999)
    job = jf.Job(job_id="j", root="/src", sources=["/src"], options={}, created=clock.now_iso(), catalog=cat)
    jf.save(str(tmp_path / "job.json"), job)
    assert 2 * (tmp_path / "job.json").stat().st_size <= metadata_reserve(cat)


# -- candidates the drive already holds ---------------------------------------------------------


@pytest.mark.parametrize(
    "on_drive,keep,recopy",
    [
        ({}, [0], []),  # its copy here is current: adopted, nothing to write
        ({"size": 1}, [], [0]),  # its copy here is out of date: rewritten, once
    ],
)
def test_a_candidate_the_drive_already_holds_is_not_copied_again(on_drive, keep, recopy):
    c = catalog(("a", K, 0), ("b", K, 0))
    p = plan_volume(
        c, 1, drive(c, "a", **on_drive), (), space(ROOM), unplaced=[0, 1], comes_here=lambda i: True
    )
    assert (p.keep, p.recopy, p.fill) == (keep, recopy, [1])
    assert p.writes == recopy + [1]


# -- what the writer does at an entry's place on the drive (decide_write) ----------------------

THERE = {"occupied": True}  # something not ours sits at the entry's place


@pytest.mark.parametrize(
    "folder,place,action",
    [
        (False, {}, COPY),  # nothing there
        (True, {}, COPY),
        (False, {"ours": True, **THERE}, COPY),  # our old copy (or ours of unknown content)
        (True, {"folder_there": True, **THERE}, COPY),  # a folder where a folder goes: used
        (False, {"folder_there": True, **THERE}, IN_THE_WAY),  # a folder where a file goes
        (False, {"a_copy": True, **THERE}, ADOPT),  # a copy of it already: recorded, not copied
        (True, {"a_copy": True, "folder_there": True, **THERE}, COPY),
        (False, THERE, IN_THE_WAY),  # a foreign file: never written over
        (True, THERE, IN_THE_WAY),
        (False, {"blocker": "photos", "ours": True}, BLOCKED),  # never written through a symlink
        (False, {"storable": False, "blocker": "photos"}, RECORD),  # a symlink on exFAT
        (False, {"too_big": True, "storable": False}, TOO_BIG),  # over FAT's 4 GiB
        (True, {"too_big": True, "blocker": "x", "ours": True}, TOO_BIG),
    ],
)
def test_what_is_at_an_entrys_place_decides_whether_it_is_written(folder, place, action):
    assert decide_write(folder, Place(**place)) == action


OWNED = digest(5, 6, None)  # the owner and group the source entry has
OTHER = digest(7, 6, None)  # those of a copy written before a chown


@pytest.mark.parametrize(
    "on_drive,stale,chmod",
    [
        (OWNED, 0, []),  # the copy has the entry's owner: left alone
        (OTHER, 0, [0]),  # another owner: the entry's is set, the data kept
        (OTHER, 1, [0]),
        (0, 0, []),  # written before owners were kept: left alone (no visit for an upgrade)...
        (0, 1, [0]),  # ...unless the entry was chowned since
    ],
)
def test_a_kept_copy_is_given_the_entrys_owner_when_it_has_another(on_drive, stale, chmod):
    c = Catalog()
    c.append(Entry("a", FILE, K, 1000, 0o644, uid=5, gid=6), 1)
    c.stale[0] = stale
    p = plan(c, drive(c, "a", meta=on_drive))
    assert (p.keep, p.chmod, p.recopy) == ([0], chmod, [])


def test_a_kept_copy_recorded_with_an_owner_is_revisited_when_the_job_no_longer_keeps_owners():
    c = Catalog()
    c.append(Entry("a", FILE, K, 1000, 0o644), 1)  # --no-owner: nothing recorded
    p = plan(c, drive(c, "a", meta=OWNED))
    assert (p.keep, p.chmod) == ([0], [0])
