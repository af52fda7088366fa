"""Test helpers: real drives, a drive bay, a source tree, and comparisons done by real tools."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pexpect
import pytest

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The commands README.rst opens with (its first bash block, up to its first blank line)."""
    text = (REPO / "README.rst").read_text()
    block = text.split(".. code-block:: bash", 1)[1]
    lines = [line.strip() for line in block.splitlines()[1:]]
    cmds = []
    for line in lines:
        if not line and cmds:
            break
        if line:
            cmds.append(line)
    return cmds


def checkout_copy(dest: Path) -> Path:
    """This repository's files as a fresh clone would have them, with their uncommitted edits and
    new files (not ignored ones: no build/, .venv or caches), copied to ``dest``."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout of the project and git: copies what a clone holds")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    for rel in filter(None, listed.decode().split("\0")):
        if os.path.lexists(REPO / rel):  # a file deleted and not yet committed is not copied
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel, follow_symlinks=False)
    return dest


def mvc_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("MVCOPY_NEXT", None)
    if extra:
        env.update(extra)
    return env


def mvc_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "multivolumecopy", *args]


def mvc_pty(*args: str, cwd: Path, columns: int, lines: int = 24, timeout: float = 60) -> pexpect.spawn:
    """The CLI in a real pseudo-terminal ``columns`` wide, as an operator runs it."""
    argv = mvc_argv(*args)
    return pexpect.spawn(
        argv[0],
        argv[1:],
        cwd=str(cwd),
        env=mvc_env(),
        encoding="utf-8",
        timeout=timeout,
        dimensions=(lines, columns),
    )


def source_of(tmp_path: Path, files: dict[str, str]) -> Path:
    """A source tree at ``tmp_path/src`` holding ``files`` (path: text), and an empty ``usb``."""
    src = tmp_path / "src"
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    (tmp_path / "usb").mkdir()
    return src


def run_mvc(
    *args: str, cwd: Path, timeout: float = 180, env_extra: Optional[dict[str, str]] = None, **kw
) -> subprocess.CompletedProcess:
    return subprocess.run(
        mvc_argv(*args),
        cwd=cwd,
        env=mvc_env(env_extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def bay_args(tmp_path: Path, bay: Bay, *extra: str) -> list[str]:
    """The backup command of most drive tests: ``tmp_path/src`` through the bay, swapped by script."""
    return [
        str(tmp_path / "src"),
        "-o",
        str(bay.point),
        "-f",
        str(tmp_path / "job.json"),
        "--new-volume-script",
        bay.script,
        *extra,
    ]


def backup(tmp_path: Path, bay: Bay, *extra: str) -> subprocess.CompletedProcess:
    return run_mvc(*bay_args(tmp_path, bay, *extra), cwd=tmp_path)


def restored(drives: Drives, images: list[Path], dest: Path) -> Path:
    """Restore by hand from every image (mounted read-only), as docs/usage.rst tells."""
    with drives.inspect(images) as points:
        return union_of(points, dest)


class Drives:
    """Small real filesystems made from image files, each mounted through a loop device
    attached here and detached as soon as it is unmounted.  ``mount -o loop`` leaves the
    detach to the kernel (autoclear), which does it a little later: the next mount of the same
    image could meet the device still being torn down ("already mounted or mount point
    busy"), a read-only mount is refused while a read-write one is not yet gone, and a
    read-write one can reuse a read-only device on its way out (and be read-only)."""

    DEADLINE = 10.0  # seconds an image may take to be detached before mounting it fails

    def __init__(self, top: Path):
        self.top = top
        top.mkdir(parents=True, exist_ok=True)
        self.images: list[Path] = []
        self.loops: dict[str, Path] = {}  # loop devices attached here, and their images
        self._n = 0

    def image(self, name: str, size_kib: int = 4096, label: str = "") -> Path:
        """An ext4 image of ``size_kib`` (sparse), with the filesystem label ``label`` if given."""
        img = self.top / f"{name}.img"
        with open(img, "wb") as fh:
            fh.truncate(size_kib * 1024)
        subprocess.run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-b",
                "1024",
                "-O",
                "^has_journal",
                "-N",
                "1024",
                "-e",
                "remount-ro",
                *(["-L", label] if label else []),
                str(img),
            ],
            check=True,
        )
        self.images.append(img)
        return img

    def exfat(self, name: str, size_kib: int = 65536) -> Path:
        img = self.top / f"{name}.exfat.img"
        with open(img, "wb") as fh:
            fh.truncate(size_kib * 1024)
        subprocess.run(["mkfs.exfat", str(img)], check=True, stdout=subprocess.DEVNULL)
        self.images.append(img)
        return img

    def mount_exfat(self, image: Path, point: Path) -> Path:
        """An exFAT USB stick as Linux users meet it: through FUSE (exfat-fuse) on a loop device."""
        point.mkdir(parents=True, exist_ok=True)
        dev = self.attach(image)
        subprocess.run(["mount.exfat-fuse", dev, str(point)], check=True, stderr=subprocess.DEVNULL)
        return point

    def mount(self, image: Path, point: Path, readonly: bool = False) -> Path:
        """Mount ``image`` at ``point`` through a loop device of its own."""
        point.mkdir(parents=True, exist_ok=True)
        dev = self.attach(image, readonly)
        try:
            self._mount(dev, point, readonly)
        except BaseException:
            self.detach(dev)
            raise
        return point

    def _mount(self, dev: str, point: Path, readonly: bool) -> None:
        cmd = ["mount", *(["-o", "ro"] if readonly else []), dev, str(point)]
        for attempt in range(5):
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode == 0:
                return
            if "already mounted or mount point busy" not in result.stderr:
                break
            time.sleep(0.1 * (attempt + 1))  # something of the last mount not gone yet: try again
        pytest.fail(f"cannot mount {dev} ({self.loops.get(dev)}) on {point}: {result.stderr.strip()}")

    def umount(self, point: Path) -> None:
        """Unmount ``point``, detach its loop device if it is one of ours, and wait until the
        kernel has let go of it (ours or ``mount -o loop``'s): right after ``umount`` the
        device can still be open, and its detach is then left to happen later."""
        sources = subprocess.run(
            ["findmnt", "-no", "SOURCE", "--mountpoint", str(point)], capture_output=True, text=True
        ).stdout.split()
        dev = sources[-1] if sources else ""  # mounts stacked on one point: umount takes the top
        backing = _backing_file(dev)
        subprocess.run(["umount", str(point)], check=True)
        if dev in self.loops:
            self.detach(dev)
        deadline = time.monotonic() + self.DEADLINE
        while backing and _backing_file(dev) == backing and time.monotonic() < deadline:
            time.sleep(0.01)  # not there by the deadline: the next attach says so

    def attach(self, image: Path, readonly: bool = False) -> str:
        """Attach a loop device to ``image`` once no other is attached to it; returns its path."""
        mounted = _mount_sources()
        for dev, img in list(self.loops.items()):
            if img == image and dev not in mounted:  # ours, unmounted by someone else (a swap script)
                self.detach(dev)
        left = self.wait_detached(image)
        if left:
            pytest.fail(
                f"{image} is still attached to {', '.join(left)} after {self.DEADLINE:.0f} s: "
                "it is mounted somewhere, or its last unmount is not finished"
            )
        cmd = ["losetup", "--find", "--show", *(["--read-only"] if readonly else []), str(image)]
        dev = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        self.loops[dev] = image
        return dev

    def detach(self, dev: str) -> None:
        """Detach one of our loop devices (the kernel finishes it later if it is still busy)."""
        self.loops.pop(dev, None)
        subprocess.call(["losetup", "-d", dev], stderr=subprocess.DEVNULL)

    def attached(self, image: Path) -> list[str]:
        """The loop devices attached to ``image``, ours or not."""
        out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True).stdout
        return [line.split(":", 1)[0] for line in out.splitlines()]

    def wait_detached(self, image: Path) -> list[str]:
        """Wait until no loop device is attached to ``image``: one that ``mount -o loop``
        attached is detached by the kernel after the unmount, but not at once.  Returns the
        devices still attached after DEADLINE seconds."""
        deadline = time.monotonic() + self.DEADLINE
        while True:
            left = self.attached(image)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.02)

    def release(self) -> None:
        """Once everything is unmounted: detach every loop device on the images and delete
        them (a suite run kept 2.4 GB of them).  A device the kernel still holds after
        DEADLINE (a lazy unmount still in use) is detached by force."""
        for dev in list(self.loops):
            self.detach(dev)
        for image in self.images:
            for dev in self.wait_detached(image):
                subprocess.call(["losetup", "-d", dev], stderr=subprocess.DEVNULL)
            image.unlink(missing_ok=True)
        self.images.clear()

    def fail_read_only(self, point: Path) -> None:
        """Make the kernel find an error on the mounted ext4 drive: it turns read-only at once,
        as a failing drive does (errors=remount-ro)."""
        dev = subprocess.run(
            ["findmnt", "-no", "SOURCE", str(point)], capture_output=True, text=True, check=True
        ).stdout.strip()
        Path(f"/sys/fs/ext4/{os.path.basename(dev)}/trigger_fs_error").write_text("1")

    def fsck(self, image: Path) -> None:
        """What the operator does with a drive that went read-only: check and repair it."""
        rc = subprocess.call(
            ["e2fsck", "-fy", str(image)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert rc in (0, 1), f"e2fsck could not repair {image} (exit {rc})"

    @contextlib.contextmanager
    def inspect(self, images: list[Path]) -> Iterator[list[Path]]:
        """Mount each image read-only at a directory of its own, to look at all drives at once."""
        points = []
        try:
            for img in images:
                self._n += 1
                points.append(self.mount(img, self.top / f"inspect-{self._n}", readonly=True))
            yield points
        finally:
            for p in points:
                try:
                    self.umount(p)
                except subprocess.CalledProcessError:
                    pass  # still busy: the drives fixture unmounts it, lazily if need be


def _backing_file(dev: str) -> str:
    """The file behind loop device ``dev`` ("" if it is not one, or is detached)."""
    try:
        return Path(f"/sys/block/{os.path.basename(dev)}/loop/backing_file").read_text().strip()
    except OSError:
        return ""


def _mount_sources() -> set[str]:
    """What is mounted somewhere (devices, for loop mounts)."""
    with open("/proc/self/mounts") as fh:
        return {line.split(" ", 1)[0] for line in fh}


SWAP_SCRIPT = """#!/bin/sh
set -e
echo "$MVCOPY_VOLUME $MVCOPY_NEXT" >> "{log}"
# Another program may still hold the drive when the run asks for the next one (seen: the
# ``dd`` that test_a_rewrite_that_meets_a_full_drive... runs to fill the drive, still writing
# when the run found the drive full).  What held it goes to {busy} (the bay warns at
# teardown) and the swap tries again, as a person would.
tries=0
until umount "$MVCOPY_OUTPUT"; do
  {{ date +%T.%N; fuser -vm "$MVCOPY_OUTPUT" 2>&1 | grep -v "^Cannot stat"; }} >> "{busy}" || true
  tries=$((tries + 1))
  [ "$tries" -lt 5 ] || exit 32
  sleep 1
done
next=$(head -n 1 "{queue}")
[ -n "$next" ] || exit 1
sed -i 1d "{queue}"
mount -o loop "$next" "$MVCOPY_OUTPUT"
"""


class Bay:
    """One mount point (the USB bay); a --new-volume-script takes the next image from a queue."""

    def __init__(self, drives: Drives, point: Path, workdir: Path):
        self.drives = drives
        self.point = point
        workdir.mkdir(parents=True, exist_ok=True)
        self.queue = workdir / "queue"
        self.log = workdir / "log"
        self.script_path = workdir / "swap.sh"
        self.busy = workdir / "busy"  # what held the drive when a swap's umount was refused
        self.script_path.write_text(SWAP_SCRIPT.format(log=self.log, queue=self.queue, busy=self.busy))
        self.log.write_text("")
        self.queue.write_text("")
        point.mkdir(parents=True, exist_ok=True)

    @property
    def script(self) -> str:
        return f"sh {self.script_path}"

    def insert(self, image: Path) -> None:
        if os.path.ismount(self.point):
            self.drives.umount(self.point)
        self.drives.mount(image, self.point)

    def enqueue(self, *images: Path) -> None:
        self.queue.write_text("".join(f"{img}\n" for img in images))

    def swaps(self) -> list[tuple[str, str]]:
        return [tuple(line.split(" ", 1)) for line in self.log.read_text().splitlines()]  # type: ignore[misc]

    def eject(self) -> None:
        if os.path.ismount(self.point):
            self.drives.umount(self.point)


def make_tree(root: Path, seed: int = 1, n_files: int = 60, big: int = 4) -> int:
    """A source tree of mixed sizes with nested and empty folders, symlinks, odd names.

    Returns the bytes of file data.
    """
    rnd = random.Random(seed)
    folders = [
        "Alpha",
        "Alpha/sub one",
        "beta",
        "beta/deep/er",
        "ünïcødé dir",
        "zeta",
    ]
    for f in folders:
        (root / f).mkdir(parents=True, exist_ok=True)
    (root / "empty folder").mkdir()
    (root / "beta/deep/empty too").mkdir(parents=True)
    total = 0
    for k in range(n_files):
        folder = folders[k % len(folders)]
        size = rnd.choice([0, 1, 700, 1500, 4096, 9000, 20000, 40000])
        name = rnd.choice(["file", "doc", "naïve café", "with space", "x"]) + f" {k}.bin"
        path = root / folder / name
        path.write_bytes(rnd.randbytes(size))
        total += size
    for k in range(big):
        size = 150_000 + k * 70_000
        (root / "zeta" / f"big {k}.dat").write_bytes(rnd.randbytes(size))
        total += size
    (root / "top-level file.txt").write_text("at the root\n")
    os.symlink("../top-level file.txt", root / "Alpha/link to top")
    os.symlink("does/not/exist", root / "beta/dangling link")
    os.symlink("Alpha", root / "link to dir")
    os.chmod(root / "top-level file.txt", 0o600)
    script = root / "beta/run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    os.chmod(script, 0o750)
    # Old mtimes, odd nanoseconds: a copy that drops them is caught.
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            p = os.path.join(dirpath, name)
            t = 1_500_000_000_123_456_789 + rnd.randrange(10**15)
            os.utime(p, ns=(t, t), follow_symlinks=False)
    return total


def union_of(drive_dirs: list[Path], dest: Path) -> Path:
    """What restoring by hand gives: ``cp -a`` of every drive onto one directory."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in drive_dirs:
        subprocess.run(["cp", "-a", f"{d}/.", str(dest)], check=True)
    for name in os.listdir(dest):
        if name.startswith(".mvcopy") or name == "lost+found":
            p = dest / name
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return dest


def tree_differences(src: Path, other: Path) -> str:
    """Every difference rsync sees (content by checksum, symlinks, modes, mtimes, extras).

    The top directory itself is the drive's mount point, not part of the backup: its
    mode and mtime are taken from the source before comparing.
    """
    assert shutil.which("rsync"), "rsync is missing: install it (see README.rst)"
    st = os.stat(src)
    os.chmod(other, st.st_mode & 0o7777)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = subprocess.run(
        ["rsync", "-rlptcn", "--delete", "--itemize-changes", f"{src}/", f"{other}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip()


def files_on(drive: Path) -> set[str]:
    """Files and symlinks on a drive, relative, leaving out our own .mvcopy records."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(drive):
        rel = os.path.relpath(dirpath, drive)
        if rel == ".":
            filenames = [f for f in filenames if not f.startswith(".mvcopy")]
            dirnames[:] = [d for d in dirnames if not d.startswith(".mvcopy")]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def leftovers(drive: Path) -> list[str]:
    """Temporary files or an uncommitted journal left on a drive."""
    left = []
    tmp = drive / ".mvcopy-tmp"
    if tmp.is_dir():
        left += [str(p.relative_to(drive)) for p in tmp.rglob("*")]
    left += [n for n in os.listdir(drive) if ".tmp-" in n or n == ".mvcopy-journal"]
    return left


def manifest_paths(drive: Path) -> set[str]:
    doc = json.loads((drive / ".mvcopy-manifest.json").read_text())
    return {row[0] for row in doc["entries"] if row[1] != "d"}


def label_of(drive: Path) -> dict:
    return json.loads((drive / ".mvcopy-label.json").read_text())


def start_backup(tmp_path: Path, bay: Bay) -> subprocess.Popen:
    return subprocess.Popen(
        mvc_argv(*bay_args(tmp_path, bay, "-w", "2")),
        cwd=tmp_path,
        env=mvc_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_partial_copy(bay, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Poll until a temporary file is being written on the drive: we are mid-copy."""
    tmp = bay.point / ".mvcopy-tmp"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            partials = [p for d in tmp.iterdir() if d.is_dir() for p in d.iterdir()]
            if any(p.is_file() and p.stat().st_size > 0 for p in partials):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the copy could be interrupted: {proc.communicate()}")
        time.sleep(0.0005)
    pytest.fail("never saw a copy in progress")


def big_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make_tree(src, n_files=30, big=0)
    for k in range(4):
        (src / f"large {k}.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    return src


def check_drives(tmp_path: Path, drives, images, src: Path) -> list[set[str]]:
    """The union of the drives is the source, byte for byte; no file on two drives; no leftovers."""
    with drives.inspect(images) as points:
        held = [files_on(p) for p in points]
        for p in points:
            assert leftovers(p) == [], f"temporary files left on {p}"
            assert manifest_paths(p) == files_on(p), "the manifest disagrees with the drive"
        union = union_of(points, tmp_path / f"union-{time.monotonic_ns()}")
    assert tree_differences(src, union) == ""
    for a in range(len(held)):
        for b in range(a + 1, len(held)):
            assert not (held[a] & held[b]), f"files on two drives: {held[a] & held[b]}"
    return held


USER = 1001  # an id no test runs as: the user without root


@contextlib.contextmanager
def reachable(folder: Path) -> Iterator[None]:
    """Let USER pass through the folders above ``folder`` (pytest makes its own private), for
    the time of the test."""
    above = [p for p in folder.parents if p != Path("/") and p != Path("/tmp")]
    modes = {p: p.stat().st_mode & 0o7777 for p in above}
    try:
        for p, mode in modes.items():
            os.chmod(p, mode | 0o001)
        yield
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)


def as_user(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The CLI run by USER (no root, no supplementary group), with a Python that user can run."""
    for python in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable):
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd), "LANG": "C.UTF-8"}
        probe = subprocess.run(
            [python, "-c", "import multivolumecopy"], user=USER, group=USER, extra_groups=[], env=env,
            capture_output=True, cwd=cwd,
        )  # fmt: skip
        if probe.returncode == 0:
            return subprocess.run(
                [python, "-m", "multivolumecopy", *argv], user=USER, group=USER, extra_groups=[], env=env,
                capture_output=True, text=True, cwd=cwd, timeout=180, stdin=subprocess.DEVNULL,
            )  # fmt: skip
    pytest.skip("needs a Python interpreter and this checkout readable by a user without root")
