"""The ledger, the one owner of which volume holds each entry: what it records after a drive's
commit, and what it gives up.  Pure: no drive, no root."""

from __future__ import annotations

from array import array

from multivolumecopy.catalog import FILE, LINK, NO_VOLUME, Catalog, Entry
from multivolumecopy.contents import DriveContents
from multivolumecopy.ledger import Ledger
from multivolumecopy.metadata import digest

GRAN = 1


def _catalog(volumes: list[int], stale: list[int]) -> Catalog:
    c = Catalog()
    for n, v in enumerate(volumes):
        c.append(Entry(f"f{n}", FILE, 10 + n, 1000 + n, 0o644), v)
    c.stale = bytearray(stale)
    return c


def _drive_holding(c: Catalog, *indexes: int, **changes) -> DriveContents:
    held = DriveContents()
    for i in indexes:
        held[c.paths[i]] = c.entry(i)._replace(**changes)
    return held


def test_written_entries_that_the_drive_committed_are_recorded_on_it_and_current():
    c = _catalog([NO_VOLUME, NO_VOLUME, 2], [0, 0, 0])

    missing = Ledger(c).settle(1, _drive_holding(c, 0, 1), written=[0, 1], granularity=GRAN)

    assert missing == []
    assert list(c.volumes) == [1, 1, 2]
    assert c.unsaved() == []


def test_an_entry_recorded_on_a_volume_whose_drive_lacks_it_is_on_no_volume_and_unsaved():
    c = _catalog([1, 1, 1], [0, 0, 0])

    missing = Ledger(c).settle(1, _drive_holding(c, 0, 2), written=[], granularity=GRAN)

    assert missing == [1]
    assert list(c.volumes) == [1, NO_VOLUME, 1]
    assert c.unsaved() == [1]


def test_an_older_copy_on_the_drive_keeps_the_entry_there_but_marked_stale():
    c = _catalog([1, 1], [0, 0])
    held = _drive_holding(c, 0)
    held[c.paths[1]] = c.entry(1)._replace(size=999)  # the drive's copy is an older version

    Ledger(c).settle(1, held, written=[], granularity=GRAN)

    assert list(c.volumes) == [1, 1]
    assert list(c.stale) == [0, 1]
    assert c.unsaved() == [1]


def test_a_stale_entry_the_drive_now_holds_current_is_no_longer_stale():
    c = _catalog([1], [1])

    Ledger(c).settle(1, _drive_holding(c, 0), written=[0], granularity=GRAN)

    assert list(c.stale) == [0]


def test_a_mode_changed_on_the_source_but_not_on_the_drive_stays_stale():
    c = _catalog([1], [1])

    Ledger(c).settle(1, _drive_holding(c, 0, mode=0o600), written=[0], granularity=GRAN)

    assert c.unsaved() == [0]


def test_settling_one_volume_leaves_the_others_alone():
    c = _catalog([1, 2, 2], [0, 1, 0])

    Ledger(c).settle(1, _drive_holding(c, 0), written=[], granularity=GRAN)

    assert list(c.volumes) == [1, 2, 2] and list(c.stale) == [0, 1, 0]


def test_unplace_puts_entries_on_no_volume_and_clears_their_mark():
    c = _catalog([1, 1, 2], [1, 0, 0])

    Ledger(c).unplace([0, 2])

    assert list(c.volumes) == [NO_VOLUME, 1, NO_VOLUME]
    assert list(c.stale) == [0, 0, 0]
    assert c.unsaved() == [0, 2]


def test_carry_takes_the_merges_columns():
    c = _catalog([NO_VOLUME, NO_VOLUME], [0, 0])

    Ledger(c).carry(array("i", [3, 4]), bytearray([1, 0]))

    assert list(c.volumes) == [3, 4] and list(c.stale) == [1, 0]


def test_a_symlink_is_current_by_its_target_and_a_hard_linked_file_by_its_size_and_time():
    c = Catalog()
    c.append(Entry("a", FILE, 10, 1000, 0o644), 1)
    c.append(Entry("b", FILE, 10, 1000, 0o644, target="a"), 1)  # a hard link to "a"
    c.append(Entry("l", LINK, 0, 1000, 0o777, target="a"), 1)
    c.append(Entry("m", LINK, 0, 1000, 0o777, target="a"), 1)
    held = DriveContents()
    held["a"] = c.entry(0)
    held["b"] = c.entry(1)._replace(target=None)  # the drive's record of a file names no link
    held["l"] = c.entry(2)
    held["m"] = c.entry(3)._replace(target="old")  # the link was re-made to point elsewhere

    for granularity in (1, 2_000_000_000):
        Ledger(c).settle(1, held, written=[], granularity=granularity)
        assert list(c.stale) == [0, 0, 0, 1]


def test_an_owner_the_drive_copy_was_given_keeps_it_current_and_another_owner_leaves_it_stale():
    c = Catalog()
    c.append(Entry("f", FILE, 10, 1000, 0o644, uid=5, gid=6), 1)
    c.stale = bytearray([1])
    Ledger(c).settle(1, _drive_holding(c, 0), written=[0], granularity=GRAN)
    assert c.unsaved() == []  # the drive's copy has the owner and group the catalog records
    c.stale = bytearray([1])
    chowned = digest(7, 6, None)
    Ledger(c).settle(1, _drive_holding(c, 0, meta=chowned), written=[0], granularity=GRAN)
    assert c.unsaved() == [0]  # a chown since: the drive's copy is an older version
