"""Where new files go on a re-run, and what counts as changed since the last one, as tables
(placement and the change classification are pure)."""

from __future__ import annotations

from array import array

import pytest

from multivolumecopy import changes
from multivolumecopy import jobfile as jf
from multivolumecopy.catalog import DIR, FILE, LINK, Catalog, Entry
from multivolumecopy.changes import Changes, classify
from multivolumecopy.fsutil import round_up
from multivolumecopy.ledger import Ledger
from multivolumecopy.placement import place_in, place_new, room_by_record
from multivolumecopy.reconcile import record_cost

B = 1024


def carried(old, new, granularity):
    """classify, then the ledger installs the record it carried over (as a run's merge does)."""
    ch = classify(old, new, granularity)
    Ledger(new).carry(ch.volumes, ch.stale)
    return ch


def catalog(*rows) -> Catalog:
    """``("a/x", 1)`` is a file on volume 1; volume 0 means new."""
    c = Catalog()
    for path, vol in rows:
        kind = DIR if path.endswith("/") else FILE
        c.append(Entry(path.rstrip("/"), kind, B if kind == FILE else 0, 1, 0o644), vol)
    return c


def need(c: Catalog, i: int) -> int:
    return B + record_cost(c.paths[i], True)


def test_a_new_file_goes_to_its_neighbours_volume_when_it_has_room():
    c = catalog(("a/1", 1), ("a/2", 0), ("b/1", 2))
    assert place_new(c, [1], {1: 10 * B, 2: 10 * B}, {1: B, 2: B}) == {1: 1}


def test_then_to_the_next_neighbours_volume():
    c = catalog(("a/1", 1), ("a/2", 0), ("b/1", 2))
    assert place_new(c, [1], {1: 0, 2: 10 * B}, {1: B, 2: B}) == {1: 2}


def test_then_to_its_folders_volume_then_the_last_volume():
    c = catalog(("a/", 3), ("a/1", 1), ("a/2", 0), ("b/1", 2))
    assert place_new(c, [2], {1: 0, 2: 0, 3: 10 * B}, {1: B, 2: B, 3: B}) == {2: 3}
    c = catalog(("a/1", 1), ("a/2", 0), ("b/1", 2))
    assert place_new(c, [1], {1: 0, 2: 0, 4: 10 * B}, {1: B, 2: B, 4: B}) == {1: 4}


def test_with_no_room_anywhere_it_needs_a_new_drive():
    c = catalog(("a/1", 1), ("a/2", 0))
    assert place_new(c, [1], {1: 0}, {1: B}) == {}  # not placed: a new drive


def test_new_files_in_a_row_follow_each_other_and_use_up_the_room():
    c = catalog(("a/1", 1), ("a/2", 0), ("a/3", 0), ("a/4", 0), ("b/1", 2))
    room = {1: need(c, 1) + need(c, 2), 2: 10 * B}
    assert place_new(c, [1, 2, 3], room, {1: B, 2: B}) == {1: 1, 2: 1, 3: 2}


def test_one_new_file_early_in_the_order_moves_nothing_else():
    old = catalog(("b/1", 1), ("c/1", 2), ("d/1", 3))
    new = catalog(("a/0", 0), ("b/1", 0), ("c/1", 0), ("d/1", 0))
    ch = carried(old, new, lambda v: 1)
    assert ch.new == [0] and ch.unchanged == 3
    assert list(new.volumes) == [0, 1, 2, 3]  # the others keep their volumes
    assert place_new(new, ch.new, {1: 10 * B, 2: 10 * B, 3: 10 * B}, {1: B, 2: B, 3: B}) == {0: 1}


def test_a_renamed_file_is_a_move_on_its_volume():
    old = Catalog()
    old.append(Entry("dir/a.txt", FILE, 10, 5, 0o644, ino=77), 2)
    new = Catalog()
    new.append(Entry("renamed/a.txt", FILE, 10, 5, 0o644, ino=77))
    ch = carried(old, new, lambda v: 1)
    assert ch.moved == {0: 0} and ch.new == [] and list(new.volumes) == [2]
    assert ch.volumes_touched(old) == {2}


def test_a_mode_alone_changed_is_no_content_change_but_its_volume_is_visited():
    old = catalog(("a/", 1), ("a/x", 1), ("b", 2), ("c", 3))
    new = catalog(("a/", 0), ("a/x", 0), ("b", 0), ("c", 0))
    new.modes[1] = 0o600  # chmod a/x
    new.modes[0] = 0o700  # chmod the folder a
    ch = carried(old, new, lambda v: 1)
    assert (ch.changed, ch.new, ch.modes) == ([], [], [0, 1])
    assert ch.volumes_touched(old) == {1}
    assert list(new.volumes) == [1, 1, 2, 3]


def test_a_new_file_goes_to_its_own_folders_volume_before_the_last_volume():
    # Its neighbours' volumes are full; its folder is on volume 2, the last volume is 4.
    c = catalog(("a/", 2), ("a/x", 1), ("a/y", 0), ("c", 3), ("d", 4))
    assert place_new(c, [2], {1: 0, 2: 10 * B, 3: 0, 4: 0}, {1: B, 2: B, 3: B, 4: B}) == {2: 2}


def test_the_folder_is_the_nearest_one_not_the_top_one():
    c = catalog(("a/", 3), ("a/b/", 2), ("a/b/x", 1), ("a/b/y", 0), ("c", 1), ("d", 4))
    room = {1: 0, 2: 10 * B, 3: 10 * B, 4: 0}
    assert place_new(c, [3], room, {v: B for v in room}) == {3: 2}


def new_folder_between_volumes() -> tuple[Catalog, int, int, int]:
    """ "m" on volume 1, "o" on 3, and between them a new folder "n" with "n/big" and "n/small";
    with what the folder, the small file and the big one need."""
    c = Catalog()
    c.append(Entry("m", FILE, B, 1, 0o644), 1)
    c.append(Entry("n", DIR, 0, 1, 0o755))
    c.append(Entry("n/big", FILE, 10 * B, 1, 0o644))
    c.append(Entry("n/small", FILE, 0, 1, 0o644))
    c.append(Entry("o", FILE, B, 1, 0o644), 3)
    folder, small, big = (
        B + record_cost("n", True),
        record_cost("n/small", True),
        10 * B + record_cost("n/big", True),
    )
    return c, folder, small, big


def test_a_file_in_a_new_folder_follows_where_that_folder_was_placed():
    # "n" goes to volume 1 after "m"; "n/big" fits only on 3 (after it), which it fills;
    # "n/small" then finds its neighbours full and goes with its folder to 1.
    c, folder, small, big = new_folder_between_volumes()
    placed = place_new(c, [1, 2, 3], {1: folder + small, 3: big}, {1: B, 3: B})
    assert placed == {1: 1, 2: 3, 3: 1}


def test_a_volume_not_offered_this_run_is_passed_over():
    # Volume 5 holds the neighbour but is done (or forgotten): the file goes to the last volume.
    c = catalog(("a/1", 5), ("a/2", 0))
    assert place_new(c, [1], {1: 10 * B}, {1: B}) == {1: 1}


@pytest.mark.parametrize("room,placed", [(B + 332, {1: 1}), (B + 331, {})])
def test_a_new_file_needs_its_blocks_and_four_record_rows_on_its_volume(room, placed):
    c = catalog(("a/1", 1), ("a/2", 0))  # "a/2": 1 KiB, and 4 x (3 + 80) bytes of records
    assert place_new(c, [1], {1: room}, {1: B}) == placed


# -- each volume's room by its record (room_by_record) ------------------------------------------


def volume_job(c: Catalog, records: dict[int, dict], **run) -> jf.Job:
    """A job on ``c`` with a record of each volume (``{1: {"capacity": ...}}``): a run in
    progress unless ``run`` says otherwise."""
    job = jf.Job(job_id="j", root="/src", sources=["/src"], options={}, created="", catalog=c)
    job.volumes = {n: jf.VolumeRecord(n, f"u{n}", "", **rec) for n, rec in records.items()}
    job.run = jf.RunState(**{"number": 1, "state": "in-progress", **run})
    return job


KEPT = 2 * (1 + 80)  # the two manifest rows of a kept entry with a one-letter name


def test_a_volumes_room_is_its_capacity_less_its_files_the_padding_the_reserve_and_its_records():
    c = catalog(("a", 1), ("b", 1), ("c", 2), ("d", 0))
    job = volume_job(
        c, {1: dict(capacity=100 * B, used=10 * B, block_size=512), 2: dict(capacity=50 * B, used=40 * B)}
    )
    room, block, given_up = room_by_record(job, None, Changes(), 3 * B, None, 2 * B)
    assert room == {1: 85 * B - 2 * KEPT, 2: 5 * B - KEPT}
    assert block == {1: 512, 2: 4096}
    assert given_up == []


@pytest.mark.parametrize(
    "volume_size,room",
    [(None, 85 * B), (30 * B, 20 * B), (95 * B, 85 * B), (96 * B, 85 * B), (94 * B, 84 * B)],
)
def test_volume_size_caps_the_room_by_what_the_volume_holds_already(volume_size, room):
    c = catalog(("a", 1), ("b", 1))
    job = volume_job(c, {1: dict(capacity=100 * B, used=10 * B)})
    assert room_by_record(job, None, Changes(), 3 * B, volume_size, 2 * B)[0] == {1: room - 2 * KEPT}


@pytest.mark.parametrize(
    "run,records,offered",
    [
        ({"done_volumes": [2]}, {}, [1, 3]),  # updated already in this run
        ({"done_volumes": [2], "state": "done"}, {}, [1, 2, 3]),  # the last run's, finished
        ({"replace": [3]}, {}, [1, 2]),  # a blank drive takes its place: filled anew
        ({}, {2: {"forgotten": True}}, [1, 3]),  # given up with --forget-volume
        ({}, {3: {"capacity": 0}}, [1, 2]),  # never finished: filled as a new drive
    ],
)
def test_volumes_done_replaced_forgotten_or_never_finished_get_no_room(run, records, offered):
    c = catalog(("a", 1), ("b", 2), ("c", 3))
    recs = {v: {"capacity": 10 * B, **records.get(v, {})} for v in (1, 2, 3)}
    room, block, _ = room_by_record(volume_job(c, recs, **run), None, Changes(), 0, None, 0)
    assert sorted(room) == sorted(block) == offered
    assert all(room[v] == 10 * B - KEPT for v in offered)


def test_deletions_free_their_blocks_and_rewrites_take_what_they_grew_with_their_records():
    old = Catalog()
    old.append(Entry("a", FILE, 5000, 1, 0o644), 1)  # deleted: frees 5 blocks of 1 KiB
    old.append(Entry("b", FILE, 5000, 1, 0o644), 2)  # deleted from volume 2, done in this run
    old.append(Entry("m", FILE, 3000, 1, 0o644, ino=77), 1)  # moved to "n": renamed, frees nothing
    old.append(Entry("r", FILE, 1000, 1, 0o644), 1)  # rewritten, 3 blocks instead of 1
    old.append(Entry("s", FILE, 1000, 1, 0o644), 2)  # rewritten on volume 2
    new = Catalog()
    new.append(Entry("n", FILE, 3000, 1, 0o644, ino=77))
    new.append(Entry("r", FILE, 3000, 2, 0o644))
    new.append(Entry("s", FILE, 9000, 2, 0o644))
    ch = carried(old, new, lambda v: 1)
    assert (ch.changed, ch.moved, sorted(ch.deleted)) == ([1, 2], {0: 2}, [0, 1, 2])
    recs = {1: dict(capacity=100 * B, used=9 * B, block_size=B), 2: dict(capacity=100 * B, used=5 * B)}
    job = volume_job(new, recs, done_volumes=[2])
    room, _, given_up = room_by_record(job, old, ch, 0, None, 0)
    # kept: two rows each of "n" and "r"; written: two more rows each (intent and put)
    assert room == {1: 100 * B - 9 * B + 5 * B - 2 * B - 2 * KEPT - 2 * KEPT}
    assert given_up == []


def overflowing(shortfall: int, *sizes: tuple[str, int, int]) -> tuple[Catalog, list[int], int]:
    """Files ``(name, size before, size now)`` on volume 1 (1 KiB blocks), all rewritten, and a
    capacity that leaves the volume ``shortfall`` bytes short: (catalog, given up, room)."""
    old, new = Catalog(), Catalog()
    for name, before, now in sizes:
        old.append(Entry(name, FILE, before, 1, 0o644), 1)
        new.append(Entry(name, FILE, now, 2, 0o644))
    ch = carried(old, new, lambda v: 1)
    used = sum(round_up(before, B) for _, before, _ in sizes)
    grown = sum(round_up(now, B) for _, _, now in sizes) - used
    records = sum(record_cost(name, True) for name, _, _ in sizes)  # kept, and rewritten
    capacity = used + grown + records - shortfall
    room, _, given_up = room_by_record(
        volume_job(new, {1: dict(capacity=capacity, used=used, block_size=B)}), old, ch, 0, None, 0
    )
    return new, given_up, room[1]


@pytest.mark.parametrize(
    "shortfall,given_up,room",
    [
        (0, [], 0),  # fits to the byte
        (1, [1], 4 * B - 1),  # the one that grew most goes: its new 4 blocks are not written
        (4 * B, [1], 0),
        (4 * B + 1, [1, 2], 3 * B - 1),  # then the next
        (10 * B, [1, 2, 0], -B),  # all given up and still short (the drive holds less): no more
    ],
)
def test_the_rewrites_that_grew_most_are_given_up_until_the_volume_fits(shortfall, given_up, room):
    # f1 grows by 1 block, f2 by 3, f3 by 2
    _, out, left = overflowing(shortfall, ("f1", 1000, 2000), ("f2", 1000, 4000), ("f3", 1000, 3000))
    assert (out, left) == (given_up, room)


def test_a_rewrite_that_became_a_folder_or_a_symlink_is_never_given_up():
    old, new = Catalog(), Catalog()
    for c in (old, new):
        c.append(Entry("a", FILE, 1000, 1 if c is old else 2, 0o644))  # same size, new content
    old.append(Entry("d", FILE, 1000, 1, 0o644))
    new.append(Entry("d", DIR, 0, 1, 0o755))  # a file that became a folder
    old.append(Entry("l", LINK, 0, 1, 0o777, target="x"))
    new.append(Entry("l", LINK, 0, 1, 0o777, target="y"))  # a symlink re-made elsewhere
    for i in range(3):
        old.volumes[i] = 1
    ch = carried(old, new, lambda v: 1)
    assert ch.changed == [0, 1, 2]
    recs = {1: dict(capacity=B, used=3 * B, block_size=B)}  # the drive holds less than its record
    room, _, given_up = room_by_record(volume_job(new, recs), old, ch, 0, None, 0)
    assert given_up == [0]
    # a: 1 KiB back; d: its 1 KiB file goes; each keeps two rows and writes two more
    assert room == {1: B - 3 * B + B - 3 * 2 * KEPT + B}


# -- what changed since the last run (changes.classify) -----------------------------------------

FAT = 2_000_000_000  # a FAT drive keeps mtimes to 2 s


def one_entry(e: Entry, volume: int = 0, stale: int = 0) -> Catalog:
    c = Catalog()
    c.append(e, volume)
    c.stale[0] = stale
    return c


def rescan(c: Catalog) -> Catalog:
    """The same entries as a fresh scan finds them: on no volume, none stale."""
    new = Catalog()
    for e in c:
        new.append(e)
    new.inodes = array("Q", c.inodes)
    return new


def test_a_rerun_with_nothing_changed_keeps_every_entry_where_it_was_stale_or_not(tmp_path):
    old = catalog(("a/", 1), ("a/x", 1), ("b", 2), ("c", 0))
    old.stale[2] = 1  # a past run could not update "b" on volume 2
    new = rescan(old)
    ch = carried(old, new, lambda v: 1)
    assert (ch.unchanged, ch.new, ch.changed, ch.modes) == (3, [3], [], [])
    assert (list(new.volumes), list(new.stale)) == ([1, 1, 2, 0], [0, 0, 1, 0])
    assert ch.volumes_touched(old) == {2}
    # ...and the run saves it (with its catalog cache) as any other
    path = str(tmp_path / "job.json")
    jf.save(path, jf.Job(job_id="j", root="/src", sources=["/src"], options={}, created="", catalog=new))
    back = jf.load(path)
    assert back.cached and (list(back.catalog.volumes), list(back.catalog.stale)) == (
        [1, 1, 2, 0],
        [0, 0, 1, 0],
    )


F = Entry("x", FILE, 0, 1000, 0o644)
D = Entry("x", DIR, 0, 1000, 0o755)
L = Entry("x", LINK, 0, 1000, 0o777, "t")


@pytest.mark.parametrize(
    "before,after,volume,changed,modes",
    [
        (F, F, 1, False, False),
        (F, F._replace(size=1), 1, True, False),
        (F, F._replace(mtime_ns=1001), 1, True, False),
        (F, F._replace(mode=0o600), 1, False, True),  # a chmod: the mode set on the drive
        # the drive keeps 2 s: a time within that is no change, unless the mode changed too
        (F, F._replace(mtime_ns=1000 + FAT - 1), 2, False, False),
        (F, F._replace(mtime_ns=1000 + FAT - 1, mode=0o600), 2, False, True),
        (F, F._replace(mtime_ns=1000 + FAT), 2, True, False),
        (F, F._replace(mtime_ns=1000 + FAT - 1), 1, True, False),  # the same on a drive keeping ns
        (F, D, 1, True, False),  # an empty file became a folder, at the same time
        (D, F, 1, True, False),
        (D, D._replace(mtime_ns=5), 1, False, True),  # a folder's new time: metadata
        (D, D._replace(mode=0o700), 1, False, True),
        (L, L, 1, False, False),
        (L, L._replace(target="u"), 1, True, False),  # re-pointed, at the same time
        (L, L._replace(mtime_ns=1001), 1, True, False),  # re-made
        (L, L._replace(mode=0o755), 1, False, False),  # a symlink's mode is not its own
        (L, L._replace(mtime_ns=1000 + FAT - 1, mode=0o755), 2, False, False),
    ],
)
def test_what_counts_as_changed_and_what_as_metadata_only(before, after, volume, changed, modes):
    old, new = one_entry(before, volume), one_entry(after)
    ch = carried(old, new, lambda v: {1: 1, 2: FAT}[v])
    assert (ch.changed == [0], ch.modes == [0], ch.unchanged) == (changed, modes, int(not changed))
    assert (ch.new, ch.moved, ch.deleted) == ([], {}, [])
    assert list(new.volumes) == [volume]
    # the volume holds an older version of a changed entry, or its old mode or time: stale
    assert new.stale_indexes() == ([0] if changed or modes else [])
    assert ch.volumes_touched(old) == ({volume} if changed or modes else set())


@pytest.mark.parametrize("stale", [0, 1])
def test_an_unchanged_entry_keeps_its_stale_mark_and_a_changed_one_is_stale(stale):
    old = one_entry(F, 1, stale)
    # the same, found the short way and (a time within the drive's 2 s) the long way; changed
    for after, marked in [(F, stale), (F._replace(mtime_ns=1001), stale), (F._replace(size=1), 1)]:
        new = one_entry(after)
        carried(old, new, lambda v: FAT)
        assert list(new.stale) == [marked]


def test_a_file_deleted_from_the_sources_sends_the_run_to_its_volume():
    old = catalog(("a", 1), ("b", 2), ("c", 3))
    new = catalog(("a", 0), ("c", 0))
    ch = carried(old, new, lambda v: 1)
    assert (ch.deleted, ch.unchanged) == ([1], 2)
    assert ch.volumes_touched(old) == {2}


def test_an_entry_marked_stale_on_no_volume_touches_no_volume():
    old = one_entry(F, 0, stale=1)  # as a jobfile edited by hand could say
    new = one_entry(F)
    ch = carried(old, new, lambda v: 1)
    assert ch.new == [0] and ch.volumes_touched(old) == set()


def test_a_moved_file_is_stale_until_renamed_and_other_new_files_stay_new():
    old = Catalog()
    old.append(Entry("a", FILE, 10, 5, 0o644, ino=77), 2)
    old.append(Entry("b", FILE, 10, 5, 0o644, ino=78), 3)
    new = Catalog()
    new.append(Entry("b", FILE, 10, 5, 0o644, ino=78))
    new.append(Entry("c", FILE, 10, 5, 0o644, ino=99))  # new, like no deleted file
    new.append(Entry("z", FILE, 10, 5, 0o644, ino=77))  # "a" renamed
    ch = carried(old, new, lambda v: 1)
    assert (ch.moved, ch.new, ch.deleted) == ({2: 0}, [1], [0])
    assert list(new.volumes) == [3, 0, 2]
    assert new.stale_indexes() == [2]


def test_a_reruns_merged_record_is_saved_in_the_jobfile_and_read_back(tmp_path):
    old = catalog(("a", 1), ("b", 2), ("c", 3))
    new = catalog(("a", 0), ("b", 0), ("c", 0), ("d", 0))
    carried(old, new, lambda v: 1)
    job = jf.Job(job_id="j", root="/src", sources=["/src"], options={}, created="", catalog=new)
    jf.save(str(tmp_path / "job.json"), job)
    assert list(jf.load(str(tmp_path / "job.json")).catalog.volumes) == [1, 2, 3, 0]


def test_a_file_whose_inode_is_unknown_is_never_taken_for_a_move():
    old = one_entry(Entry("a", FILE, 10, 5, 0o644, ino=0), 2)  # no inode recorded
    new = one_entry(Entry("z", FILE, 10, 5, 0o644, ino=0))
    ch = carried(old, new, lambda v: 1)
    assert (ch.moved, ch.new, ch.deleted) == ({}, [0], [0])


def test_comparing_catalogs_walks_them_once(monkeypatch):
    """A million files with one deleted cost one sort-key comparison, not one per pair."""
    calls = []
    real = changes.sort_key
    monkeypatch.setattr(changes, "sort_key", lambda p: calls.append(p) or real(p))
    old = catalog(*[(f"f{n:04d}", 1) for n in range(300)])
    new = catalog(*[(f"f{n:04d}", 0) for n in range(1, 300)])
    ch = carried(old, new, lambda v: 1)
    assert (ch.unchanged, ch.deleted) == (299, [0])
    assert len(calls) <= 4


def test_the_volumes_a_renamed_folder_touches_are_found_in_one_pass():
    comparisons = 0

    class Index(int):
        """An old index that counts how often it is compared."""

        def __eq__(self, other: object) -> bool:
            nonlocal comparisons
            comparisons += 1
            return int(self) == other

        __hash__ = int.__hash__

    n = 400
    old = catalog(*[(f"old/f{k:04d}", 1) for k in range(n)])
    moved = {k: Index(k) for k in range(n)}  # every file of "old" renamed into a new folder
    ch = Changes(moved=moved, deleted=[Index(k) for k in range(n)])
    assert ch.volumes_touched(old) == {1}
    assert comparisons <= 4 * n


def test_then_to_the_volume_with_the_most_room_before_a_new_drive():
    # Neighbours (1, 3), folder (none) and the last volume (4) are full; 2 has the most room.
    c = catalog(("a/1", 1), ("a/2", 0), ("b/1", 3), ("c/1", 4))
    room = {1: 0, 2: 10 * B, 3: 0, 4: 0, 5: 0, 6: 3 * B, 7: 0}
    assert place_new(c, [1], room, {v: B for v in room}) == {1: 2}
    # ... only if it fits there: else a new drive.
    assert place_new(c, [1], {1: 0, 2: B, 3: 0, 4: 0}, {v: B for v in (1, 2, 3, 4)}) == {}


def test_place_in_takes_the_room_it_uses():
    c = catalog(("a/1", 1), ("a/2", 0), ("a/3", 0))
    left = {1: need(c, 1) + B // 2, 2: 10 * B}
    assert place_in(c, [1, 2], left, {1: B, 2: B}) == {1: 1, 2: 2}
    assert left == {1: B // 2, 2: 10 * B - need(c, 2)}


U = 0xFFFFFFFF  # metadata.UNKNOWN_ID: the owner not recorded (--no-owner, a version 2 jobfile)


@pytest.mark.parametrize("kind", [F, L], ids=["file", "symlink"])
@pytest.mark.parametrize(
    "before,after,known,modes",
    [
        ({"uid": 5}, {"uid": 6}, True, True),  # a chown
        ({"gid": 5}, {"gid": 6}, True, True),  # a chgrp
        ({"uid": 5, "gid": 5, "xattrs": "a"}, {"uid": 5, "gid": 5, "xattrs": "a"}, True, False),
        ({"uid": U}, {"uid": 6}, True, False),  # an owner not recorded before is no change
        ({"uid": 6}, {"uid": U}, True, False),  # ...nor one not recorded now
        ({"gid": U}, {"gid": 6}, True, False),
        ({"gid": 6}, {"gid": U}, True, False),
        ({}, {"xattrs": "a"}, True, True),  # a setfattr or setfacl
        ({"xattrs": "a"}, {"xattrs": "b"}, True, True),
        ({"xattrs": "a"}, {"xattrs": "b"}, False, False),  # attributes not read last time
    ],
)
def test_an_owner_group_or_attribute_changed_alone_is_metadata_only(kind, before, after, known, modes):
    """With another entry new beside it, so that the merge compares it (not the shortcut for a
    tree with nothing changed); a symlink goes the long way (by its target)."""
    old = one_entry(kind._replace(**before), 1)
    old.xattrs_known = known
    new = Catalog()
    new.append(kind._replace(**after))
    new.append(Entry("y", FILE, 1, 1, 0o644))
    ch = carried(old, new, lambda v: 1)
    assert (ch.modes, ch.changed, ch.new, ch.unchanged) == ([0] if modes else [], [], [1], 1)
    assert new.stale_indexes() == ([0] if modes else [])
    assert ch.volumes_touched(old) == ({1} if modes else set())


@pytest.mark.parametrize(
    "before,after,known,differs",
    [
        ({"uid": 5}, {"uid": 6}, True, True),
        ({"gid": 5}, {"gid": 6}, True, True),
        ({"uid": U}, {"uid": 6}, True, False),
        ({"xattrs": "a"}, {"xattrs": "b"}, True, True),
        ({"xattrs": "a"}, {"xattrs": "b"}, False, False),
        ({"uid": 5, "gid": 5, "xattrs": "a"}, {"uid": 5, "gid": 5, "xattrs": "a"}, True, False),
    ],
)
def test_a_tree_changed_only_in_owners_or_attributes_is_not_taken_for_unchanged(
    before, after, known, differs
):
    """The shortcut for a tree with nothing changed must still see a chown or a setfattr."""
    old = one_entry(F._replace(**before), 1)
    old.xattrs_known = known
    new = one_entry(F._replace(**after))
    ch = carried(old, new, lambda v: 1)
    assert ch.modes == ([0] if differs else [])
    assert ch.volumes_touched(old) == ({1} if differs else set())


def test_its_folders_volume_comes_before_the_last_and_a_roomier_volume():
    # Its neighbours' volumes (1, 3) are full; its folder is on 2; 5 (the last) has more room.
    c = catalog(("a/", 2), ("a/x", 1), ("a/y", 0), ("c", 3), ("d", 4))
    room = {1: 0, 2: 5 * B, 3: 0, 4: 0, 5: 20 * B}
    assert place_new(c, [2], room, {v: B for v in room}) == {2: 2}
    # the nearest folder, not the top one, and not the volume with the most room
    c = catalog(("a/", 3), ("a/b/", 2), ("a/b/x", 1), ("a/b/y", 0), ("c", 1), ("d", 4))
    room = {1: 0, 2: 5 * B, 3: 5 * B, 4: 0, 5: 20 * B}
    assert place_new(c, [3], room, {v: B for v in room}) == {3: 2}


def test_a_file_in_a_new_folder_goes_where_that_folder_went_before_a_roomier_volume():
    c, folder, small, big = new_folder_between_volumes()
    # 2 has the most room but is nobody's neighbour: "n/small" still follows "n" to 1
    placed = place_new(c, [1, 2, 3], {1: folder + small, 2: 20 * B, 3: big}, {1: B, 2: B, 3: B})
    assert placed == {1: 1, 2: 3, 3: 1}


def test_a_first_entry_without_a_neighbour_before_it_goes_to_the_one_after_it():
    c = catalog(("a", 0), ("b", 1))
    assert place_new(c, [0], {1: 5 * B, 2: 20 * B}, {1: B, 2: B}) == {0: 1}


def test_with_no_volume_offered_every_new_entry_needs_a_new_drive():
    c = catalog(("a/1", 1), ("a/2", 0))
    assert place_new(c, [1], {}, {}) == {}


def test_the_roomiest_volume_takes_a_file_that_fits_it_exactly_and_the_room_is_used_up():
    # Neighbours (1), folder (none) and the last volume (4) are full; 2 and 3 tie for room.
    c = catalog(("a/1", 1), ("a/2", 0), ("b/1", 1), ("c/1", 4))
    left = {1: 0, 2: need(c, 1), 3: need(c, 1), 4: 0}
    assert place_in(c, [1], left, {v: B for v in left}) == {1: 2}  # the lower number on a tie
    assert left == {1: 0, 2: 0, 3: need(c, 1), 4: 0}
