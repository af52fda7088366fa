"""The catalog: its order, its entries, what is saved, and the index ranges a volume is told
to hold ("volume 2 done: holds indexes 301-655")."""

from __future__ import annotations

from array import array

import pytest

from multivolumecopy.catalog import (
    DIR,
    FILE,
    LINK,
    Catalog,
    Entry,
    ancestors,
    depth_first,
    format_ranges,
    index_ranges,
    same_version,
)
from multivolumecopy.metadata import digest


@pytest.mark.parametrize(
    "indexes,said",
    [
        (array("q", [0, 1, 2, 5, 6, 9]), "0-2, 5-6, 9"),  # in order, as a volume's indexes come
        ([9, 5, 0, 2, 1, 6], "0-2, 5-6, 9"),  # in any order
        ([3, 3, 4, 4], "3-4"),  # told twice
        ([], "none"),
    ],
)
def test_index_ranges_are_runs_of_consecutive_indexes(indexes, said):
    assert format_ranges(index_ranges(indexes)) == said


# -- the order of the catalog -------------------------------------------------------------------


def entry(path: str, kind: str = FILE, size: int = 1, **kw) -> Entry:
    return Entry(path, kind, size, kw.pop("mtime_ns", 1_000), kw.pop("mode", 0o644), **kw)


def test_a_folders_contents_come_right_after_it_before_names_that_sort_below_a_slash():
    # " ", "-" and "." sort below "/" as characters: a plain sort would cut "a"'s contents apart.
    names = ["a.b", "b", "a b", "a/b/c", "a-b", "a", "a/b", "a/c"]
    cat = Catalog.from_entries(entry(p) for p in names)
    assert cat.paths == ["a", "a/b", "a/b/c", "a/c", "a b", "a-b", "a.b", "b"]


def test_an_empty_catalog_knows_no_path():
    assert Catalog().index_of("a") is None


def test_a_catalog_out_of_order_is_sorted_with_every_column_and_found_by_its_new_indexes():
    """A jobfile edited by hand: each entry keeps its own size, time, mode, volume, inode, stale
    mark and symlink target when it moves to its place in the order."""
    cat = Catalog()
    cat.append(entry("z", size=3, mtime_ns=30, mode=0o600, ino=33), 3)
    cat.append(entry("b/link", LINK, 0, mtime_ns=20, mode=0o777, target="../z"), 2)
    cat.append(entry("b", DIR, 0, mtime_ns=10, mode=0o755), 1)
    cat.stale[0] = 1
    assert cat.index_of("z") == 0  # looked up once before the sort
    cat.sort()
    assert list(cat) == [
        entry("b", DIR, 0, mtime_ns=10, mode=0o755),
        entry("b/link", LINK, 0, mtime_ns=20, mode=0o777, target="../z"),
        entry("z", size=3, mtime_ns=30, mode=0o600),
    ]
    assert (list(cat.volumes), list(cat.stale), list(cat.inodes)) == ([1, 2, 3], [0, 0, 1], [0, 0, 33])
    assert (cat.index_of("z"), cat.index_of("b"), cat.index_of("b/link")) == (2, 0, 1)


def test_a_symlink_entry_carries_its_target_and_a_file_none():
    cat = Catalog.from_entries([entry("l", LINK, 0, target="t"), entry("f")])
    assert cat.entry(1).target == "t" and cat.entry(0).target is None


# -- hard links ---------------------------------------------------------------------------------


def test_a_hard_link_leads_back_to_the_first_file_of_its_group_and_nothing_else_does():
    cat = Catalog()
    cat.append(entry("a"))  # the first of the group: stored
    cat.append(entry("b", target="a"))  # linked to "a" on the drive
    cat.append(entry("c"))  # a plain file
    cat.append(entry("l", LINK, 0, target="a"))  # a symlink to "a" is not a hard link
    cat.append(entry("x", target="gone"))  # its leader is not in the job (excluded)
    assert [cat.leader(i) for i in range(len(cat))] == [None, 0, None, None, None]


def test_total_bytes_counts_file_data():
    cat = Catalog.from_entries([entry("a", size=5), entry("b", size=7), entry("d", DIR, 0)])
    assert cat.total_bytes() == 12


# -- saved, unsaved, stale ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "volumes,stale,unsaved",
    [
        ([1, 2, 3], [0, 0, 0], []),  # every entry on its volume: all saved
        ([1, 0, 3], [0, 0, 0], [1]),  # one on no volume yet
        ([1, 2, 3], [0, 1, 0], [1]),  # one whose volume holds an older version
        ([0, 2, 3], [0, 0, 1], [0, 2]),
    ],
)
def test_an_entry_is_saved_only_on_a_volume_and_not_stale(volumes, stale, unsaved):
    cat = Catalog()
    for n, (v, s) in enumerate(zip(volumes, stale)):
        cat.append(entry(f"f{n}"), v)
        cat.stale[n] = s
    assert cat.unsaved() == unsaved
    assert [i for i in range(len(cat)) if not cat.saved(i)] == unsaved


def test_stale_entries_side_by_side_are_all_found():
    cat = Catalog.from_entries(entry(f"f{n}") for n in range(6))
    for i in (0, 1, 2, 5):
        cat.stale[i] = 1
    assert cat.stale_indexes() == [0, 1, 2, 5]


# -- same version -------------------------------------------------------------------------------

FAT = 2_000_000_000  # a FAT drive keeps mtimes to 2 s


@pytest.mark.parametrize(
    "mine,other,granularity,same",
    [
        ((FILE, 5, 10, None), (FILE, 5, 10, None), 1, True),
        ((FILE, 5, 10, None), (FILE, 6, 10, None), 1, False),  # another size
        ((FILE, 5, 10, None), (FILE, 5, 11, None), 1, False),  # another time
        ((FILE, 5, 10, None), (FILE, 5, 10 + FAT - 1, None), FAT, True),  # same at the drive's 2 s
        ((FILE, 0, 10, None), (DIR, 0, 10, None), 1, False),  # a file became a folder
        ((DIR, 0, 10, None), (DIR, 0, 99, None), 1, True),  # a folder's time is metadata
        ((LINK, 0, 10, "t"), (LINK, 0, 10, "t"), 1, True),
        ((LINK, 0, 10, "t"), (LINK, 0, 10, "u"), 1, False),  # re-pointed
        ((LINK, 0, 10, "t"), (LINK, 0, 11, "t"), 1, False),  # re-made
        ((LINK, 0, 10, "t"), (LINK, 0, 10 + FAT - 1, "t"), FAT, True),
        ((LINK, 0, 10, "t"), (FILE, 0, 10, None), 1, False),
    ],
)
def test_same_version_by_kind(mine, other, granularity, same):
    assert same_version(*mine, *other, granularity) is same


# -- folders above paths, deepest first ---------------------------------------------------------


@pytest.mark.parametrize(
    "paths,folders",
    [
        (["top"], set()),
        (["a/b"], {"a"}),
        (["a/b/c/d"], {"a", "a/b", "a/b/c"}),
        (["ab/cd/ef", "ab/cd/gh", "ab/x", "y/z"], {"ab", "ab/cd", "y"}),  # shared ones once
        (["a/b", "a/b/c/d"], {"a", "a/b", "a/b/c"}),  # an ancestor met first, the rest still found
    ],
)
def test_ancestors_are_every_folder_above_the_paths(paths, folders):
    assert ancestors(paths) == folders


def test_folders_are_taken_deepest_first_whatever_their_names():
    assert depth_first(["b", "a/b", "c/d/e", "z/y", "a"]) == ["c/d/e", "a/b", "z/y", "b", "a"]


def test_an_entrys_owner_group_and_attributes_come_back_with_their_digest():
    c = Catalog()
    c.append(Entry("a", FILE, 1, 1, 0o644, uid=5, gid=6, xattrs="user.x=1"))
    c.append(Entry("b", FILE, 1, 1, 0o644, uid=5, gid=6))
    e = c.entry(0)
    assert (e.uid, e.gid, e.xattrs, e.meta) == (5, 6, "user.x=1", digest(5, 6, "user.x=1"))
    assert c.meta(0) == e.meta != c.meta(1) == c.entry(1).meta == digest(5, 6, None) != 0
