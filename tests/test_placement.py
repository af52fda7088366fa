"""Where new files go on a re-run, as tables (placement is pure)."""

from __future__ import annotations

from multivolumecopy.catalog import DIR, FILE, Catalog, Entry
from multivolumecopy.changes import classify
from multivolumecopy.placement import place_new
from multivolumecopy.reconcile import record_cost

B = 1024


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
    ch = classify(old, new, lambda v: 1)
    assert ch.new == [0] and ch.unchanged == 3
    assert list(new.volumes) == [0, 1, 2, 3]  # the others keep their volumes
    assert place_new(new, ch.new, {1: 10 * B, 2: 10 * B, 3: 10 * B}, {1: B, 2: B, 3: B}) == {0: 1}


def test_a_renamed_file_is_a_move_on_its_volume():
    old = Catalog()
    old.append(Entry("dir/a.txt", FILE, 10, 5, 0o644, ino=77), 2)
    new = Catalog()
    new.append(Entry("renamed/a.txt", FILE, 10, 5, 0o644, ino=77))
    ch = classify(old, new, lambda v: 1)
    assert ch.moved == {0: 0} and ch.new == [] and list(new.volumes) == [2]
    assert ch.volumes_touched(old, new) == {2}


def test_a_mode_alone_changed_is_no_content_change_but_its_volume_is_visited():
    old = catalog(("a/", 1), ("a/x", 1), ("b", 2), ("c", 3))
    new = catalog(("a/", 0), ("a/x", 0), ("b", 0), ("c", 0))
    new.modes[1] = 0o600  # chmod a/x
    new.modes[0] = 0o700  # chmod the folder a
    ch = classify(old, new, lambda v: 1)
    assert (ch.changed, ch.new, ch.modes) == ([], [], [0, 1])
    assert ch.volumes_touched(old, new) == {1}
    assert list(new.volumes) == [1, 1, 2, 3]
