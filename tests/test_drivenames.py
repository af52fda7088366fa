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


def test_a_drive_that_stores_any_name_of_its_own_says_so_and_stops_when_it_is_forgotten():
    names = StoredNames(EXFAT)
    assert not names  # every entry where its path says: the copier needs no names
    names.name_for("a:b", FILE, set())
    assert names
    names.forget("a:b")
    assert not names


def test_an_entry_the_drive_holds_keeps_the_name_it_has_there():
    names = StoredNames(EXFAT, {"a:b": "a%3Ab"})
    assert names.name_for("a:b", FILE, {"a:b", "c"}) == "a%3Ab"
    assert names.name_for("c", FILE, {"a:b", "c"}) == "c"


def test_a_folder_renamed_below_another_is_learnt_back_at_its_own_depth():
    # held "photos/Photos" took the plain name, so "photos/photos" got one of its own
    names = StoredNames(EXFAT, {"photos/photos/c.jpg": "photos/photos~1234/c.jpg"})
    assert names.on_drive("photos/photos/later.jpg") == "photos/photos~1234/later.jpg"
    assert names.on_drive("photos/photos/2024/x?.jpg") == "photos/photos~1234/2024/x%3F.jpg"
    assert names.on_drive("photos/other.jpg") == "photos/other.jpg"


def test_a_folder_made_distinct_holds_what_goes_below_it_later_in_the_same_visit():
    for folder, below in [("photos", "photos/c.jpg"), ("A/photos", "A/photos/c.jpg")]:
        held = {folder.replace("photos", "Photos"), folder.replace("photos", "Photos") + "/a.jpg"}
        names = StoredNames(EXFAT)
        stored = names.name_for(folder, DIR, held)
        assert stored is not None and stored.startswith(folder + "~")
        assert names.on_drive(below) == f"{stored}/c.jpg"
        assert names.on_drive(folder) == stored
    names = StoredNames(EXFAT)
    held = {"A/Photos", "A/Photos/a.jpg"}
    stored = names.name_for("A/photos/c.jpg", FILE, held)  # the folder itself lives elsewhere
    assert stored is not None and stored.startswith("A/photos~") and stored.endswith("/c.jpg")
    assert names.on_drive("A/photos/d.jpg") == stored.rsplit("/", 1)[0] + "/d.jpg"


def test_a_file_differing_only_in_case_from_one_held_in_a_folder_is_made_distinct_in_that_folder():
    names = StoredNames(EXFAT)
    held = {"Photos", "Photos/README.md"}
    stored = names.name_for("Photos/Readme.md", FILE, held)
    assert stored is not None and stored.startswith("Photos/Readme~") and stored.endswith(".md")
    assert names.on_drive("Photos/Readme.md") == stored and names.get("Photos/Readme.md") == stored


def test_new_files_in_a_folder_the_drive_holds_go_into_it_as_they_are():
    names = StoredNames(EXFAT)
    held = {"Photos/2024/a.jpg"}  # its folders' own entries live on another volume
    assert names.name_for("Photos/2024/b.jpg", FILE, held) == "Photos/2024/b.jpg"
    assert names.name_for("New/Sub/f", FILE, held) == "New/Sub/f"
    assert names.name_for("New/Sub/g", FILE, held) == "New/Sub/g"
    assert names.names == {}


def test_a_new_folder_differing_only_in_case_from_one_taken_in_this_visit_gets_a_name_of_its_own():
    names = StoredNames(EXFAT)
    assert names.name_for("New/Sub/f", FILE, set()) == "New/Sub/f"
    other = names.name_for("New/sub/g", FILE, set())
    assert other is not None and other.startswith("New/sub~") and other.endswith("/g")


def test_a_deeper_folder_differing_only_in_case_from_one_held_gets_a_name_of_its_own():
    names = StoredNames(EXFAT)
    other = names.name_for("Photos/Sub/x", FILE, {"Photos/sub/a.jpg"})
    assert other is not None and other.startswith("Photos/Sub~") and other.endswith("/x")


def test_names_the_drive_stores_otherwise_are_taken_by_their_stored_names():
    # read back from the manifest: "my dir/a b:c" is stored escaped; a file really named as the
    # escaped name must not land on it
    names = StoredNames(EXFAT, {"my dir/a b:c": "my dir/a b%3Ac"})
    held = {"my dir/a b:c"}
    stored = names.name_for("my dir/a b%3Ac", FILE, held)
    assert stored is not None and stored != "my dir/a b%3Ac" and stored.startswith("my dir/a b%3Ac~")


def test_an_entry_kept_in_the_records_only_takes_no_name_and_hides_none_held_after_it():
    names = StoredNames(EXFAT, {"link": RECORDED_ONLY})
    held = dict.fromkeys(["link", "README.md"])  # the drive's manifest order
    other = names.name_for("Readme.md", FILE, held)
    assert other is not None and other.startswith("Readme~")
    assert names.name_for("LINK", FILE, held) == "LINK"


def test_a_removed_entrys_name_is_free_again_and_removing_one_never_named_is_harmless():
    names = StoredNames(EXFAT)
    names.forget("never/named")  # before any name was chosen
    held = {"a.txt", "b.txt", "README.md"}
    readme = names.name_for("Readme.md", FILE, held)
    assert readme is not None and readme != "Readme.md"
    names.forget("a.txt")  # removed from the drive
    names.forget("dirty.txt")  # ours of unknown content, removed: it had no name
    names.forget("Readme.md")
    held.discard("a.txt")
    assert names.name_for("A.txt", FILE, held) == "A.txt"
    assert names.name_for("B.txt", FILE, held) != "B.txt"  # b.txt is still there
    assert names.name_for(readme, FILE, held) == readme  # a file really named so takes it


def test_a_drive_that_only_ignores_case_or_only_refuses_a_trailing_dot_still_keeps_names_apart():
    names = StoredNames(Capabilities(case_sensitive=False))
    other = names.name_for("Readme.md", FILE, {"README.md"})
    assert other is not None and other != "Readme.md"
    names = StoredNames(Capabilities(trailing_dot_space=False))
    escaped = names.name_for("a.", FILE, set())
    assert escaped is not None and escaped != "a."
    clash = StoredNames(Capabilities(trailing_dot_space=False))
    mine = clash.name_for("a.", FILE, {escaped})  # a file really named as "a." is escaped
    assert mine is not None and mine not in (escaped, "a.")


def test_a_drive_that_keeps_case_takes_names_differing_in_case_as_two():
    names = StoredNames(Capabilities(forbidden=":"))
    assert names.name_for("photos/b:c", FILE, {"Photos/b%3Ac"}) == "photos/b%3Ac"
