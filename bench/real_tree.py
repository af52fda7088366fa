"""A real tree of this machine: a first backup of PATH to a new ext4 filesystem against
``cp -a && sync -f``, paired by round, with CPU seconds; and where the tool's CPU goes.

    python bench/real_tree.py [PATH] [--runs 3] [--images DIR] [--buffered] [--profile] [--top 15]

PATH defaults to /usr/share (as a Debian system ships it: nobody here made it).  Root only:
every copy goes to a new ext4 filesystem (mkfs each time) in an image file in --images
(default: a folder in the system's temporary directory, on the disk), loop-mounted with direct
I/O, so that a sync of the drive (``syncfs``, which this tool makes before it calls a volume
done, and ``sync -f`` after ``cp -a``) waits for the disk under it and not only for the image
file's page cache (--buffered: without direct I/O; --images /dev/shm: a drive in RAM, where
only CPU counts).  The source is read once before, so both methods read it from the cache.
Each round runs both methods, starting with a different one; the ratio is the median of each
round's time over ``cp -a && sync -f``'s in that round.  CPU: user and system seconds of the
command and every process it waited for (getrusage RUSAGE_CHILDREN).

--profile then runs the tool twice more, each on a new drive: once under cProfile (the parent
process: ``python -m cProfile -o OUT -m multivolumecopy ...``), once under py-spy (``py-spy
record --native --subprocesses``: the parent, the copy workers and the scan's helpers, with
the C functions they are in, so that time in SHA-256, in system calls and in the interpreter
can be told apart).  Without py-spy on PATH (``pip install py-spy``), a worker's copy function
(copier.worker.copy_batch) is profiled in this process with cProfile on a sample of the tree,
its batches pickled and unpickled as the pool's pipes do.  Prints the top functions by own and
by cumulative time, and the share of each process's samples by kind of work.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import os
import pickle
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from loopdrives import ENV, HERE, Drive, MiB, compile_tool, fresh_drive, listing, load, mvc, paired, timed

CP = "cp -a && sync -f"
TOOL = "multivolumecopy"


def tree_size(src: Path) -> tuple[int, int]:
    """Entries below ``src`` and the bytes of its files."""
    entries = size = 0
    for dirpath, dirs, names in os.walk(src):
        entries += len(dirs) + len(names)
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            size += st.st_size if not os.path.islink(os.path.join(dirpath, name)) else 0
    return entries, size


class Drives:
    """A new ext4 drive for every copy, sized for the tree."""

    def __init__(self, images: Path, entries: int, size: int, direct_io: bool):
        self.images, self.direct_io = images, direct_io
        self.size = int(size * 1.3) + entries * 8192 + 256 * MiB
        self.inodes = int(entries * 1.3) + 10_000
        self.made = 0

    def new(self) -> contextlib.AbstractContextManager[Drive]:
        self.made += 1
        return fresh_drive(
            self.images, f"drive{self.made}", self.size, inodes=self.inodes, direct_io=self.direct_io
        )


def first_backups(src: Path, drives: Drives, work: Path, runs: int) -> dict[str, list]:
    """Both methods ``runs`` times, each onto a new drive; each copy checked against the source."""
    want = listing([src])
    methods = {
        TOOL: lambda d, job: mvc(src, [d.mount], job),
        CP: lambda d, job: f"cp -a {src}/. {d.mount}/ && sync -f {d.mount}",
    }
    results: dict[str, list] = {label: [] for label in methods}
    order = list(methods.items())
    for rnd in range(runs):
        for label, method in order[rnd % 2 :] + order[: rnd % 2]:
            job = work / f"job-{rnd}-{len(results[label])}.json"
            with drives.new() as drive:
                if drives.direct_io and not drive.direct_io():
                    print(f"  (the kernel gave {drive.loop} no direct I/O: it writes through the page cache)")
                took = timed(method(drive, job))
                if listing([drive.mount]) != want:
                    raise RuntimeError(f"{label} did not copy {src} whole onto {drive.mount}")
            results[label].append(took)
            print(f"  round {rnd + 1}: {label:<18} {took.wall:7.2f} s, CPU {took.cpu:6.2f} s", flush=True)
    return results


def report(results: dict[str, list], runs: int) -> list[str]:
    base = [t.wall for t in results[CP]]
    base_cpu = [t.cpu for t in results[CP]]
    lines = [
        f"  {'method':<20}{'median s':>9}{'ratio':>8}{'(range)':>12}{'user s':>8}{'sys s':>8}{'CPU s':>8}"
    ]
    lines[0] += f"{'CPU ratio':>11}"
    for label, timings in results.items():
        walls = [t.wall for t in timings]
        ratios = paired(walls, base)
        cpu_ratio = statistics.median(paired([t.cpu for t in timings], base_cpu))
        lines.append(
            f"  {label:<20}{statistics.median(walls):>9.2f}{statistics.median(ratios):>7.2f}x"
            f"{min(ratios):>6.2f}-{max(ratios):<5.2f}{statistics.median(t.user for t in timings):>8.2f}"
            f"{statistics.median(t.sys for t in timings):>8.2f}"
            f"{statistics.median(t.cpu for t in timings):>8.2f}{cpu_ratio:>10.2f}x"
        )
    lines.append(f"  medians of {runs} rounds; ratios paired by round, over {CP!r}")
    return lines


# -- where the CPU goes ----------------------------------------------------------------------


def short(path: str) -> str:
    """A code path as the reader knows it: the package's own, or the standard library's."""
    for marker in ("multivolumecopy/", "lib/python3"):
        if marker in path:
            cut = path.index(marker)
            return path[cut:] if marker == "multivolumecopy/" else path[cut + len("lib/") :]
    return path


# What every profile of the tool starts with: left out of the lists, where they would only
# fill the top of the cumulative one.
WRAPPERS = ("<frozen runpy>", "<string>", "builtins.exec", "multivolumecopy/__main__.py")


def by_own(row: tuple[str, float, float, int]) -> float:
    return row[1]


def by_cumulative(row: tuple[str, float, float, int]) -> float:
    return row[2]


def cprofile_parent(src: Path, drives: Drives, work: Path, top: int) -> list[str]:
    """The parent process under cProfile, on a new drive: its top functions."""
    out = work / "parent.prof"
    with drives.new() as drive:
        cmd = mvc(src, [drive.mount], work / "job-cprofile.json")
        timed(cmd.replace(" -m multivolumecopy ", f" -m cProfile -o {out} -m multivolumecopy ", 1))
    stats = pstats.Stats(str(out))
    rows = [
        (f"{short(file)}:{line}({func})" if line else func, tt, ct, nc)
        for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items()  # type: ignore[attr-defined]
    ]
    rows = [r for r in rows if not any(mark in r[0] for mark in WRAPPERS)]
    total = stats.total_tt  # type: ignore[attr-defined]
    lines = [f"parent process under cProfile: {total:.2f} s in all (its waits for the workers included)"]
    for title, key in (("by own time", by_own), ("by cumulative time", by_cumulative)):
        lines.append(f"  top {top} {title}:")
        for name, tt, ct, nc in sorted(rows, key=key, reverse=True)[:top]:
            lines.append(f"    {tt:7.2f} own {ct:7.2f} cum {nc:>9,} calls  {name}")
    return lines


FRAME = re.compile(r"^(?P<func>.*?) \((?P<where>.*?)(?::\d+)?\)$")
WAITS = ("poll", "select", "epoll_wait", "futex", "pthread_cond", "sem_", "nanosleep", "wait4", "waitpid")
SYNCS = ("syncfs", "fsync", "fdatasync", "sync_file_range")
# Frames every sample of a process has (start-up, the multiprocessing bootstrap): left out of
# the cumulative lists, where they would only fill the top.
BOOT = ("<frozen runpy>", "multiprocessing/spawn.py", "multiprocessing/process.py", "(<string>)")
IPC = ("multiprocessing/connection.py", "_pickle", "pickle.py", "copier/protocol.py")


def kind_of(frames: list[str]) -> str:
    """What a sample is doing, by the frames of its stack (outermost first)."""
    leaf = frames[-1]
    if "libcrypto" in leaf or "sha256" in leaf.lower():
        return "SHA-256"
    if any(any(mark in f for mark in IPC) for f in frames):
        return "pickling and pipes"
    match = FRAME.match(leaf)
    func = match.group("func") if match else leaf
    if "libc.so" in leaf or func.startswith("__"):
        if any(func.startswith(w) or func.startswith("__" + w) for w in WAITS):
            return "waiting (poll, locks, sleep)"
        if func.startswith(SYNCS):
            return "syncs (waiting for the drive)"
        return "system calls"
    if "libpython" in leaf or ".py" in leaf or "<" in leaf:
        return "Python (interpreter)"
    return "other native code"


def split_stack(stack: str) -> list[str]:
    """A raw py-spy stack's frames, outermost first: a process frame quotes its command line,
    whose own ``;`` (``python -c "...; spawn_main(...)"``) does not end the frame."""
    frames: list[str] = []
    for piece in stack.split(";"):
        if frames and frames[-1].startswith("process ") and frames[-1].count('"') % 2:
            frames[-1] += ";" + piece
        else:
            frames.append(piece)
    return frames


def role_of(frames: list[str]) -> str:
    processes = [f for f in frames if f.startswith("process ")]
    if len(processes) == 1:
        return "parent"
    if "spawn_main" in processes[-1]:
        return "resource tracker" if "resource_tracker" in processes[-1] else "copy workers"
    return "scan helpers (forked)"


def name_of(frame: str) -> str:
    match = FRAME.match(frame)
    return f"{match.group('func')} ({short(match.group('where'))})" if match else frame


def py_spy(src: Path, drives: Drives, work: Path, top: int) -> list[str]:
    """Every process of a run under py-spy, on a new drive: kinds of work and top functions."""
    raw = work / "spy.txt"
    with drives.new() as drive:
        cmd = mvc(src, [drive.mount], work / "job-spy.json")
        timed(f"py-spy record --native --subprocesses --rate 200 --format raw --output {raw} -- {cmd}")
    samples: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    own: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    cum: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = split_stack(stack)
        role, n = role_of(frames), int(count)
        samples[role][kind_of(frames)] += n
        code = [f for f in frames if not f.startswith("process ")]
        named = [f for f in code if not f.startswith("0x")]  # a C function without a symbol: by its caller
        leaf = name_of(code[-1])
        if named and code[-1].startswith("0x"):
            leaf = f"C code of {code[-1].split()[-1]} in {name_of(named[-1])}"
        own[role][leaf] += n
        for name in {name_of(f) for f in code}:
            if not name.startswith("0x") and not any(mark in name for mark in BOOT):
                cum[role][name] += n
    lines = ["every process under py-spy (200 samples a second of each, while on a CPU or in a system call):"]
    for role in sorted(samples, key=lambda r: -sum(samples[r].values())):
        total = sum(samples[role].values())
        kinds = ", ".join(f"{k} {100 * n / total:.0f} %" for k, n in samples[role].most_common())
        lines.append(f"  {role}: {total / 200:.2f} s sampled; {kinds}")
        if role not in ("parent", "copy workers"):
            continue
        for title, counter in (("own", own[role]), ("cumulative", cum[role])):
            lines.append(f"    top {top} by {title} time:")
            for name, n in counter.most_common(top):
                lines.append(f"      {100 * n / total:5.1f} %  {name}")
    return lines


class NoStop:
    """The pool's stop flag, never set."""

    def is_set(self) -> bool:
        return False


def items_of(src: Path, limit: int) -> Iterator[tuple[int, str, str, int, int, int, str | None, None]]:
    """The first ``limit`` entries of the tree in the catalog's order, as the copy items' rows."""
    from multivolumecopy.catalog import DIR, FILE, LINK

    n = 0
    for dirpath, dirs, names in os.walk(src):
        dirs.sort()
        for name in sorted(dirs + names):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = LINK if os.path.islink(path) else DIR if os.path.isdir(path) else FILE
            target = os.readlink(path) if kind == LINK else None
            size = st.st_size if kind == FILE else 0
            yield (n, os.path.relpath(path, src), kind, size, st.st_mtime_ns, st.st_mode, target, None)
            n += 1
            if n >= limit:
                return


def in_process_worker(src: Path, drives: Drives, top: int, sample: int) -> list[str]:
    """The worker's copy function under cProfile in this process, on a sample of the tree."""
    sys.path.insert(0, str(HERE))
    from multivolumecopy.catalog import DIR
    from multivolumecopy.copier.protocol import CopyItem, make_batches
    from multivolumecopy.copier.worker import copy_batch

    rows = [r for r in items_of(src, sample) if r[2] != DIR]  # folders are made as their files' parents
    with drives.new() as drive:
        tmp = drive.mount / ".mvcopy-tmp"
        tmp.mkdir()
        items = (CopyItem(*row) for row in rows)
        profile = cProfile.Profile()
        profile.enable()
        for batch in make_batches(items, str(src), str(drive.mount), str(tmp), "bench"):
            batch = pickle.loads(pickle.dumps(batch))  # as the pipe carries it, both ways
            pickle.loads(pickle.dumps(copy_batch(batch, NoStop(), lambda _: None)))
        profile.disable()
    stats = pstats.Stats(profile)
    rows_out = [
        (f"{short(file)}:{line}({func})" if line else func, tt, ct, nc)
        for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items()  # type: ignore[attr-defined]
    ]
    lines = [f"a worker's copy function in this process (cProfile), {len(rows):,} entries:"]
    for title, key in (("own", by_own), ("cumulative", by_cumulative)):
        lines.append(f"  top {top} by {title} time:")
        for name, tt, ct, _ in sorted(rows_out, key=key, reverse=True)[:top]:
            lines.append(f"    {tt:7.3f} own {ct:7.3f} cum  {name}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="/usr/share", help="the tree to back up (default /usr/share)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--images", default=None, help="where the drive images live (default: a temporary folder)"
    )
    ap.add_argument("--buffered", action="store_true", help="loop devices without direct I/O")
    ap.add_argument("--profile", action="store_true", help="then profile the parent and the workers")
    ap.add_argument("--no-timing", action="store_true", help="with --profile: only the profiles")
    ap.add_argument("--in-process", action="store_true", help="profile the worker's copy function in-process")
    ap.add_argument("--top", type=int, default=15, help="functions listed in each profile")
    ap.add_argument("--sample", type=int, default=20_000, help="entries for the in-process worker profile")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the drives are cleaned up on the way out
    if os.geteuid() != 0:
        print("real_tree.py needs root (loop devices, mount)", file=sys.stderr)
        return 2
    src = Path(args.path).resolve()
    if not src.is_dir():
        print(f"real_tree.py: {src} is not a folder", file=sys.stderr)
        return 2
    compile_tool()
    started = time.perf_counter()
    print(f"{os.cpu_count()} CPUs, {os.uname().release}; at the start: {load()}", flush=True)
    entries, size = tree_size(src)
    print(f"{src}: {entries:,} entries, {size / 1e9:.2f} GB of files", flush=True)
    subprocess.run(f"find {src} -type f -exec cat {{}} + > /dev/null", shell=True, check=True)
    work = Path(tempfile.mkdtemp(prefix="mvc-real-"))
    images = Path(tempfile.mkdtemp(prefix="mvc-real-drives-", dir=args.images))
    drives = Drives(images, entries, size, direct_io=not args.buffered)
    try:
        if not args.no_timing:
            how = "buffered" if args.buffered else "direct I/O"
            print(f"first backup of {src} to a new ext4 ({images}, {how})")
            results = first_backups(src, drives, work, args.runs)
            print("\n".join(report(results, args.runs)), flush=True)
        if args.profile:
            print("\n".join(cprofile_parent(src, drives, work, args.top)), flush=True)
            if shutil.which("py-spy", path=ENV.get("PATH")) and not args.in_process:
                print("\n".join(py_spy(src, drives, work, args.top)), flush=True)
            else:
                why = "--in-process" if args.in_process else "no py-spy on PATH (pip install py-spy)"
                print(f"{why}: the worker's copy function in this process")
                print("\n".join(in_process_worker(src, drives, args.top, args.sample)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(images, ignore_errors=True)
    print(f"at the end: {load()}; {time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
