"""What multivolumecopy's sync policy costs, against cp -a with and without a final sync and
against fsync after every file, on the same data in the same run.

    python bench/sync_cost.py [--files 5000] [--dest DIR] [--runs 3]

The destination defaults to a directory beside the data (same disk); give --dest on a
mounted drive to measure that drive.  Prints medians and ratios to ``cp -a && sync``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def make_data(root: Path, files: int) -> int:
    total = 0
    for n in range(files):
        folder = root / f"d{n % 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = 1024 + (n * 7919) % (15 * 1024)
        (folder / f"f{n:06d}").write_bytes(os.urandom(size))
        total += size
    return total


def timed(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def per_file_fsync(src: Path, dst: Path) -> float:
    t = time.perf_counter()
    for dirpath, _dirs, names in os.walk(src):
        out = dst / os.path.relpath(dirpath, src)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as fin, open(out / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
                fout.flush()
                os.fsync(fout.fileno())
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dest", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mvc-sync-"))
    dest_root = args.dest or work
    src = work / "src"
    total = make_data(src, args.files)
    env = dict(os.environ, PYTHONPATH=str(HERE))
    results: dict[str, list[float]] = {}

    def fresh(name: str) -> Path:
        d = dest_root / f"out-{name}"
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run(["sync"], check=True)
        d.mkdir(parents=True)
        return d

    for _ in range(args.runs):
        d = fresh("cp")
        results.setdefault("cp -a", []).append(timed(["cp", "-a", f"{src}/.", str(d)]))
        d = fresh("cpsync")
        results.setdefault("cp -a && sync", []).append(timed(["sh", "-c", f"cp -a '{src}/.' '{d}' && sync"]))
        d = fresh("mvc")
        results.setdefault("multivolumecopy", []).append(
            timed(
                [
                    sys.executable,
                    "-m",
                    "multivolumecopy",
                    str(src),
                    "-o",
                    str(d),
                    "-f",
                    str(work / "job.json"),
                    "--hide-progress",
                ],
                env=env,
            )
        )
        (work / "job.json").unlink()
        d = fresh("fsync")
        results.setdefault("fsync every file", []).append(per_file_fsync(src, d))
    base = statistics.median(results["cp -a && sync"])
    print(f"{args.files} files, {total / 1e6:.0f} MB, destination {dest_root}, {args.runs} runs, medians")
    print(f"{'method':<22}{'seconds':>10}{'vs cp -a && sync':>20}")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"{name:<22}{med:>10.2f}{med / base:>19.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
