"""The benchmark: this tool against cp -a, rsync -a and tar | tar on the same data, in one run.

    python bench/run.py [--scale 1.0] [--runs 3] [--tree-entries 200000] [--catalog-entries 1000000]
                        [--only small,small-ext4,small-tmpfs,mixed,large,rerun,scan,tree,catalog,help]
                        [--tmpfs /dev/shm]

Datasets (sizes scaled by --scale): many small (100,000 files of 1-16 KiB in 200 folders),
mixed (2,000 files of 4 KiB-64 MiB, about 1.5 GB), few large (4 x 256 MiB); a real tree of
--tree-entries empty files (scan, whole runs and their peak memory); a synthetic catalog of
--catalog-entries (jobfile save, load, memory).  Destination: a directory on the same disk as
the data; small-ext4 copies the small files to a new ext4 filesystem for every copy, in an image
on the same disk (root only: another filesystem, as a backup drive is), and small-tmpfs to a
tmpfs, where no method waits for a disk.  Prints medians, ratios paired by round, and CPU
seconds; see docs/performance.rst.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
# Run the tool as an installed copy runs: from compiled bytecode (see main), not compiling its
# modules at every start because the shell says PYTHONDONTWRITEBYTECODE.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = str(HERE)


def small(root: Path, scale: float, rnd: random.Random) -> None:
    for n in range(int(100_000 * scale)):
        d = root / f"d{n % 200:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{n:06d}").write_bytes(rnd.randbytes(rnd.randint(1024, 16 * 1024)))


def mixed(root: Path, scale: float, rnd: random.Random) -> None:
    target, total, n = int(1.5e9 * scale), 0, 0
    while total < target:
        d = root / f"d{n % 40:02d}"
        d.mkdir(parents=True, exist_ok=True)
        size = int(min(64 * 2**20, 4096 * 2 ** rnd.uniform(0, 14)))
        (d / f"f{n:05d}").write_bytes(rnd.randbytes(size))
        total += size
        n += 1


def large(root: Path, scale: float, rnd: random.Random) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for n in range(4):
        left = int(256 * 2**20 * scale)
        with open(root / f"big{n}", "wb") as fh:
            while left > 0:
                fh.write(rnd.randbytes(min(left, 16 * 2**20)))
                left -= 16 * 2**20


CPU: dict[tuple[str, str], list[float]] = {}  # CPU seconds (user + system, its processes and theirs)


def timed(cmd: str, key: tuple[str, str] | None = None) -> float:
    """Wall seconds of ``cmd``; with ``key``, its CPU seconds are kept in CPU[key]."""
    subprocess.run("sync", shell=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if key is not None:
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        CPU.setdefault(key, []).append(cpu)
    return wall


def record(results: dict, case: str, label: str, cmd: str) -> None:
    results.setdefault((case, label), []).append(timed(cmd, (case, label)))


def mvc(src: Path, dst: Path, job: Path, *extra: str) -> str:
    return f"{sys.executable} -m multivolumecopy {src} -o {dst} -f {job} --hide-progress {' '.join(extra)}"


PEERS = {
    "cp -a": lambda s, d: f"cp -a {s}/. {d}",
    "rsync -a": lambda s, d: f"rsync -a {s}/ {d}/",
    "tar | tar": lambda s, d: f"tar -C {s} -cf - . | tar -C {d} -xf -",
}


_fresh = [0]


def fresh_dir(work: Path) -> Path:
    """A new destination every time: a journal-less ext4 is slow to create files just after
    deleting thousands (see ../shared/perf-baselines.md), which would punish whoever runs next."""
    _fresh[0] += 1
    d = work / "out" / f"{_fresh[0]:04d}"
    d.mkdir(parents=True)
    return d


class SameDisk:
    """Each copy to a fresh directory (``fresh_dir``) on the same disk as the data, kept until
    the dataset is done."""

    label = ""
    synced_peer = True  # cp -a && sync is shown beside cp -a

    def __init__(self, work: Path):
        self.work = work
        self.made: list[Path] = []

    @contextlib.contextmanager
    def destination(self) -> Iterator[Path]:
        self.made.append(fresh_dir(self.work))
        yield self.made[-1]

    def close(self) -> None:
        for out in self.made:  # room for the next dataset (every copy of all three: 50 GB)
            shutil.rmtree(out)


class Tmpfs(SameDisk):
    """Each copy to a tmpfs, removed at once: RAM, where no method waits for a disk and what
    is left is each tool's own work (a tmpfs is not slower after deletions)."""

    label = " to tmpfs"
    synced_peer = False

    @contextlib.contextmanager
    def destination(self) -> Iterator[Path]:
        out = fresh_dir(self.work)
        try:
            yield out
        finally:
            shutil.rmtree(out)
            for job in out.parent.glob(f"{out.name}.json*"):
                job.unlink()


class FreshExt4(SameDisk):
    """Each copy to a new ext4 filesystem (with its journal, as mkfs.ext4 makes it) in an image
    file on the same disk, loop-mounted: another filesystem, as a backup drive is, so no
    method can copy within one filesystem (``cp -a`` does there, with copy_file_range)."""

    label = " to a fresh ext4"

    def __init__(self, work: Path, size: int):
        super().__init__(work)
        self.size = size

    @contextlib.contextmanager
    def destination(self) -> Iterator[Path]:
        image, mount = fresh_dir(self.work) / "drive.img", fresh_dir(self.work)
        with open(image, "wb") as fh:
            fh.truncate(self.size)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
        try:
            yield mount
        finally:
            subprocess.run(["umount", str(mount)], check=True)
            shutil.rmtree(image.parent)
            shutil.rmtree(mount, ignore_errors=True)
            for job in mount.parent.glob(f"{mount.name}.json*"):
                job.unlink()


def first_backup(name: str, src: Path, where: SameDisk, runs: int, results: dict) -> None:
    """Every method ``runs`` times, each onto a destination of its own from ``where``."""
    variants = dict(PEERS)
    if where.synced_peer:
        # multivolumecopy syncs the drive before it calls a volume done; cp -a leaves its data
        # in the page cache.  Both are shown: the plain one is the yardstick.
        variants["cp -a && sync"] = lambda s, d: f"cp -a {s}/. {d} && sync"
    variants["multivolumecopy"] = lambda s, d: mvc(s, d, d.with_suffix(".json"))
    variants["multivolumecopy --no-hash"] = lambda s, d: mvc(s, d, d.with_suffix(".json"), "--no-hash")
    subprocess.run(f"find {src} -type f -exec cat {{}} + > /dev/null", shell=True)  # warm for all
    case = f"first backup, {name}{where.label}"
    order = list(variants.items())
    try:
        for run in range(runs):
            # Each round starts with a different method: whoever comes first after a deletion
            # (the last dataset's copies) pays for it on a journal-less ext4.
            for label, cmd in order[run % len(order) :] + order[: run % len(order)]:
                with where.destination() as out:
                    record(results, case, label, cmd(src, out))
    finally:
        where.close()


def rerun(src: Path, work: Path, runs: int, results: dict) -> None:
    rsync_dst, mvc_dst = fresh_dir(work), fresh_dir(work)
    cmds = {
        "rsync -a": PEERS["rsync -a"](src, rsync_dst),
        "multivolumecopy": mvc(src, mvc_dst, mvc_dst.with_suffix(".json")),
    }
    for cmd in cmds.values():
        timed(cmd)  # populate
    for _ in range(runs):  # in turns, so both see the same moments of the machine
        for label, cmd in cmds.items():
            record(results, "no-change re-run, small", label, cmd)


def scan_processes() -> int:
    from multivolumecopy.parser import default_workers
    from multivolumecopy.scan import usable_cpus

    return min(default_workers(), usable_cpus())  # what a backup run uses


def time_scans(src: Path, case: str, runs: int, results: dict) -> None:
    """find against the scan alone in one process, and shared as a run shares it."""
    from multivolumecopy.scan import resolve_sources
    from multivolumecopy.scan import scan as do_scan

    shared = scan_processes()
    for _ in range(runs):
        results.setdefault((f"scan, {case}", "find -printf"), []).append(
            timed(f"find {src} -printf '%s %T@\\n' > /dev/null")
        )
        for processes in (1, shared):
            t = time.perf_counter()
            do_scan(resolve_sources([str(src)]), processes=processes)
            label = f"multivolumecopy scan, {processes} process{'es' if processes > 1 else ''}"
            results.setdefault((f"scan, {case}", label), []).append(time.perf_counter() - t)


def catalog(n: int, work: Path, results: dict, notes: list) -> None:
    """A synthetic million-entry job: save, load, and peak memory of a process that loads it."""
    code = f"""
import sys, time, resource
sys.path.insert(0, {str(HERE)!r})
from multivolumecopy import clock, jobfile as jf
from multivolumecopy.catalog import Catalog, Entry, FILE
cat = Catalog()
for i in range({n}):
    cat.append(Entry(f"share/department{{i % 97:02d}}/project{{i % 1013:04d}}/document-{{i:07d}}.pdf",
                     FILE, 12345 + i, 1_600_000_000_000_000_000 + i, 0o644, ino=i), 1 + i % 12)
job = jf.Job("id", "/srv", ["/srv"], {{}}, clock.now_iso(), cat)
t = time.perf_counter(); jf.save({str(work / "million.json")!r}, job); save = time.perf_counter() - t
del job, cat
t = time.perf_counter(); jf.load({str(work / "million.json")!r}); load = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import os; os.unlink({str(work / "million.json") + ".cache"!r})
t = time.perf_counter(); jf.load({str(work / "million.json")!r}); parse = time.perf_counter() - t
print(save, load, parse, rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    save, load, parse, rss, rss_parse = map(float, out)
    results[(f"jobfile of {n:,} entries", "save (and its cache)")] = [save]
    results[(f"jobfile of {n:,} entries", "load (through the cache)")] = [load]
    results[(f"jobfile of {n:,} entries", "load (rows parsed, no cache)")] = [parse]
    notes.append(
        f"peak RSS of a process building, saving and loading {n:,} entries: {rss:.0f} MiB, "
        f"{rss_parse:.0f} MiB after loading again without the cache; "
        f"jobfile {os.path.getsize(work / 'million.json') / 1e6:.0f} MB"
    )


def tree(root: Path, entries: int) -> None:
    """A real tree for the scan and the memory of a whole run: ``entries`` empty files, 100 a
    folder, two levels of folders."""
    for n in range(entries):
        d = root / f"p{n // 10000:03d}" / f"q{n // 100 % 100:02d}"
        if n % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{n:07d}").touch()


def with_peak(cmd: str) -> tuple[float, float]:
    """Seconds, and the peak RSS in MiB of the largest process of ``cmd`` (the tool's parent
    or one of its workers), measured in a fresh process so nothing else counts."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1], shell=True, check=True, stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    subprocess.run("sync", shell=True)
    out = subprocess.run(
        [sys.executable, "-c", probe, cmd], env=ENV, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def real_tree(src: Path, work: Path, runs: int, results: dict, notes: list) -> None:
    """Scan time against find, and a whole first backup and no-change re-run with their peak memory."""
    n = sum(1 for _ in src.rglob("*"))
    case = f"tree of {n:,} entries"
    time_scans(src, case, runs, results)
    dst = fresh_dir(work)
    for label in ("first backup", "no-change re-run"):
        seconds, peak = with_peak(mvc(src, dst, dst.with_suffix(".json")))
        notes.append(f"{case}, whole {label}: {seconds:.1f} s, peak RSS {peak:.0f} MiB (largest process)")
    results[(f"no-change re-run, {case}", "multivolumecopy")] = [seconds]
    rsync_dst = fresh_dir(work)
    timed(PEERS["rsync -a"](src, rsync_dst))
    results[(f"no-change re-run, {case}", "rsync -a")] = [timed(PEERS["rsync -a"](src, rsync_dst))]


def help_time(runs: int, results: dict) -> None:
    for _ in range(runs):
        results.setdefault(("--help start-up", "multivolumecopy --help"), []).append(
            timed(f"{sys.executable} -m multivolumecopy --help")
        )


def is_tmpfs(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == real and line.split()[2] == "tmpfs" for line in mounts)


def paired(times: list[float], base: list[float] | None) -> list[float]:
    """Each round's time over the base's time in that round: rounds run the methods in turn,
    so a slow minute of the disk weighs on both sides of a ratio."""
    if not base or len(base) != len(times):
        return []
    return [t / b for t, b in zip(times, base)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="small,small-ext4,small-tmpfs,mixed,large,rerun,scan,tree,catalog,help")
    ap.add_argument("--tmpfs", default="/dev/shm", help="a tmpfs for the small-tmpfs case")
    ap.add_argument("--catalog-entries", type=int, default=1_000_000)
    ap.add_argument("--tree-entries", type=int, default=200_000, help="files in the real tree (not scaled)")
    args = ap.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE / "multivolumecopy")], check=True)
    only = set(args.only.split(","))
    rnd = random.Random(1)
    work = Path(tempfile.mkdtemp(prefix="mvc-bench-"))
    results: dict[tuple[str, str], list[float]] = {}
    notes: list[str] = []
    try:
        for name, make in (("small", small), ("mixed", mixed), ("large", large)):
            if name in only or (name == "small" and ({"rerun", "scan", "small-tmpfs", "small-ext4"} & only)):
                make(work / name, args.scale, rnd)
            if name in only:
                first_backup(name, work / name, SameDisk(work), args.runs, results)
        if "small-ext4" in only:
            if os.geteuid() == 0 and shutil.which("mkfs.ext4"):
                size = int(2e9 * args.scale) + 2**28  # the copy (1 GB at scale 1) and room to spare
                first_backup("small", work / "small", FreshExt4(work, size), args.runs, results)
            else:
                notes.append("small-ext4 left out: it needs root (mount) and mkfs.ext4 (e2fsprogs)")
        if "small-tmpfs" in only:
            if is_tmpfs(args.tmpfs):
                memory = Path(tempfile.mkdtemp(prefix="mvc-bench-", dir=args.tmpfs))
                try:
                    first_backup("small", work / "small", Tmpfs(memory), args.runs, results)
                finally:
                    shutil.rmtree(memory, ignore_errors=True)
            else:
                notes.append(f"small-tmpfs left out: {args.tmpfs} is not a tmpfs (see --tmpfs)")
        if "rerun" in only:
            rerun(work / "small", work, args.runs, results)
        if "scan" in only:
            time_scans(work / "small", "small", args.runs, results)
        if "tree" in only:
            tree(work / "tree", args.tree_entries)
            real_tree(work / "tree", work, args.runs, results, notes)
        if "catalog" in only:
            catalog(args.catalog_entries, work, results, notes)
        if "help" in only:
            help_time(args.runs, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"scale {args.scale}, {args.runs} runs, medians; {os.cpu_count()} CPUs")
    print(f"{'case':<46}{'method':<34}{'seconds':>8}{'ratio':>8}{'(range)':>14}{'to sync':>9}{'CPU s':>8}")
    base_of = {"first backup": "cp -a", "no-change": "rsync -a", "scan": "find -printf"}
    for (case, label), times in results.items():
        base_label = next((b for k, b in base_of.items() if case.startswith(k)), None)
        ratios = paired(times, results.get((case, base_label)) if base_label else None)
        synced = paired(times, results.get((case, "cp -a && sync")))
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else ""
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else ""
        to_sync = f"{statistics.median(synced):.2f}x" if synced else ""
        cpu = f"{statistics.median(CPU[case, label]):.2f}" if (case, label) in CPU else ""
        print(
            f"{case:<46}{label:<34}{statistics.median(times):>8.2f}{ratio:>8}{spread:>14}{to_sync:>9}{cpu:>8}"
        )
    print(
        "ratio: the median of each round's time over the base's in the same round (the range: "
        "the lowest and highest); to sync: the same, over cp -a && sync"
    )
    for note in notes:
        print(note)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(peak RSS of this bench driver: {rss:.0f} MiB)")


if __name__ == "__main__":
    main()
