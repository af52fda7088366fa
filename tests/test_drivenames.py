"""Where entries are stored on a drive that cannot hold every name as it is (pure)."""

from __future__ import annotations

from multivolumecopy.catalog import DIR, FILE, LINK
from multivolumecopy.driveformat import RECORDED_ONLY
from multivolumecopy.drivenames import StoredNames
from multivolumecopy.probe import Capabilities

EXFAT = Capabilities(symlinks=False, modes=False, case_sensitive=False, forbidden=':?*"<>|\\\\')


def test_names_a_drive_holds_as_they_are_are_not_recorded():
    names = StoredNames(Capabilities())
    assert names.name_for("Photos/a.jpg", FILE, set()) == "Photos/a.jpg"
    assert names.names == {}


def test_a_name_the_drive_refuses_is_escaped_and_so_is_what_goes_below_it():
    names = StoredNames(EXFAT)
    assert names.name_for("to do: call", DIR, set()) == "to do%3A call"
    assert names.name_for("to do: call/x?.txt", FILE, set()) == "to do%3A call/x%3F.txt"
    assert names.on_drive("to do: call/x?.txt") == "to do%3A call/x%3F.txt"


def test_a_symlink_on_a_drive_without_them_is_kept_in_the_records_only():
    names = StoredNames(EXFAT)
    assert names.name_for("link", LINK, set()) is None
    assert names.get("link") == RECORDED_ONLY and names.on_drive("link") is None


def test_folders_differing_only_in_case_get_names_of_their_own_and_so_do_their_files():
    names = StoredNames(EXFAT)
    held = {"Photos", "Photos/a.jpg"}
    photos = names.name_for("photos", DIR, held)
    assert photos is not None and photos.startswith("photos~") and photos != "photos"
    assert names.name_for("photos/c.jpg", FILE, held) == f"{photos}/c.jpg"
    assert names.name_for("photos/new/d.jpg", FILE, held) == f"{photos}/new/d.jpg"
    assert names.name_for("Photos/e.jpg", FILE, held) == "Photos/e.jpg"  # the first keeps its name


def test_a_folder_name_is_learnt_back_from_the_names_of_its_entries():
    """The next run knows only the manifest's names: what goes into the renamed folder later
    goes below its name too, though the folder itself is not an entry of that drive."""
    names = StoredNames(EXFAT, {"photos/c.jpg": "photos~12345678/c.jpg"})
    assert names.on_drive("photos/later.jpg") == "photos~12345678/later.jpg"
    assert names.on_drive("Photos/a.jpg") == "Photos/a.jpg"


def test_a_file_differing_only_in_case_from_one_held_is_made_distinct_and_forgetting_frees_a_name():
    names = StoredNames(EXFAT)
    held = {"README.md"}
    other = names.name_for("Readme.md", FILE, held)
    assert other is not None and other.startswith("Readme~") and other.endswith(".md")
    names.forget("Readme.md")
    assert names.get("Readme.md") is None


def test_a_name_that_escapes_to_one_already_taken_gets_a_name_of_its_own():
    names = StoredNames(EXFAT)
    held = {"a%3Ab"}  # a file really named so in the sources
    stored = names.name_for("a:b", FILE, held)
    assert stored is not None and stored != "a%3Ab" and stored.startswith("a%3Ab~")
    assert names.on_drive("a%3Ab") == "a%3Ab"


def test_two_new_names_that_escape_alike_on_a_drive_that_keeps_case_are_kept_apart():
    colon_only = Capabilities(forbidden=":")
    names = StoredNames(colon_only)
    first = names.name_for("a%3Ab", FILE, set())
    second = names.name_for("a:b", FILE, set())
    assert first == "a%3Ab" and second is not None and second != first


def test_folders_that_escape_alike_are_two_folders_and_their_files_stay_in_their_own():
    names = StoredNames(EXFAT)
    held = {"x%3Ay", "x%3Ay/f"}
    mine = names.name_for("x:y/f", FILE, held)  # its folder's own entry lives on another volume
    assert mine is not None and not mine.startswith("x%3Ay/")
    assert names.name_for("x:y/g", FILE, held) == mine.rsplit("/", 1)[0] + "/g"
    assert names.on_drive("x%3Ay/f") == "x%3Ay/f"


def test_forgetting_a_symlink_kept_in_the_records_frees_no_other_entrys_name():
    names = StoredNames(EXFAT)
    held = {"ab"}
    names.name_for("c", FILE, held)  # the names taken are known from here on
    names.name_for("Ab", LINK, held)  # records only, on exFAT
    names.forget("Ab")
    other = names.name_for("AB", FILE, held)
    assert other is not None and other != "AB" and other.startswith("AB~")
