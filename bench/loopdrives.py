"""Drives for the benches that need real filesystems (bench/slow_drives.py, bench/real_tree.py):
new ext4 filesystems in image files, loop-mounted, optionally throttled to a USB-like speed
with ../shared/tools/throttle-drive, and always taken apart afterwards (throttle lifted,
unmounted, loop device detached, image deleted).  Root only.  Also how the benches run the
tool and time a command.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent.parent
# Run the tool as an installed copy runs: from compiled bytecode (compile_tool), not compiling
# its modules at every start because the shell says PYTHONDONTWRITEBYTECODE.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = str(HERE)
MiB = 2**20
RECORDS = (".mvcopy", "lost+found")  # the tool's records on a drive, and mkfs's folder
BLKIO = Path("/sys/fs/cgroup/blkio")


class Throttler:
    """The script that sets the blkio throttle (see its header): MOUNTPOINT BYTES_PER_SECOND [IOPS]."""

    path = HERE.parent / "shared" / "tools" / "throttle-drive"


def compile_tool() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE / "multivolumecopy")], check=True)


def mvc(src: Path, outputs: list[Path], job: Path, *extra: str) -> str:
    """The tool's command line, as a user runs it (through the shell)."""
    drives = " ".join(f"-o {out}" for out in outputs)
    return f"{sys.executable} -m multivolumecopy {src} {drives} -f {job} --hide-progress {' '.join(extra)}"


@dataclass
class Timing:
    wall: float
    user: float  # CPU seconds of the command and every process it waited for
    sys: float

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def timed(cmd: str) -> Timing:
    """Wall and CPU seconds of ``cmd`` (through the shell, in the bench's ENV); its failure is
    an error with its last words."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, shell=True, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd}\nexit {done.returncode}: {done.stderr.strip()[-2000:]}")
    return Timing(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)


def paired(times: list[float], base: list[float]) -> list[float]:
    """Each round's time over the base's in the same round: rounds run the methods in turn,
    so a slow minute of the machine weighs on both sides of a ratio."""
    return [t / b for t, b in zip(times, base)]


def load() -> str:
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def listing(roots: list[Path]) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every file and symlink under ``roots``, the tool's
    records left out: what a copy must reproduce."""
    found: dict[str, tuple[int, int]] = {}
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            if dirpath == str(root):
                dirs[:] = [d for d in dirs if not d.startswith(RECORDS)]
                names = [n for n in names if not n.startswith(RECORDS)]
            names += [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
            for name in names:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                found[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return found


@dataclass
class Drive:
    mount: Path
    loop: str  # /dev/loopN

    def _majmin(self) -> str:
        return Path(f"/sys/block/{os.path.basename(self.loop)}/dev").read_text().strip()

    def completed(self) -> int:
        """Bytes the device has finished writing since it was attached (/sys/block/loopN/stat
        counts a write as it completes)."""
        return int(Path(f"/sys/block/{os.path.basename(self.loop)}/stat").read_text().split()[6]) * 512

    def written(self) -> tuple[int, int]:
        """Bytes and write operations the throttle has been given for this device (it counts
        them as they are queued, before the block layer merges requests: the count its IOPS
        limit applies to).  Cumulative since the device number was first seen: use deltas."""
        majmin = self._majmin()
        counts = []
        for name in ("io_service_bytes", "io_serviced"):
            lines = (BLKIO / f"blkio.throttle.{name}").read_text().splitlines()
            counts.append(sum(int(line.split()[2]) for line in lines if line.startswith(f"{majmin} Write ")))
        return counts[0], counts[1]

    def direct_io(self) -> bool:
        """Whether the loop device writes its image with direct I/O (past the page cache)."""
        flag = Path(f"/sys/block/{os.path.basename(self.loop)}/loop/dio")
        return flag.exists() and flag.read_text().strip() == "1"


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def throttle(drive: Drive, bps: int, iops: int = 0) -> None:
    run(str(Throttler.path), str(drive.mount), str(bps), str(iops))


def lift_throttle(drive: Drive) -> None:
    """0 is no limit.  If the script cannot do it (the mount is gone), the device number is
    cleared directly: a limit left behind would slow whoever attaches that loop device next."""
    try:
        throttle(drive, 0)
    except subprocess.CalledProcessError:
        for name in ("write_bps_device", "write_iops_device"):
            (BLKIO / f"blkio.throttle.{name}").write_text(f"{drive._majmin()} 0\n")


def unmount(mount: Path) -> None:
    for _ in range(20):  # a process of the run may still hold it for a moment
        if subprocess.run(["umount", str(mount)], stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.25)
    run("umount", "--lazy", str(mount))


@contextlib.contextmanager
def fresh_drive(
    where: Path,
    name: str,
    size: int,
    bps: int = 0,
    iops: int = 0,
    inodes: Optional[int] = None,
    direct_io: bool = False,
) -> Iterator[Drive]:
    """A new ext4 filesystem of ``size`` bytes in ``where/name.img``, loop-mounted at
    ``where/name``; throttled to ``bps`` bytes and ``iops`` write operations a second unless
    both are 0; with ``direct_io``, the loop device writes the image past the page cache, so a
    sync of the drive waits for the disk under it.  Always unthrottled, unmounted, detached and
    deleted afterwards."""
    image, mount = where / f"{name}.img", where / name
    with open(image, "wb") as fh:
        fh.truncate(size)
    try:
        # Inode tables and journal written now, into the image file: lazy initialisation would
        # write them through the drive while a method is being timed.
        mkfs = ["mkfs.ext4", "-q", "-F", "-T", "default", "-E", "lazy_itable_init=0,lazy_journal_init=0"]
        run(*mkfs, *(["-N", str(inodes)] if inodes else []), str(image))
        attach = ["losetup", "--find", "--show", *(["--direct-io=on"] if direct_io else []), str(image)]
        loop = subprocess.run(attach, check=True, capture_output=True, text=True).stdout.strip()
        try:
            mount.mkdir()
            run("mount", loop, str(mount))
            drive = Drive(mount, loop)
            try:
                if bps or iops:
                    throttle(drive, bps, iops)
                yield drive
            finally:
                try:
                    if bps or iops:
                        lift_throttle(drive)
                finally:
                    unmount(mount)
        finally:
            run("losetup", "-d", loop)
            if mount.exists():
                mount.rmdir()
    finally:
        image.unlink()
