"""Churn: what a re-run writes after a typical month of changes, against what it must write and
against a contiguous re-fill (the earlier tool re-sorted and re-cut every run).

    python bench/churn.py [--files 20000] [--percent 1] [--volume-size 40M]

Makes a tree, backs it up to directory volumes (a "drawer" script swaps them), then adds
PERCENT % new files at random places, changes and deletes PERCENT/2 % each, renames one
folder, re-runs, and prints bytes written (from the run's change report) with ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
from multivolumecopy.sizes import parse_size  # noqa: E402

DRAWER = r"""
import json, os, sys
out, want, drawer = os.environ["MVCOPY_OUTPUT"], os.environ["MVCOPY_NEXT"], sys.argv[1]
label = os.path.join(out, ".mvcopy-label.json")
if os.path.exists(label):
    os.rename(out, os.path.join(drawer, "vol-%d" % json.load(open(label))["volume"]))
else:
    os.rmdir(out)
wanted = os.path.join(drawer, "vol-" + want)
os.rename(wanted, out) if os.path.isdir(wanted) else os.mkdir(out)
"""


def make_tree(root: Path, files: int, rnd: random.Random) -> None:
    for n in range(files):
        folder = root / f"f{n % 200:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{n:06d}.bin").write_bytes(rnd.randbytes(rnd.randint(1024, 16 * 1024)))


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(HERE))
    r = subprocess.run(
        [sys.executable, "-m", "multivolumecopy", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(f"multivolumecopy failed ({r.returncode}):\n{r.stderr}")
    return r


def contiguous(sizes: list[int], capacity: int) -> list[int]:
    """Volumes the earlier tool would give a sorted list of sizes: cut whenever one is full."""
    vol, used, out = 1, 0, []
    for s in sizes:
        if used + s > capacity and used:
            vol, used = vol + 1, 0
        used += s
        out.append(vol)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--percent", type=float, default=1.0)
    ap.add_argument("--volume-size", default="40M")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="mvc-churn-"))
    src, drawer, out = work / "src", work / "drawer", work / "usb"
    drawer.mkdir()
    out.mkdir()
    (work / "drawer.py").write_text(DRAWER)
    make_tree(src, args.files, rnd)
    common = [
        str(src),
        "-o",
        str(out),
        "-f",
        str(work / "job.json"),
        "--volume-size",
        args.volume_size,
        "--new-volume-script",
        f"{sys.executable} {work / 'drawer.py'} {drawer}",
        "--hide-progress",
    ]
    run(common, work)
    first = json.loads((work / "job.json").read_text())
    capacity = parse_size(args.volume_size)
    files = sorted(p for p in (str(q.relative_to(src)) for q in src.rglob("*")) if (src / p).is_file())
    n = max(1, int(len(files) * args.percent / 100))
    changed = rnd.sample(files, n // 2)
    deleted = rnd.sample([f for f in files if f not in changed], n // 2)
    for f in changed:
        p = src / f
        p.write_bytes(rnd.randbytes(p.stat().st_size))
    for f in deleted:
        (src / f).unlink()
    added = []
    for k in range(n):
        folder = src / f"f{rnd.randrange(200):03d}"
        name = f"new{k:05d}-{rnd.randrange(10**6):06d}.bin"
        (folder / name).write_bytes(rnd.randbytes(rnd.randint(1024, 16 * 1024)))
        added.append(str((folder / name).relative_to(src)))
    must = sum((src / f).stat().st_size for f in added + changed)
    os.rename(src / "f100", src / "renamed-f100")
    run(common, work)
    report = json.loads((work / "job.json.changes.json").read_text())
    wrote = report["counts"]["bytes_written"]
    # The earlier tool: re-sort, re-cut into contiguous volumes, rewrite every file whose
    # volume changed, plus the changed ones.
    old_vol = {row[0]: row[5] for row in first["files"] if row[1] == "f"}
    now = sorted(
        (str(q.relative_to(src)) for q in src.rglob("*") if q.is_file()), key=lambda p: p.replace("/", "\0")
    )
    sizes = [(src / p).stat().st_size for p in now]
    new_vol = contiguous(sizes, capacity)
    refill = sum(s for p, s, v in zip(now, sizes, new_vol) if old_vol.get(p) != v or p in set(changed))
    print(
        f"{args.files} files, {args.percent}% churn: {len(added)} new, {len(changed)} changed, "
        f"{len(deleted)} deleted, one folder of {len(list((src / 'renamed-f100').iterdir()))} renamed"
    )
    print(f"{'bytes new + changed (must write)':<40}{must:>14,}")
    print(f"{'bytes written by multivolumecopy':<40}{wrote:>14,}   {wrote / must:.3f}x must")
    print(f"{'bytes a contiguous re-fill writes':<40}{refill:>14,}   {refill / max(wrote, 1):.1f}x ours")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
