"""A restore never writes through a symlink it did not make, in ``--to`` or on the drive.

Run as root into a folder a user controls, a symlink planted where a folder or a file of the tree
goes would otherwise let that user have files written, chmod-ed, timed and renamed anywhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from helpers import run_mvc
from multivolumecopy.errors import ExitCode

T = 1_500_000_000_123_456_789


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def snapshot(top: Path) -> dict[str, tuple]:
    """Every entry below ``top`` (and ``top``): kind and mode, size, mtime, and content or target."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in ["", *dirnames, *filenames]:
            p = Path(dirpath, name) if name else Path(dirpath)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = sorted(os.listdir(p))
            found[str(p.relative_to(top))] = (st.st_mode, st.st_size, st.st_mtime_ns, what)
    return found


def problems(stderr: str) -> dict[str, str]:
    """The summary's ``path: why`` lines under "could not be restored"."""
    tail = stderr.split("could not be restored:\n", 1)[1]
    return dict(m.groups() for m in re.finditer(r"^    (.+?): (.+)$", tail, re.M))


def backed_up(tmp_path: Path, files: dict[str, str], links: dict[str, str]) -> Path:
    src = tmp_path / "src"
    for rel, text in files.items():
        write(src / rel, text)
    for rel, target in links.items():
        os.symlink(target, src / rel)
    for dirpath, dirnames, filenames in os.walk(src):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(T, T), follow_symlinks=False)
    (tmp_path / "usb").mkdir()
    result = run_mvc("src", "-o", "usb", "-f", "job.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return src


def test_a_restore_never_writes_through_a_symlink_planted_at_any_level_of_the_target(tmp_path):
    files = {
        "a.txt": "top\n",
        "docs/a.txt": "docs a\n",
        "docs/inner/b.txt": "docs b\n",
        "n1/ok.txt": "fine\n",
        "n1/n2/c.txt": "nested\n",
        "deep/x/y/z.txt": "deep\n",
        "f1.txt": "one\n",
        "f2.txt": "two\n",
        "dang.txt": "dangling\n",
        "keep/file.txt": "kept\n",
    }
    src = backed_up(tmp_path, files, {"lnk": "a.txt"})
    out = tmp_path / "outside"
    write(out / "victim.txt", "do not touch\n", 0o600)
    write(out / "docs-target/mine.txt", "mine\n")
    write(out / "docs-target/inner/old.txt", "old\n")
    write(out / "tmp-victim", "tmp\n")
    for d in ("victim-dir", "nested", "deepdir"):
        (out / d).mkdir()
    for dirpath, dirnames, filenames in os.walk(out):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(T - 7, T - 7), follow_symlinks=False)
    os.chmod(out / "docs-target/inner", 0o755)
    to = tmp_path / "to"
    (to / "n1").mkdir(parents=True)
    (to / "deep").mkdir()
    planted = {
        "docs": out / "docs-target",  # a symlink to a folder where a folder goes, at the top
        "n1/n2": out / "nested",  # ... and nested
        "deep/x": out / "deepdir",  # ... with more levels below it
        "f1.txt": out / "victim.txt",  # a symlink to a file where a file goes
        "f2.txt": out / "victim-dir",  # a symlink to a folder where a file goes
        "dang.txt": out / "created-by-restore.txt",  # a dangling one: opening it would create that
        "lnk": out / "victim.txt",  # where a symlink goes
    }
    for k in range(40):  # the restore's own temporary names
        planted[f".mvcopy-restore-{k}.tmp"] = out / "tmp-victim"
    for rel, target in planted.items():
        os.symlink(target, to / rel)
    os.symlink("to", tmp_path / "to-link")  # --to itself may be a symlink: the user's choice
    before = snapshot(out)

    result = run_mvc("--restore", "--to", "to-link", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert snapshot(out) == before  # nothing outside --to changed: names, contents, modes, times
    assert result.returncode == ExitCode.FILES_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    said = problems(result.stderr)
    blocked_below = {
        "docs/a.txt": "docs",
        "docs/inner": "docs",
        "docs/inner/b.txt": "docs",
        "n1/n2/c.txt": "n1/n2",
        "deep/x/y": "deep/x",
        "deep/x/y/z.txt": "deep/x",
    }
    in_place = ["docs", "n1/n2", "deep/x", "f1.txt", "f2.txt", "dang.txt", "lnk"]
    assert set(said) == set(blocked_below) | set(in_place), said
    for rel, where in blocked_below.items():
        assert said[rel].startswith(
            f"{where} is a symlink (to '{planted[where]}'), not a folder; it was not followed"
        )
    for rel in in_place:
        assert said[rel].startswith(f"a symlink (to '{planted[rel]}') is "), said[rel]
        assert "it was not followed" in said[rel]
        assert os.readlink(to / rel) == str(planted[rel])  # left as it was
    for rel in ("a.txt", "n1/ok.txt", "keep/file.txt"):
        assert (to / rel).read_text() == files[rel]
        assert os.stat(to / rel).st_mtime_ns == os.stat(src / rel).st_mtime_ns
    assert not [n for n in os.listdir(to) if n.startswith(".mvcopy-restore") and not os.path.islink(to / n)]


def test_a_restore_does_not_follow_a_symlink_planted_on_the_drive(tmp_path):
    files = {"docs2/x.txt": "x\n", "docs2/y.txt": "y\n", "top.txt": "top\n", "other.txt": "other\n"}
    backed_up(tmp_path, files, {})
    usb = tmp_path / "usb"
    # Copies identical in every way, elsewhere: followed, they would pass every check.
    elsewhere = tmp_path / "elsewhere"
    for rel in ("docs2/x.txt", "docs2/y.txt", "top.txt"):
        elsewhere.joinpath(rel).parent.mkdir(parents=True, exist_ok=True)
        os.rename(usb / rel, elsewhere / rel)
    os.rmdir(usb / "docs2")
    os.symlink(elsewhere / "docs2", usb / "docs2")
    os.symlink(elsewhere / "top.txt", usb / "top.txt")
    before = snapshot(elsewhere)

    result = run_mvc("--restore", "--to", "back", "-o", "usb", "-f", "job.json", cwd=tmp_path)
    checked = run_mvc("--verify", "--checksum", "-o", "usb", "-f", "job.json", cwd=tmp_path)

    assert result.returncode == ExitCode.FILES_FAILED, result.stderr
    said = problems(result.stderr)
    assert set(said) == {"docs2/x.txt", "docs2/y.txt", "top.txt"}, said
    assert said["docs2/x.txt"].startswith(
        f"on volume 1, docs2 is a symlink (to '{elsewhere / 'docs2'}'), not a folder; it was not followed"
    )
    assert said["top.txt"] == (
        f"on volume 1, a symlink (to '{elsewhere / 'top.txt'}') is where this file should be; "
        "it was not followed"
    )
    back = tmp_path / "back"
    assert (back / "other.txt").read_text() == "other\n"
    assert not (back / "top.txt").exists() and os.listdir(back / "docs2") == []
    assert snapshot(elsewhere) == before
    assert checked.returncode == ExitCode.VERIFY_FAILED, checked.stdout
    assert re.search(r"^different\s+\d+\s+docs2/x.txt: docs2 on the drive is a symlink", checked.stdout, re.M)
    assert re.search(r"^different\s+\d+\s+top.txt: not a regular file on the drive", checked.stdout, re.M)
