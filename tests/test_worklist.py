"""What is left of a run, and what to ask for next: the worklist's answers from the catalog
and the run's state.  Pure: no drive, no root."""

from __future__ import annotations

from multivolumecopy import jobfile as jf
from multivolumecopy.catalog import FILE, NO_VOLUME, Catalog, Entry
from multivolumecopy.placement import NEW_DRIVE
from multivolumecopy.worklist import Worklist, volumes_text


def _worklist(volumes: list[int], records=(1, 2), **run) -> tuple[Worklist, jf.Job]:
    c = Catalog()
    for n, v in enumerate(volumes):
        c.append(Entry(f"f{n}", FILE, 100, 1000, 0o644), v)
    job = jf.Job(job_id="j", root="/src", sources=["/src"], options={}, created="", catalog=c)
    job.volumes = {n: jf.VolumeRecord(n, f"u{n}", "") for n in records}
    job.run = jf.RunState(number=1, state="in-progress", **run)
    return Worklist(job, {}, {}, set()), job


def test_entries_on_no_volume_are_left_except_those_that_failed_or_vanished():
    wl, _ = _worklist([1, NO_VOLUME, NO_VOLUME, NO_VOLUME, 2])
    wl.failed[2] = "cannot read"
    wl.vanished.add(3)

    assert list(wl.unplaced()) == [1]
    assert wl.left() == (1, 100)


def test_an_entry_without_a_destination_needs_a_new_drive_and_one_with_goes_to_its_volume():
    wl, _ = _worklist([1, NO_VOLUME, NO_VOLUME])
    wl.destinations[2] = 1

    assert list(wl.bound_for(NEW_DRIVE)) == [1]
    assert list(wl.bound_for(1)) == [2]
    assert wl.new_drive_needed()
    assert wl.pending_volumes() == [1]


def test_volumes_done_in_this_run_or_being_replaced_are_not_pending():
    wl, _ = _worklist([1, 2], records=(1, 2, 3), pending_volumes=[1, 2, 3], done_volumes=[1], replace=[3])

    assert wl.pending_volumes() == [2]


def test_the_run_is_over_only_when_no_volume_and_no_new_drive_is_needed():
    wl, job = _worklist([1, 2], pending_volumes=[2])
    assert wl.remains()
    job.run.done_volumes.append(2)
    assert not wl.remains()
    job.run.open_volume = 1  # a volume left unfinished must be finished first
    assert wl.remains()


def test_an_unfinished_volume_is_asked_for_alone():
    wl, _ = _worklist([1, NO_VOLUME], pending_volumes=[2], open_volume=1)

    wanted, first, message = wl.wanted("/mnt/usb")

    assert (wanted, first) == ([1], 1)
    assert message == "insert volume 1 (not finished yet) at /mnt/usb"


def test_the_ask_names_every_volume_that_would_do_and_a_blank_drive_with_its_number():
    wl, _ = _worklist([1, NO_VOLUME], records=(1, 2, 4), pending_volumes=[2, 4])

    wanted, first, message = wl.wanted("/mnt/usb")

    assert (wanted, first) == ([2, 4], 2)
    assert message == (
        "volumes 2 and 4 still need updating; a blank drive is needed for volume 5: insert either at /mnt/usb"
    )


def test_a_replaced_volume_asks_for_a_blank_drive_under_its_number():
    wl, _ = _worklist([1, 2], replace=[2])

    wanted, first, message = wl.wanted("/mnt/usb")

    assert (wanted, first) == ([], 2)
    assert message == "a blank drive is needed for volume 2 (replacing the old drive): insert it at /mnt/usb"


def test_volumes_text_reads_as_english():
    assert volumes_text([3]) == "volume 3 needs updating"
    assert volumes_text([1, 4], "still ") == "volumes 1 and 4 still need updating"
    assert volumes_text([1, 4, 5]) == "volumes 1, 4 and 5 need updating"


def test_whether_anything_is_left_to_place_counts_the_first_entry_too():
    wl, job = _worklist([NO_VOLUME, 1, 2])
    assert wl.any_unplaced()  # entry 0 is on no volume
    job.catalog.volumes[0] = 2
    assert not wl.any_unplaced()
    wl, _ = _worklist([1, NO_VOLUME, NO_VOLUME])
    wl.failed[1] = "cannot read"
    assert wl.any_unplaced()
    wl.vanished.add(2)
    assert not wl.any_unplaced()  # what failed or vanished is not offered again in this run


def test_what_is_left_counts_every_entry_and_all_their_bytes():
    wl, job = _worklist([NO_VOLUME, 1, NO_VOLUME, NO_VOLUME])
    job.catalog.sizes[2] = 5000
    job.catalog.sizes[3] = 7
    assert wl.left() == (3, 100 + 5000 + 7)


def test_a_volume_to_update_and_a_new_drive_are_asked_for_as_either():
    wl, _ = _worklist([1, NO_VOLUME], pending_volumes=[2])

    wanted, first, message = wl.wanted("/mnt/usb")

    assert (wanted, first) == ([2], 2)
    assert (
        message
        == "volume 2 still needs updating; a blank drive is needed for volume 3: insert either at /mnt/usb"
    )


def test_a_replaced_volume_and_a_new_drive_are_two_blank_drives():
    wl, _ = _worklist([1, 2, NO_VOLUME], replace=[2])

    wanted, first, message = wl.wanted("/mnt/usb")

    assert (wanted, first) == ([], 2)
    assert message == (
        "a blank drive is needed for volume 2 (replacing the old drive) and volume 3: "
        "insert either at /mnt/usb"
    )


def test_only_a_new_drive_is_asked_for_under_the_next_number():
    wl, _ = _worklist([1, 2, NO_VOLUME], records=(1, 2, 5))

    wanted, first, message = wl.wanted("/mnt/usb")

    assert (wanted, first) == ([], 6)
    assert message == "a blank drive is needed for volume 6: insert it at /mnt/usb"
