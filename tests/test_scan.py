"""Scanning sources: the common root, what is kept, what is left out, and what is refused."""

from __future__ import annotations

import os
import socket
import time

import psutil
import pytest

from multivolumecopy.catalog import DIR, FILE, LINK, sort_key
from multivolumecopy.errors import SourceError
from multivolumecopy.scan import resolve_sources, scan
from multivolumecopy.specials import SPECIAL


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
        cat = scan(
            resolve_sources([str(tmp_path)]), on_skip=lambda p, why, failed: skipped.append((p, failed))
        )
    finally:
        sock.close()
    assert sorted(skipped) == [("fifo", False), ("sock", False)]  # left out by design, not failed
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


# -- the scan shared among processes ------------------------------------------------------


def varied_tree(root):
    """Folders at several depths (so the work is shared below the top level), hard links
    across folders that different processes walk, symlinks, a fifo and an excluded name."""
    for top in ("a", "b", "c d", "c-e", "only"):
        for sub in ("x", "y/z", "y/z/deeper"):
            (root / top / sub).mkdir(parents=True, exist_ok=True)
            for n in range(3):
                (root / top / sub / f"f{n}.txt").write_text(f"{top}/{sub}/{n}")
    (root / "top.txt").write_text("t")
    os.link(root / "c d/x/f0.txt", root / "a/y/z/deeper/linked")
    os.link(root / "c d/x/f0.txt", root / "b/x/linked too")
    os.symlink("../x", root / "b/y/back")
    os.mkfifo(root / "c-e/x/fifo")
    (root / "only/x/skip.me").write_text("left out")


def scanned(sources, processes):
    skipped = []
    cat = scan(
        sources, ["*.me"], lambda p, why, failed: skipped.append((p, why, failed)), processes=processes
    )
    return cat, skipped


def columns(cat):
    return (cat.paths, cat.kinds, cat.sizes, cat.mtimes, cat.modes, cat.inodes, cat.targets, cat.volumes)


@pytest.fixture
def walked_here(monkeypatch, tmp_path):
    """Numbers of the folders this (the test's) process walks.  Before each, it waits until a
    forked helper walks one too, so that helpers certainly take some however loaded the
    machine; helpers can also be told to die."""
    from multivolumecopy import scan as scan_module

    me = os.getpid()
    here = Walked()
    helper_walks = tmp_path / "a helper walks"
    run_task = scan_module.Scan._run

    def run(self, n):
        if os.getpid() != me:
            helper_walks.touch()
            if here.helpers_die:
                os._exit(3)  # as a helper killed by the OOM killer would
        else:
            here.append(n)
            deadline = time.monotonic() + 60
            while not helper_walks.exists() and time.monotonic() < deadline:
                time.sleep(0.001)
        return run_task(self, n)

    monkeypatch.setattr(scan_module.Scan, "_run", run)
    return here


class Walked(list):
    helpers_die = False


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children()}


@pytest.mark.parametrize("processes", [2, 3, 8])
def test_a_scan_shared_among_processes_gives_the_same_catalog_and_reports(tmp_path, processes, walked_here):
    varied_tree(tmp_path / "src")
    sources = resolve_sources([str(tmp_path / "src")])
    alone, skipped_alone = scanned(sources, 1)
    del walked_here[:]
    shared, skipped_shared = scanned(sources, processes)
    assert len(walked_here) < 10  # of the ten folders shared, helpers walked some
    assert columns(shared) == columns(alone)
    fifo = ("c-e/x/fifo", SPECIAL, False)
    assert skipped_shared == skipped_alone == [fifo]
    # The first of a hard-link group in index order leads it, whoever walked it.
    assert shared.targets[shared.paths.index("b/x/linked too")] == "a/y/z/deeper/linked"
    assert shared.targets[shared.paths.index("c d/x/f0.txt")] == "a/y/z/deeper/linked"
    assert "only/x/skip.me" not in shared.paths


def test_several_sources_are_shared_among_processes_too(tmp_path):
    varied_tree(tmp_path)
    sources = resolve_sources([str(tmp_path / "b"), str(tmp_path / "a/y"), str(tmp_path / "top.txt")])
    assert columns(scanned(sources, 3)[0]) == columns(scanned(sources, 1)[0])


def test_a_helper_that_dies_costs_time_not_entries(tmp_path, walked_here):
    varied_tree(tmp_path / "src")
    sources = resolve_sources([str(tmp_path / "src")])
    alone, _ = scanned(sources, 1)
    del walked_here[:]
    walked_here.helpers_die = True
    before = children()
    shared, _ = scanned(sources, 2)
    assert len(walked_here) == 10  # the helper died: every folder was walked here
    assert columns(shared) == columns(alone)
    assert children() == before


def test_a_scan_abandoned_before_its_result_leaves_no_process_behind(tmp_path):
    from multivolumecopy.scan import Scan

    varied_tree(tmp_path / "src")
    before = children()
    with Scan(resolve_sources([str(tmp_path / "src")]), processes=3) as scanning:
        assert len(children() - before) == 2
        del scanning  # the caller failed (a bad jobfile, Ctrl-C) before asking for the result
    assert children() == before


def test_more_folders_than_the_pipe_holds_numbers_for_are_shared_in_runs(tmp_path, monkeypatch, walked_here):
    from multivolumecopy import scan as scan_module

    varied_tree(tmp_path / "src")
    sources = resolve_sources([str(tmp_path / "src")])
    alone, _ = scanned(sources, 1)
    monkeypatch.setattr(scan_module, "MAX_TOKENS", 3)  # 10 folders, 3 numbers: 4 folders a number
    del walked_here[:]
    assert columns(scanned(sources, 2)[0]) == columns(alone)
    assert len(walked_here) in (0, 2, 4, 6, 8), walked_here  # whole runs of 4, 4 and 2: the helper took some
