"""A fileserver's metadata: owners and groups, POSIX ACLs, extended attributes, set-user-ID and
set-group-ID bits, kept on ext4 drives, given back by --restore, and updated on the drives when
only they change (issue 16).  The oracle is rsync -naHAXc, which shares no code with the tool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import needs_root
from helpers import USER, as_user, files_on, reachable, run_mvc

pytestmark = needs_root

ACL_TOOLS = pytest.mark.skipif(
    shutil.which("setfacl") is None or shutil.which("setfattr") is None,
    reason="needs setfacl and setfattr (Debian packages acl and attr; tests/run installs them)",
)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True)


def fileserver_tree(src: Path) -> None:
    """A share as a fileserver has it: several owners and groups, an access ACL on a file, a
    default ACL on a set-group-ID folder, user.* attributes on a file and a folder, a
    set-user-ID program, hard links, a symlink with its own owner, a FIFO; enough data for three
    small drives."""
    (src / "shared").mkdir(parents=True)
    (src / "home/alice").mkdir(parents=True)
    (src / "home/bob").mkdir(parents=True)
    for n in range(6):
        (src / "home/alice" / f"photo {n}.jpg").write_bytes(os.urandom(300_000 + n * 1000))
        (src / "home/bob" / f"song {n}.ogg").write_bytes(os.urandom(200_000 + n * 1000))
        os.chown(src / "home/alice" / f"photo {n}.jpg", 1001, 1001)
        os.chown(src / "home/bob" / f"song {n}.ogg", 1002, 100)
    os.chown(src / "home/alice", 1001, 1001)
    os.chown(src / "home/bob", 1002, 1002)
    os.chmod(src / "home/bob", 0o750)
    (src / "shared/plan.txt").write_text("the plan\n")
    os.chown(src / "shared/plan.txt", 1001, 2000)
    sh("setfacl", "-m", "u:1002:rw,g:2001:r", str(src / "shared/plan.txt"))  # an access ACL
    os.chown(src / "shared", 0, 2000)
    os.chmod(src / "shared", 0o2775)  # set-group-ID folder with a default ACL
    sh("setfacl", "-d", "-m", "g:2000:rwx,u:1001:rwx", str(src / "shared"))
    sh("setfacl", "-m", "g:2000:rwx", str(src / "shared"))
    sh("setfattr", "-n", "user.origin", "-v", "scanner 3", str(src / "shared/plan.txt"))
    sh("setfattr", "-n", "user.DOSATTRIB", "-v", "0sAAAEAAQAAAA=", str(src / "home/alice"))
    (src / "bin").mkdir()
    (src / "bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chown(src / "bin/tool", 0, 1003)
    os.chmod(src / "bin/tool", 0o4755)  # set-user-ID (a chown after the data would clear it)
    (src / "bin/group-tool").write_bytes(b"#!/bin/sh\n")
    os.chown(src / "bin/group-tool", 1004, 1004)
    os.chmod(src / "bin/group-tool", 0o2750)
    (src / "links").mkdir()
    (src / "links/a").write_text("linked\n")
    os.link(src / "links/a", src / "links/b")
    os.chown(src / "links/a", 1005, 1005)
    os.symlink("../shared/plan.txt", src / "links/to plan")
    os.lchown(src / "links/to plan", 1006, 1007)  # the link's own owner
    os.chmod(src / "links", 0o1777)  # sticky
    os.mkfifo(src / "shared/pipe", 0o660)  # a FIFO: on no drive, recorded, made by --restore
    os.chown(src / "shared/pipe", 1001, 2000)


BY_HAND = ("--exclude=/shared/pipe",)  # no drive holds a special file: only --restore makes it


def metadata_differences(src: Path, other: Path, *leave_out: str) -> str:
    """What rsync -naHAXc sees differ (content, owners, groups, ACLs, attributes, modes,
    times, hard links, special files, extras): nothing listed means the copy has it all.  The
    top folder is a mount point or --to, not part of the backup: it gets the source's mode and
    times.  ``leave_out``: rsync filters (the drives copied back by hand hold no FIFO)."""
    st = os.stat(src)
    os.chmod(other, st.st_mode & 0o7777)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = subprocess.run(
        ["rsync", "-naHAXc", "--delete", "--itemize-changes", *leave_out, f"{src}/", f"{other}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip()


def copied_back(drives, images: list[Path], dest: Path) -> Path:
    """The drives copied back by hand with rsync -aHAX, as docs/usage.rst tells, into one folder."""
    dest.mkdir()
    with drives.inspect(images) as points:
        for p in points:
            sh("rsync", "-aHAX", "--exclude=/.mvcopy-*", "--exclude=/lost+found", f"{p}/", f"{dest}/")
    return dest


def inodes_on(drives, images: list[Path]) -> dict[tuple[int, str], int]:
    with drives.inspect(images) as points:
        return {(n, f): os.lstat(p / f).st_ino for n, p in enumerate(points) for f in files_on(p)}


@pytest.fixture
def three_mounted(tmp_path, drives):
    """Three small ext4 drives attached at once."""
    images = [drives.image(f"d{i}", 1800) for i in range(1, 4)]
    points = [drives.mount(img, tmp_path / f"usb{n}") for n, img in enumerate(images, 1)]
    return images, points


def run_backup(tmp_path: Path, points: list[Path], *extra: str):
    outs = [x for p in points for x in ("-o", str(p))]
    return run_mvc(str(tmp_path / "src"), *outs, "-f", str(tmp_path / "job.json"), *extra, cwd=tmp_path)


def restore(tmp_path: Path, points: list[Path], to: Path, *extra: str):
    outs = [x for p in points for x in ("-o", str(p))]
    return run_mvc(
        "--restore", "--to", str(to), *outs, "-f", str(tmp_path / "job.json"), *extra, cwd=tmp_path
    )


@ACL_TOOLS
def test_owners_acls_and_attributes_survive_on_the_drives_and_through_restore(
    tmp_path, drives, three_mounted
):
    images, points = three_mounted
    src = tmp_path / "src"
    fileserver_tree(src)
    (src / "shared/sub/deeper").mkdir(parents=True)
    (src / "shared/sub/deeper/note").write_text("in a folder under a default ACL\n")
    (src / "a root file").write_text("root's, first in index order: on the first drive\n")
    # A drive whose root passes a default ACL and its group on to what is made in it: the
    # copies must still have exactly the source's.
    os.chown(points[0], 0, 4321)
    os.chmod(points[0], 0o2775)
    sh("setfacl", "-d", "-m", "u:4321:rwx", str(points[0]))

    first = run_backup(tmp_path, points)

    assert first.returncode == 0, first.stderr
    used = [img for img, p in zip(images, points) if (p / ".mvcopy-label.json").exists()]
    assert len(used) == 3, "the test data should need the three drives"
    assert "not kept" not in first.stderr
    restored = tmp_path / "restored"
    r = restore(tmp_path, points, restored)
    assert r.returncode == 0, r.stderr
    assert metadata_differences(src, restored) == ""
    for p in points:
        drives.umount(p)
    assert metadata_differences(src, copied_back(drives, images, tmp_path / "by hand"), *BY_HAND) == ""


@ACL_TOOLS
def test_a_metadata_change_alone_updates_the_drives_without_copying_data(tmp_path, drives, three_mounted):
    images, points = three_mounted
    src = tmp_path / "src"
    fileserver_tree(src)
    assert run_backup(tmp_path, points).returncode == 0
    for p in points:
        drives.umount(p)
    before = inodes_on(drives, images)
    # chown, chgrp, setfacl, setfattr: the ctime moves, the mtime and the data do not.
    os.chown(src / "home/alice/photo 2.jpg", 1002, 1002)
    os.chown(src / "home/bob", 1002, 2000)
    sh("setfacl", "-m", "u:1003:r", str(src / "home/bob/song 4.ogg"))
    sh("setfacl", "-d", "-m", "u:1009:r", str(src / "home/alice"))
    sh("setfattr", "-n", "user.tag", "-v", "red", str(src / "bin/group-tool"))
    sh("setfattr", "-x", "user.origin", str(src / "shared/plan.txt"))
    os.lchown(src / "links/to plan", 1008, 1008)
    os.chmod(src / "bin/tool", 0o6755)
    for img, p in zip(images, points):
        drives.mount(img, p)

    again = run_backup(tmp_path, points)

    assert again.returncode == 0, again.stderr
    assert "8 with new metadata only" in again.stderr and "wrote 0 entries (0 B)" in again.stderr
    for p in points:
        drives.umount(p)
    assert inodes_on(drives, images) == before  # no file was written again
    assert metadata_differences(src, copied_back(drives, images, tmp_path / "by hand"), *BY_HAND) == ""
    for img, p in zip(images, points):
        drives.mount(img, p)
    restored = tmp_path / "restored"
    r = restore(tmp_path, points, restored)
    assert r.returncode == 0, r.stderr
    assert metadata_differences(src, restored) == ""


@ACL_TOOLS
def test_an_exfat_drive_records_what_it_cannot_hold_and_restore_gives_it_back(tmp_path, drives):
    """exFAT holds no owner, ACL nor attribute: the records do, the run says so once and exits
    0, and --restore gives all of it back (the metadata-only re-run too)."""
    for tool in ("mkfs.exfat", "mount.exfat-fuse"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install exfatprogs and exfat-fuse (tests/run does, as root)")
    stick = drives.mount_exfat(drives.exfat("stick"), tmp_path / "stick")
    src = tmp_path / "src"
    fileserver_tree(src)
    # (A hard link the stick cannot make waits for the next drive: not this test's subject.)
    (src / "links/b").unlink()

    first = run_backup(tmp_path, [stick])

    assert first.returncode == 0, first.stderr
    told = [line for line in first.stderr.splitlines() if "not kept on volume" in line]
    assert len(told) == 1 and "owners and groups" in told[0] and "--restore sets them" in told[0]
    r = restore(tmp_path, [stick], tmp_path / "restored")
    assert r.returncode == 0, r.stderr
    assert metadata_differences(src, tmp_path / "restored") == ""
    os.chown(src / "home/alice/photo 1.jpg", 1003, 1003)
    sh("setfattr", "-n", "user.tag", "-v", "green", str(src / "home/bob/song 0.ogg"))
    again = run_backup(tmp_path, [stick])
    assert again.returncode == 0, again.stderr
    assert "2 with new metadata only" in again.stderr and "wrote 0 entries (0 B)" in again.stderr
    r = restore(tmp_path, [stick], tmp_path / "restored again")
    assert r.returncode == 0, r.stderr
    assert metadata_differences(src, tmp_path / "restored again") == ""


@ACL_TOOLS
def test_a_user_without_root_keeps_what_it_can_says_once_what_not_and_exits_0(tmp_path, drives):
    """Its own tree onto a drive it owns: data, modes, its user.* attributes and ACLs are kept;
    a group it is not in cannot be given: one line says so, and the run exits 0."""
    work = tmp_path / "user"
    work.mkdir()
    stick = drives.mount(drives.image("d1", 4096), work / "usb")
    src = work / "src"
    (src / "sub").mkdir(parents=True)
    for n in range(30):
        (src / "sub" / f"f{n}").write_text(f"file {n}\n")
        sh("setfattr", "-n", "user.tag", "-v", f"t{n}", str(src / "sub" / f"f{n}"))
    sh("setfacl", "-m", "u:1002:r", str(src / "sub/f0"))
    os.symlink("sub/f1", src / "link")
    sh("chown", "-R", "-h", f"{USER}:{USER}", str(work))
    os.chown(src / "sub", USER, 2345)  # a group the user is not in: cannot be kept by the user

    with reachable(work):
        r = as_user([str(src), "-o", str(stick), "-f", str(work / "job.json")], work)

    assert r.returncode == 0, r.stderr
    told = [line for line in r.stderr.splitlines() if "not kept" in line]
    assert len(told) == 1 and "owners and groups" in told[0] and "run as root" in told[0], r.stderr
    rsync = subprocess.run(
        ["rsync", "-naHAXc", "--itemize-changes", "--exclude=/.mvcopy-*", "--exclude=/lost+found",
         f"{src}/", f"{stick}/"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    assert [line for line in rsync if line and not line.endswith(" ./")] == [".d.....g... sub/"]
