"""Scanning sources: the common root, what is kept, what is left out, and what is refused."""

from __future__ import annotations

import os
import socket

import pytest

from multivolumecopy.catalog import DIR, FILE, LINK, sort_key
from multivolumecopy.errors import SourceError
from multivolumecopy.scan import resolve_sources, scan


def tree(root):
    (root / "books/deep").mkdir(parents=True)
    (root / "books/deep/b.txt").write_text("b")
    (root / "books/a.txt").write_text("a")
    (root / "books.txt").write_text("x")
    (root / "radio").mkdir()
    (root / "radio/empty").mkdir()
    os.symlink("nowhere", root / "radio/loop")
    (root / "notes.txt").write_text("n")


def test_one_directory_puts_its_contents_at_the_drive_root(tmp_path):
    tree(tmp_path)
    src = resolve_sources([str(tmp_path / "books")])
    cat = scan(src)
    assert src.root == str(tmp_path / "books")
    assert cat.paths == ["a.txt", "deep", "deep/b.txt"]


def test_several_sources_keep_their_names_below_the_common_root(tmp_path):
    tree(tmp_path)
    src = resolve_sources([str(tmp_path / "books"), str(tmp_path / "radio"), str(tmp_path / "notes.txt")])
    assert src.root == str(tmp_path)
    assert scan(src).paths == [
        "books",
        "books/a.txt",
        "books/deep",
        "books/deep/b.txt",
        "notes.txt",
        "radio",
        "radio/empty",
        "radio/loop",
    ]


def test_a_single_file_source_is_backed_up_not_ignored(tmp_path):
    tree(tmp_path)
    cat = scan(resolve_sources([str(tmp_path / "notes.txt")]))
    assert [(e.path, e.kind, e.size) for e in cat] == [("notes.txt", FILE, 1)]


def test_order_keeps_a_folder_together_before_names_that_sort_between(tmp_path):
    tree(tmp_path)
    paths = scan(resolve_sources([str(tmp_path)])).paths
    # "books.txt" sorts after everything inside "books/" although "." < "/" in ASCII.
    assert paths.index("books.txt") > paths.index("books/deep/b.txt")


def test_symlinks_are_kept_not_followed_and_empty_folders_are_kept(tmp_path):
    tree(tmp_path)
    cat = scan(resolve_sources([str(tmp_path)]))
    kinds = {e.path: (e.kind, e.target) for e in cat}
    assert kinds["radio/loop"] == (LINK, "nowhere")
    assert kinds["radio/empty"] == (DIR, None)


def test_exclude_globs_match_relative_paths_or_single_names(tmp_path):
    tree(tmp_path)
    cat = scan(resolve_sources([str(tmp_path)]), exclude=["*.txt", "radio/empty"])
    assert cat.paths == ["books", "books/deep", "radio", "radio/loop"]


def test_special_files_are_reported_and_left_out(tmp_path):
    tree(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    skipped = []
    try:
        cat = scan(resolve_sources([str(tmp_path)]), on_skip=lambda p, why: skipped.append(p))
    finally:
        sock.close()
    assert sorted(skipped) == ["fifo", "sock"]
    assert "fifo" not in cat.paths


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing"], "/missing does not exist; check the path"),
        (["books", "books"], "are the same"),
        (["books", "books/deep"], "is inside source"),
    ],
)
def test_bad_sources_are_refused_before_anything_is_written(tmp_path, args, message):
    tree(tmp_path)
    with pytest.raises(SourceError, match=message):
        resolve_sources([str(tmp_path / a) for a in args])


def test_names_that_are_not_utf8_are_scanned(tmp_path):
    name = b"caf\xe9 latin1.txt"
    with open(os.path.join(os.fsencode(tmp_path), name), "wb") as fh:
        fh.write(b"x")
    cat = scan(resolve_sources([str(tmp_path)]))
    assert os.fsencode(cat.paths[0]) == name


def test_the_walk_comes_out_in_index_order_whatever_the_names(tmp_path):
    # Names with characters that sort before "/" (space, "!", "-", ".") next to folders.
    for folder in ("src/a", "src/a/b", "other/deep/er"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("a b", "a-b", "a.b", "a!", "A", "a0", "é", "z", " lead", "a/b c", "a/b/x"):
        (tmp_path / "src" / name).write_text(name)
    (tmp_path / "other/deep/er/f").write_text("f")
    (tmp_path / "other-x").write_text("x")
    for sources in ([tmp_path / "src"], [tmp_path / "other-x", tmp_path / "src", tmp_path / "other/deep/er"]):
        paths = scan(resolve_sources([str(s) for s in sources])).paths
        assert paths == sorted(paths, key=sort_key)
        assert len(paths) == len(set(paths))
    assert {"other", "other/deep", "other/deep/er/f", "src/a/b/x", "other-x"} <= set(paths)
