"""The journal's replay (pure: lines in, state out): what a drive holds after a crash."""

from __future__ import annotations

import json

from multivolumecopy import journal
from multivolumecopy.catalog import FILE, Entry
from multivolumecopy.driveformat import ManifestState, entry_row


def entry(path: str, size: int = 10, sha: str = "ab" * 32) -> Entry:
    return Entry(path, FILE, size, 1_600_000_000_000_000_000, 0o644, None, sha)


def state_with(*entries: Entry, generation: int = 3) -> ManifestState:
    state = ManifestState(generation=generation)
    for e in entries:
        state.contents[e.path] = e
    return state


def lines(*records) -> bytes:
    out = []
    for rec in records:
        out.append(rec if isinstance(rec, str) else json.dumps(rec))
    return ("\n".join(out) + "\n").encode()


def put(*entries: Entry, stored: dict[str, str] | None = None) -> str:
    return journal.put(entry_row(e, None, (stored or {}).get(e.path)) for e in entries)


def test_a_put_covered_by_a_sync_is_held():
    state = state_with()
    changed = journal.replay(journal.parse(lines(journal.header(3), put(entry("a")), journal.SYNC)), state)
    assert changed and set(state.contents) == {"a"} and state.dirty == set()


def test_a_put_no_sync_covers_is_ours_with_unknown_content():
    """The data may not be on the disk (a power cut): not held, dirty (rewritten or removed)."""
    state = state_with(entry("old"))
    records = journal.parse(
        lines(
            journal.header(3), journal.intent(["a", "b"], {}), put(entry("a")), journal.SYNC, put(entry("b"))
        )
    )
    journal.replay(records, state)
    assert set(state.contents) == {"old", "a"}
    assert state.dirty == {"b"}


def test_an_intent_with_no_put_is_dirty():
    """A worker may have renamed the file into place just before the crash."""
    state = state_with()
    journal.replay(journal.parse(lines(journal.header(3), journal.intent(["x", "y"], {"y": "y%3F"}))), state)
    assert state.dirty == {"x", "y"} and not state.contents
    assert state.stored == {"y": "y%3F"}  # where to look for it: the name it was meant to get


def test_a_delete_removes_what_the_manifest_held_and_is_not_dirty():
    state = state_with(entry("gone"), entry("kept"))
    state.dirty.add("gone")
    journal.replay(journal.parse(lines(journal.header(3), journal.removed(["gone"]))), state)
    assert set(state.contents) == {"kept"} and state.dirty == set()


def test_a_delete_after_an_intent_cancels_it():
    state = state_with()
    records = journal.parse(lines(journal.header(3), journal.intent(["x"], {}), journal.removed(["x"])))
    journal.replay(records, state)
    assert state.dirty == set()


def test_a_torn_last_line_and_anything_after_it_never_happened():
    state = state_with()
    data = (
        lines(journal.header(3), put(entry("a")), journal.SYNC)
        + b'{"t": "put", "e": [["b", "f"'
        + b"\n"
        + lines(journal.SYNC)
    )
    records = journal.parse(data)
    assert [r.get("t") for r in records] == [None, "put", "sync"]
    journal.replay(records, state)
    assert set(state.contents) == {"a"} and state.dirty == set()


def test_a_journal_of_another_generation_was_already_folded_in():
    """Written before the manifest it sits on was committed: its records are in the manifest."""
    state = state_with(entry("a"), generation=4)
    changed = journal.replay(journal.parse(lines(journal.header(3), journal.removed(["a"]))), state)
    assert changed and set(state.contents) == {"a"}


def test_an_empty_journal_or_one_of_another_format_changes_nothing():
    state = state_with(entry("a"))
    assert journal.replay(journal.parse(b""), state) is False
    assert journal.replay(journal.parse(lines({"format": "something else"})), state) is True
    assert set(state.contents) == {"a"}


def test_a_put_forgets_when_the_file_was_last_checked_and_keeps_its_stored_name():
    state = state_with(entry("a"))
    state.verified["a"] = 1_700_000_000
    journal.replay(
        journal.parse(lines(journal.header(3), put(entry("a", 20), stored={"a": "A~1"}), journal.SYNC)), state
    )
    assert state.contents["a"].size == 20
    assert "a" not in state.verified and state.stored == {"a": "A~1"}


def test_what_was_intended_and_never_put_after_a_copy_cut_short():
    records = journal.parse(
        lines(journal.header(3), journal.intent(["a", "b", "c"], {}), put(entry("a")), journal.removed(["c"]))
    )
    assert journal.intended_not_put(records, {"a"}) == {"b"}


def test_the_first_line_names_the_format_its_version_and_the_manifest_it_sits_on():
    """As docs/formats.rst gives it: a reader checks the version before it trusts the rest."""
    assert json.loads(json.dumps(journal.header(7))) == {
        "format": "multivolumecopy-journal",
        "version": 2,
        "generation": 7,
    }


def test_a_put_of_several_entries_holds_them_all_once_synced():
    state = state_with()
    journal.replay(
        journal.parse(lines(journal.header(3), put(entry("a"), entry("b"), entry("c")), journal.SYNC)), state
    )
    assert set(state.contents) == {"a", "b", "c"} and state.dirty == set()


def test_a_file_put_then_removed_before_the_sync_is_not_held():
    state = state_with()
    records = journal.parse(
        lines(
            journal.header(3),
            journal.intent(["a", "b"], {}),
            put(entry("a"), entry("b")),
            journal.removed(["a"]),
            journal.SYNC,
        )
    )
    journal.replay(records, state)
    assert set(state.contents) == {"b"} and state.dirty == set()


def test_a_held_file_about_to_be_rewritten_when_the_crash_came_is_no_longer_held_but_dirty():
    state = state_with(entry("a"), entry("b"))
    state.dirty.add("x")  # dirty already in the manifest: stays so
    journal.replay(journal.parse(lines(journal.header(3), journal.intent(["a"], {}))), state)
    assert set(state.contents) == {"b"}
    assert state.dirty == {"a", "x"}


def test_an_intent_from_before_drives_kept_stored_names_is_still_dirty():
    """Version 1 journals written before the ``stored`` key existed name only the paths."""
    state = state_with(entry("a"))
    journal.replay(journal.parse(lines(journal.header(3), {"t": "intent", "paths": ["a", "b"]})), state)
    assert state.dirty == {"a", "b"} and not state.contents and state.stored == {}


def test_a_put_keeps_the_metadata_digest_and_a_version_1_row_has_none():
    """Rows of version 2 carry the digest of the owner and attributes the drive's copy was given;
    a row written by version 1 (no "meta" column) is read as "not known" (0), not refused."""
    given = entry("a")._replace(meta=0x1234ABCD)
    old_row = json.loads(entry_row(entry("b")))[:9]
    records = journal.parse(lines(journal.header(3), put(given), {"t": "put", "e": [old_row]}, journal.SYNC))
    state = state_with()
    journal.replay(records, state)
    assert state.contents["a"].meta == 0x1234ABCD
    assert state.contents["b"].meta == 0 and state.contents["b"].size == 10
