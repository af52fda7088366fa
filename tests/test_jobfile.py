"""The jobfile on disk: round trips, and refusals of what it cannot trust."""

from __future__ import annotations

import json
import os

import pytest

from multivolumecopy import clock
from multivolumecopy import jobfile as jf
from multivolumecopy.catalog import DIR, FILE, LINK, Catalog, Entry
from multivolumecopy.errors import JobfileError
from multivolumecopy.metadata import ACL_DEFAULT, UNKNOWN_ID, encode


def sample_job() -> jf.Job:
    cat = Catalog()
    acl = encode(
        [(ACL_DEFAULT, b"\x02\x00\x00\x00\x01\x00\x07\x00\xff\xff\xff\xff"), ("user.x", b"\xff\x00")]
    )
    cat.append(Entry("dir", DIR, 0, 5, 0o2775, uid=1000, gid=50, xattrs=acl), 1)
    cat.append(
        Entry("dir/caf\udce9 \u00e9\nnewline.txt", FILE, 12, 1_600_000_000_123_456_789, 0o4600, uid=0, gid=0),
        1,
    )
    cat.append(Entry("dir/link", LINK, 0, 7, 0o777, "../x", uid=33, gid=33), 2)
    cat.append(Entry("z" * 250, FILE, 3, 9, 0o644))
    job = jf.Job(
        job_id=clock.new_id(),
        root="/mnt/src",
        sources=["/mnt/src"],
        options={"exclude": []},
        created=clock.now_iso(),
        catalog=cat,
    )
    job.volumes[1] = jf.VolumeRecord(1, clock.new_id(), clock.now_iso())
    job.run = jf.RunState(number=2, id="r", state="in-progress", done_volumes=[1], open_volume=2)
    return job


def load(path, cache: str) -> jf.Job:
    """Load through the catalog cache, or ("deleted") by parsing the rows."""
    if cache == "deleted":
        os.unlink(f"{path}{jf.CACHE_SUFFIX}")
    job = jf.load(str(path))
    assert job.cached == (cache == "kept")
    return job


def columns(cat: Catalog) -> tuple:
    return (
        cat.paths,
        cat.kinds,
        cat.sizes,
        cat.mtimes,
        cat.modes,
        cat.volumes,
        cat.inodes,
        cat.targets,
        cat.uids,
        cat.gids,
        cat.xattrs,
    )


@pytest.mark.parametrize("cache", ["kept", "deleted"])
def test_round_trip_keeps_every_field_and_odd_names(tmp_path, cache):
    job = sample_job()
    path = tmp_path / "job.json"
    jf.save(str(path), job)
    back = load(path, cache)
    assert list(back.catalog) == list(job.catalog)
    assert columns(back.catalog) == columns(job.catalog)
    assert back.catalog.xattrs_known
    assert list(back.catalog.volumes) == [1, 1, 2, 0]
    assert back.volumes == job.volumes
    assert back.run == job.run


def test_it_is_readable_json_with_a_format_and_version_and_one_row_per_file(tmp_path):
    path = tmp_path / "job.json"
    jf.save(str(path), sample_job())
    text = path.read_text()
    doc = json.loads(text)
    assert doc["format"] == "multivolumecopy-jobfile" and doc["version"] == 3
    assert doc["columns"] == [
        "path", "kind", "size", "mtime_ns", "mode", "volume", "target", "ino", "stale", "uid", "gid", "xattrs"
    ]  # fmt: skip
    assert sum(1 for line in text.splitlines() if line.startswith('["dir')) == 3


@pytest.mark.parametrize(
    "mangle,message",
    [
        (lambda t: t[: len(t) // 2], "corrupt or truncated"),
        (lambda t: t.replace('"version": 3', '"version": 99'), "format version 99"),
        (lambda t: t.replace('"multivolumecopy-jobfile"', '"x"'), "not a multivolumecopy"),
        (lambda t: t.replace('"job_id"', '"jab_id"'), "damaged"),
        (lambda t: t.replace(",12,1600000000123456789,", ',"12",1600000000123456789,'), "damaged"),
    ],
)
def test_a_jobfile_it_cannot_trust_is_refused_with_a_reason(tmp_path, mangle, message):
    path = tmp_path / "job.json"
    jf.save(str(path), sample_job())
    path.write_text(mangle(path.read_text()))
    with pytest.raises(JobfileError, match=message):
        jf.load(str(path))


def test_save_replaces_atomically_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "job.json"
    jf.save(str(path), sample_job())
    jf.save(str(path), sample_job())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json", "job.json.cache"]


def big_job(n: int) -> jf.Job:
    job = sample_job()
    cat = Catalog()
    for i in range(n):
        cat.append(
            Entry(f"d{i % 7}/f{i:06d}", FILE, i, 1_700_000_000_000_000_000 + i, 0o644, ino=i + 1), i % 3
        )
    job.catalog = cat
    return job


@pytest.mark.parametrize("cache", ["kept", "deleted"])
@pytest.mark.parametrize("extra", [-1, 0, 1, jf.ROWS_PER_CHUNK + 5])
def test_catalogs_of_several_chunks_round_trip(tmp_path, extra, cache):
    job = big_job(jf.ROWS_PER_CHUNK + extra)
    path = tmp_path / "job.json"
    jf.save(str(path), job)
    assert columns(load(path, cache).catalog) == columns(job.catalog)


def test_the_catalog_cache_holds_what_the_rows_hold(tmp_path):
    job = big_job(300)
    job.catalog.append(Entry("hard", FILE, 5, 1, 0o644, "d0/f000000", ino=7), 2)
    job.catalog.append(Entry("link \udcff", LINK, 0, 1, 0o777, "caf\u00e9 \udcfe/\n"), 2)
    path = tmp_path / "job.json"
    jf.save(str(path), job)
    cached = load(path, "kept")
    parsed = load(path, "deleted")
    assert columns(cached.catalog) == columns(parsed.catalog) == columns(job.catalog)
    assert (cached.run, cached.volumes) == (parsed.run, parsed.volumes)


def test_a_jobfile_edited_by_hand_is_read_as_edited_not_from_its_cache(tmp_path):
    path = tmp_path / "job.json"
    jf.save(str(path), sample_job())
    text = path.read_text()
    # The same length, so only the content tells the edit apart.
    path.write_text(text.replace(",12,1600000000123456789,", ",13,1600000000123456789,"))
    back = jf.load(str(path))
    assert not back.cached
    assert back.catalog.sizes[1] == 13


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: bytes([b[0] ^ 1]) + b[1:],  # a flipped bit in the columns
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # a flipped bit in the header's length
        lambda b: b[:100] + b[101:],  # a byte lost
        lambda b: b[: len(b) // 2],  # cut short (a crash while it was written)
        lambda b: b"",  # empty
        lambda b: b.replace(b'"version": 3', b'"version": 4', 1),  # from another version
        lambda b: b"\x00\xff" * 40,  # not a cache at all
    ],
)
def test_a_damaged_cache_is_ignored_and_the_rows_are_read(tmp_path, damage):
    job = big_job(100)
    path = tmp_path / "job.json"
    jf.save(str(path), job)
    cache = tmp_path / f"job.json{jf.CACHE_SUFFIX}"
    cache.write_bytes(damage(cache.read_bytes()))
    back = jf.load(str(path))
    assert not back.cached
    assert columns(back.catalog) == columns(job.catalog)


def test_write_cache_makes_the_next_load_use_it(tmp_path):
    path = tmp_path / "job.json"
    jf.save(str(path), big_job(40))
    os.unlink(f"{path}{jf.CACHE_SUFFIX}")
    job = jf.load(str(path))
    jf.write_cache(str(path), job.catalog)
    again = jf.load(str(path))
    assert again.cached and columns(again.catalog) == columns(job.catalog)


def test_a_jobfile_cut_at_the_end_of_a_row_is_refused_not_read_short(tmp_path):
    path = tmp_path / "job.json"
    jf.save(str(path), big_job(100))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2]))  # every row there, the closing "]" and "}" missing
    with pytest.raises(JobfileError, match="corrupt or truncated"):
        jf.load(str(path))
    path.write_text("".join(lines[:-10]))  # rows lost, ending in a complete row and a comma
    with pytest.raises(JobfileError, match="corrupt or truncated"):
        jf.load(str(path))


def test_a_jobfile_reformatted_by_another_tool_still_loads(tmp_path):
    job = big_job(50)
    path = tmp_path / "job.json"
    jf.save(str(path), job)
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4))
    assert jf.load(str(path)).catalog.paths == job.catalog.paths


def test_reports_written_in_chunks_are_one_valid_json_document():
    from multivolumecopy.jsonstream import ROWS_PER_CHUNK
    from multivolumecopy.jsonstream import stream as _json

    paths = [f"d/f{i} caf\u00e9 \udcff" for i in range(2 * ROWS_PER_CHUNK + 3)]
    doc = {"volumes": {"1": {"copied": paths, "renamed": [["a", "b"]]}, "2": {}}, "empty": []}
    chunks = list(_json(doc))
    assert len(chunks) > 1
    assert json.loads(b"".join(chunks)) == doc


def saved_as_version(tmp_path, job: jf.Job, version: int, columns: int) -> jf.Job:
    """``job`` saved, then rewritten as an older version wrote it (its first ``columns``
    columns), without the cache, and read back."""
    path = tmp_path / "job.json"
    jf.save(str(path), job)
    doc = json.loads(path.read_text())
    doc["version"] = version
    doc["columns"] = doc["columns"][:columns]
    doc["files"] = [row[:columns] for row in doc["files"]]
    path.write_text(json.dumps(doc))
    (tmp_path / f"job.json{jf.CACHE_SUFFIX}").unlink()
    return jf.load(str(path))


def test_a_version_1_jobfile_is_read_with_every_placed_entry_current(tmp_path):
    """Version 1 had no "stale" column: what it placed is taken as on its volume, and the next
    save writes the current version."""
    job = sample_job()
    job.catalog.volumes[1] = 2
    back = saved_as_version(tmp_path, job, 1, 8)
    path = tmp_path / "job.json"
    assert list(back.catalog.volumes) == list(job.catalog.volumes)
    assert not any(back.catalog.stale)
    jf.save(str(path), back)
    assert json.loads(path.read_text())["version"] == 3


def test_a_version_2_jobfile_is_read_with_owners_and_attributes_unknown(tmp_path):
    """Version 2 had no "uid", "gid", "xattrs": they are unknown (never taken for a change: see
    test_changes), and the next save writes them as unknown until a scan records them."""
    job = sample_job()
    job.catalog.stale[2] = 1
    back = saved_as_version(tmp_path, job, 2, 9)
    path = tmp_path / "job.json"
    assert list(back.catalog.stale) == [0, 0, 1, 0]
    assert set(back.catalog.uids) == set(back.catalog.gids) == {UNKNOWN_ID}
    assert back.catalog.xattrs == {} and not back.catalog.xattrs_known
    assert [back.catalog.meta(i) for i in range(4)] == [0, 0, 0, 0]
    jf.save(str(path), back)
    again = json.loads(path.read_text())
    assert again["version"] == 3 and not again["xattrs_read"]
    assert [row[9:] for row in again["files"]] == [[None, None, None]] * 4


def test_the_stale_mark_survives_a_save_and_its_cache(tmp_path):
    job = big_job(50)
    for i in (3, 17, 49):
        job.catalog.volumes[i] = 1
        job.catalog.stale[i] = 1
    path = tmp_path / "job.json"
    jf.save(str(path), job)
    cached = jf.load(str(path))
    assert cached.cached and cached.catalog.stale_indexes() == [3, 17, 49]
    (tmp_path / f"job.json{jf.CACHE_SUFFIX}").unlink()
    parsed = jf.load(str(path))
    assert not parsed.cached and parsed.catalog.stale_indexes() == [3, 17, 49]
    assert parsed.catalog.unsaved() == sorted({i for i in range(50) if i % 3 == 0} | {17, 49})
