"""Drives as slow as real ones: this tool against ``cp -a && sync`` onto loop-mounted ext4 drives
throttled to a USB-like bandwidth, and against the physical limit (bytes / bandwidth).

    python bench/slow_drives.py [--bandwidth 40M] [--iops 300] [--runs 3] [--scale 1.0]
                                [--only large,small,two] [--images DIR] [--throttle-drive PATH]

Root only: loop devices, mount, and the kernel's blkio throttle (cgroup v1), set and lifted
with ../shared/tools/throttle-drive (--throttle-drive); the drives come from loopdrives.py.
Cases, on the same throttled drives in the same run, paired by round (each round runs every
method once, starting with a different one):

- large: 4 files of 20 MiB (x --scale) onto one drive throttled to --bandwidth;
- small: 2,000 files of 4-16 KiB (x --scale) onto one drive throttled to --bandwidth and --iops
  write operations a second, as a USB stick or an SMR disk has;
- two: twice the large set, in two folders, onto two drives attached at once (``-o A -o B``,
  --volume-size so that each folder fills one), against ``cp -a`` of the same folders to each
  drive one after the other, and to both at once.

Every copy gets new filesystems (mkfs.ext4 with its inode tables and journal written in full,
so no lazy initialisation competes for the throttled bandwidth), and ``cp -a`` is followed by
``sync -f DRIVE`` (``syncfs`` of that drive, as this tool syncs a drive before calling it done;
a plain ``sync`` would also wait for whatever else this shared machine writes).  The images
live in --images (default /dev/shm: in RAM, so the throttle is the drive's only limit).
Every copy is checked (each file's path, size and mtime) before it counts.  Prints medians,
ratios paired by round, the speed reached against the physical limit, how long the drives
waited for their first MiB and how long they sat idle, what each method made the drives
write (MiB and write operations, as the throttle counts them), and CPU seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from loopdrives import (
    BLKIO,
    Drive,
    MiB,
    Throttler,
    compile_tool,
    fresh_drive,
    listing,
    load,
    mvc,
    paired,
    run,
    timed,
)


def parse_size(text: str) -> int:
    """``40M`` -> 41943040 (K, M, G: powers of 1024); a bare number is bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


# -- the data ------------------------------------------------------------------------------


def make_large(root: Path, files: int, size: int, rnd: random.Random) -> None:
    root.mkdir(parents=True)
    for n in range(files):
        (root / f"big{n:02d}").write_bytes(rnd.randbytes(size))


def make_small(root: Path, files: int, lo: int, hi: int, rnd: random.Random) -> None:
    for n in range(files):
        folder = root / f"d{n // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:05d}").write_bytes(rnd.randbytes(rnd.randint(lo, hi)))


# -- the cases -----------------------------------------------------------------------------


def mounts(drives: list[Drive]) -> list[Path]:
    return [d.mount for d in drives]


def cp_sync(src: Path, drive: Drive) -> str:
    return f"cp -a {src}/. {drive.mount}/ && sync -f {drive.mount}"


def size_of(src: Path) -> int:
    return sum(size for size, _ in listing([src]).values())


@dataclass
class Case:
    name: str
    src: Path
    drives: int
    image_size: int
    iops: int
    methods: dict[str, Callable[[list[Drive], Path], str]]
    base: str  # the method every other is compared with, round by round
    times: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    written: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    split: list[list[int]] = field(default_factory=list)  # bytes on each drive, the tool's runs
    idle: dict[str, list[float]] = field(default_factory=dict)  # drive-seconds, see Sampler
    first: dict[str, list[float]] = field(default_factory=dict)  # seconds to the first MiB queued

    @property
    def data(self) -> int:
        return size_of(self.src)


def one_drive_case(name: str, src: Path, iops: int) -> Case:
    return Case(
        name,
        src,
        1,
        image_size=int(size_of(src) * 1.5) + 64 * MiB,
        iops=iops,
        methods={
            "multivolumecopy": lambda d, job: mvc(src, mounts(d), job),
            "cp -a && sync -f": lambda d, job: cp_sync(src, d[0]),
        },
        base="cp -a && sync -f",
    )


def two_drive_case(src: Path, file_size: int) -> Case:
    half = size_of(src / "a")
    # Each volume takes one folder: room for it and half a file more, never a whole one.
    volume = half + file_size // 2
    a, b = src / "a", src / "b"

    def one_then_other(d: list[Drive], job: Path) -> str:
        first, second = d[0].mount, d[1].mount
        return f"cp -a {a} {first}/ && sync -f {first} && cp -a {b} {second}/ && sync -f {second}"

    def both_at_once(d: list[Drive], job: Path) -> str:
        return (
            f"(cp -a {a} {d[0].mount}/ && sync -f {d[0].mount}) & first=$!; "
            f"cp -a {b} {d[1].mount}/ && sync -f {d[1].mount} && wait $first"
        )

    return Case(
        "two drives attached at once",
        src,
        2,
        image_size=int(volume * 1.5) + 64 * MiB,
        iops=0,
        methods={
            "multivolumecopy -o A -o B": lambda d, job: mvc(src, mounts(d), job, f"--volume-size {volume}"),
            "cp -a, one drive then the other": one_then_other,
            "cp -a, both drives at once": both_at_once,
        },
        base="cp -a, one drive then the other",
    )


class Sampler:
    """While a method runs, every 25 ms, each drive's bytes queued (the throttle counts a write
    as it is queued) and finished (/sys/block/loopN/stat counts it as it completes).  A drive
    is busy in a step when it has a write waiting or finished one; otherwise it idles, waiting
    for the method to give it something: idle drive-seconds are what a method loses."""

    STEP = 0.025

    def __init__(self, drives: list[Drive]):
        self.drives = drives
        self.samples: list[tuple[float, list[tuple[int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _now(self) -> list[tuple[int, int]]:
        return [(d.written()[0], d.completed()) for d in self.drives]

    def __enter__(self) -> Sampler:
        self.start = time.perf_counter()
        self.samples.append((0.0, self._now()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter() - self.start, self._now()))

    def _run(self) -> None:
        while not self._stop.wait(self.STEP):
            self.samples.append((time.perf_counter() - self.start, self._now()))

    def first_mib(self) -> float:
        """Seconds before the drives had been given their first MiB to write."""
        base = sum(q for q, _ in self.samples[0][1])
        return next((t for t, now in self.samples if sum(q for q, _ in now) - base >= MiB), float("nan"))

    def idle(self) -> float:
        """Drive-seconds in which a drive had nothing to write, all drives added up."""
        idle = 0.0
        base = self.samples[0][1]  # the two counts start from different moments
        for (t0, before), (t1, after) in zip(self.samples, self.samples[1:]):
            for (q, d), (_, done0), (queued, done1) in zip(base, before, after):
                if queued - q <= done0 - d and done1 == done0:
                    idle += t1 - t0
        return idle


def measure(case: Case, work: Path, images: Path, bps: int, runs: int) -> None:
    """Every method ``runs`` times onto new throttled drives; each result checked against the source."""
    subprocess.run(f"find {case.src} -type f -exec cat {{}} + > /dev/null", shell=True, check=True)
    want = listing([case.src])
    order = list(case.methods.items())
    for rnd in range(runs):
        for label, method in order[rnd % len(order) :] + order[: rnd % len(order)]:
            job_dir = Path(tempfile.mkdtemp(dir=work, prefix="job-"))
            with contextlib.ExitStack() as stack:
                drives = [
                    stack.enter_context(fresh_drive(images, f"drive{n}", case.image_size, bps, case.iops))
                    for n in range(case.drives)
                ]
                run("sync", "-f", *(str(d.mount) for d in drives))
                before = [d.written() for d in drives]
                with Sampler(drives) as sampler:
                    took = timed(method(drives, job_dir / "job.json"))
                after = [d.written() for d in drives]
                got = listing([d.mount for d in drives])
                if got != want:
                    missing = sorted(set(want) - set(got))[:3]
                    raise RuntimeError(f"{label} did not copy {case.src} whole: {missing or 'sizes differ'}")
                if label.startswith("multivolumecopy"):
                    case.split.append([sum(s for s, _ in listing([d.mount]).values()) for d in drives])
            shutil.rmtree(job_dir)
            case.times.setdefault(label, []).append(took.wall)
            case.cpu.setdefault(label, []).append(took.cpu)
            case.written.setdefault(label, []).append(
                (
                    sum(a[0] - b[0] for a, b in zip(after, before)),
                    sum(a[1] - b[1] for a, b in zip(after, before)),
                )
            )
            case.idle.setdefault(label, []).append(sampler.idle())
            case.first.setdefault(label, []).append(sampler.first_mib())


# -- the report ----------------------------------------------------------------------------


def report(case: Case, bps: int, runs: int) -> list[str]:
    data, files = case.data, len(listing([case.src]))
    # The least time the drives need: the bytes at full bandwidth, and under an IOPS cap at
    # least one write a file (ext4 writes each file's data as its own request).
    limit = max(data / (case.drives * bps), files / case.iops if case.iops else 0.0)
    lines = [
        f"{case.name}: {data / MiB:.1f} MiB in {files:,} files, "
        f"{case.drives} drive{'s' if case.drives > 1 else ''} at {bps / MiB:.0f} MiB/s"
        + (f" and {case.iops} write IOPS" if case.iops else "")
        + f"; physical limit {limit:.2f} s"
        + (
            f" (bytes / bandwidth {data / bps:.2f}, a write a file {files / case.iops:.2f})"
            if case.iops
            else ""
        )
        + (f" ({data / bps:.2f} s for one drive after the other)" if case.drives > 1 else "")
    ]
    head = f"  {'method':<34}{'median s':>9}{'ratio':>8}{'(range)':>12}{'x limit':>9}{'MiB/s':>7}"
    lines.append(head + f"{'1st MiB':>8}{'idle':>6}{'MiB written':>12}{'writes':>8}{'CPU s':>7}")
    for label, times in case.times.items():
        median = statistics.median(times)
        ratios = paired(times, case.times[case.base])
        to_limit = statistics.median(t / limit for t in times)
        mib = statistics.median(w[0] for w in case.written[label]) / MiB
        ops = statistics.median(w[1] for w in case.written[label])
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else ""
        idle = statistics.median(case.idle[label])
        first = statistics.median(case.first[label])
        lines.append(
            f"  {label:<34}{median:>9.2f}{statistics.median(ratios):>7.2f}x{spread:>12}"
            f"{to_limit:>8.2f}x{data / median / MiB:>7.1f}{first:>8.2f}{idle:>6.2f}{mib:>12.1f}{ops:>8.0f}"
            f"{statistics.median(case.cpu[label]):>7.2f}"
        )
    if case.drives > 1:
        ours = case.times[next(k for k in case.times if k.startswith("multivolumecopy"))]
        parallel = paired(ours, case.times["cp -a, both drives at once"])
        lines.append(f"  multivolumecopy / cp -a to both drives at once: {statistics.median(parallel):.2f}x")
        splits = ", ".join("/".join(f"{b / MiB:.0f}" for b in s) for s in case.split)
        lines.append(f"  MiB the tool put on each drive, by round: {splits}")
    lines.append(
        f"  ratio: the median over {runs} rounds of each round's time over {case.base!r} in that round; "
        "1st MiB: seconds before the drives were given a first MiB to write; idle: drive-seconds in "
        "which a drive had nothing to write (all drives added up)"
    )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bandwidth", default="40M", help="write bytes a second of every drive (default 40M)")
    ap.add_argument("--iops", type=int, default=300, help="write operations a second, small-file case")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="sizes and file counts")
    ap.add_argument("--only", default="large,small,two")
    ap.add_argument("--images", default="/dev/shm", help="where the drive images live (default /dev/shm)")
    ap.add_argument("--throttle-drive", default=str(Throttler.path), help="sets the blkio throttle")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the drives are cleaned up on the way out
    if os.geteuid() != 0:
        print("slow_drives.py needs root (loop devices, mount, the blkio throttle)", file=sys.stderr)
        return 2
    Throttler.path = Path(args.throttle_drive)
    if not Throttler.path.exists():
        print(f"slow_drives.py: no {Throttler.path}; give --throttle-drive", file=sys.stderr)
        return 2
    if not os.access(BLKIO / "blkio.throttle.write_bps_device", os.W_OK):
        print(f"slow_drives.py: no blkio throttle to set in {BLKIO} (cgroup v1)", file=sys.stderr)
        return 2
    bps = parse_size(args.bandwidth)
    only = set(args.only.split(","))
    compile_tool()
    rnd = random.Random(1)
    started = time.perf_counter()
    print(f"{os.cpu_count()} CPUs, {os.uname().release}; at the start: {load()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="mvc-slow-"))
    images = Path(tempfile.mkdtemp(prefix="mvc-slow-drives-", dir=args.images))
    large_size = int(20 * MiB * args.scale)
    cases: list[Case] = []
    try:
        if "large" in only:
            make_large(work / "large", 4, large_size, rnd)
            cases.append(one_drive_case("one drive, large files", work / "large", 0))
        if "small" in only:
            make_small(work / "small", int(2000 * args.scale), 4096, 16 * 1024, rnd)
            cases.append(one_drive_case("one drive, small files", work / "small", args.iops))
        if "two" in only:
            make_large(work / "two" / "a", 4, large_size, rnd)
            make_large(work / "two" / "b", 4, large_size, rnd)
            cases.append(two_drive_case(work / "two", large_size))
        for case in cases:
            measure(case, work, images, bps, args.runs)
            print("\n".join(report(case, bps, args.runs)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(images, ignore_errors=True)
    print(f"at the end: {load()}; {time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
