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
