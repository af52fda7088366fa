"""What a drive holds, kept packed in memory: every entry comes back exactly as it went in."""

from __future__ import annotations

import hashlib
import json

import pytest

from multivolumecopy.catalog import DIR, FILE, LINK, Entry
from multivolumecopy.contents import DriveContents

DIGEST = hashlib.sha256(b"x").hexdigest()

ENTRIES = [
    Entry("a/file.bin", FILE, 12_345, 1_600_000_000_123_456_789, 0o4755, None, DIGEST),
    Entry("a/unhashed", FILE, 0, -5, 0o600),  # no hash (--no-hash), a time before 1970
    Entry("a", DIR, 0, 7, 0o755),
    Entry("a/link", LINK, 0, 9, 0o777, "../elsewhere"),
    Entry("caf\udce9/upper", FILE, 1, 2, 0o644, None, DIGEST.upper()),  # kept as written
    Entry("short", FILE, 1, 2, 0o644, None, "abc"),  # not a digest at all
]


def test_every_kind_of_entry_comes_back_as_it_was_stored():
    held = DriveContents()
    for e in ENTRIES:
        held[e.path] = e
    assert len(held) == len(ENTRIES)
    assert [held[e.path] for e in ENTRIES] == ENTRIES
    assert dict(held.items()) == {e.path: e for e in ENTRIES}
    assert "a/link" in held and "nowhere" not in held and held.get("nowhere") is None


def test_replacing_and_removing_entries():
    held = DriveContents()
    held["a/link"] = ENTRIES[3]
    held["a/link"] = Entry("a/link", FILE, 3, 4, 0o644, None, DIGEST)  # the link became a file
    assert held["a/link"].target is None and held["a/link"].sha256 == DIGEST
    del held["a/link"]
    assert "a/link" not in held and len(held) == 0
    with pytest.raises(KeyError):
        held["a/link"]


def test_a_number_out_of_range_from_a_damaged_manifest_is_a_value_error():
    with pytest.raises(ValueError):
        DriveContents()["big"] = Entry("big", FILE, 2**64, 0, 0o644)


def test_the_packed_answers_match_the_entries():
    held = DriveContents()
    for e in ENTRIES:
        held[e.path] = e
    paths = [e.path for e in ENTRIES]
    verified, names = {"a/file.bin": 1_700_000_000}, {"caf\udce9/upper": "caf_upper"}

    rows = [json.loads(row) for row in held.manifest_rows(paths, verified, names)]
    assert rows[0] == [
        "a/file.bin",
        FILE,
        12_345,
        1_600_000_000_123_456_789,
        0o4755,
        None,
        DIGEST,
        1_700_000_000,
        None,
        None,  # meta: no owner nor attributes recorded for it
    ]
    assert [row[:7] for row in rows] == [list(e[:7]) for e in ENTRIES]
    assert rows[4][8] == "caf_upper"
    assert held.file_bytes(4096) == 16384 + 0 + 4096 + 4096  # a file of 0 bytes takes no block
    assert held.file_bytes(1) == 12_345 + 1 + 1
    assert set(held.paths_of_kind(DIR)) == {"a"}
    assert set(held.paths_of_kind(LINK)) == {"a/link"}


def test_a_hard_link_with_its_hash_is_hashed_and_a_digest_not_in_plain_hex_is_not():
    """A visit hashes what is unhashed: a hard link recorded with its group's hash must not be
    (every visit of its volume would read it again and rewrite the drive's records)."""
    held = DriveContents()
    for e in ENTRIES:
        held[e.path] = e
    held["a/again"] = Entry("a/again", FILE, 12_345, 1, 0o644, "a/file.bin", DIGEST)
    assert held.unhashed_files() == {"a/unhashed", "caf\udce9/upper", "short"}
