"""The planner, as tables: what a volume keeps, purges, rewrites and receives."""

from __future__ import annotations

import pytest

from multivolumecopy.catalog import DIR, FILE, LINK, Catalog, Entry
from multivolumecopy.reconcile import Space, plan_volume, record_cost

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
    assert plan.keep == [0] and plan.adopt == [0] and plan.fill == []


def test_a_file_recorded_here_but_missing_from_the_drive_is_copied_again():
    c = cat(("a", K), ("b", K), volumes={0: 1, 1: 1})
    plan = plan_volume(c, 1, held(c, 0), (), space(ROOM), unplaced=[])
    assert plan.recopy == [1]


def test_dirty_paths_are_rewritten_if_they_belong_here_and_removed_if_not():
    c = cat(("a", K), ("b", K))
    plan = plan_volume(c, 1, {}, {"a", "stale"}, space(ROOM), unplaced=range(2))
    assert plan.fill == [0, 1]
    assert plan.purge == ["stale"]


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
