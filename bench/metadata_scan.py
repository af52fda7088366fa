"""What reading owners, ACLs and extended attributes costs the scan: one ``listxattr`` an
entry, and a ``getxattr`` an attribute found (docs/TECHNICAL_DECISIONS.rst, "Owners, ACLs and
extended attributes").

    python bench/metadata_scan.py WORKDIR [--files 20000] [--runs 5] [--before DIR]

Builds WORKDIR/src (FILES files in folders of 40, a tenth of them with a user.* attribute,
a folder in ten with a default ACL where setfacl is there), then times the scan in one
process with everything kept and with ``--no-acls --no-xattrs`` (no listxattr: the scan as it
was); ``--before DIR`` also times the package found in DIR (an older checkout) for comparison.
Prints the median seconds of each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(src: Path, files: int) -> None:
    if src.exists():
        return
    acl = shutil.which("setfacl")
    for n in range(files):
        folder = src / f"d{n // 40:04d}"
        if n % 40 == 0:
            folder.mkdir(parents=True)
            if acl and (n // 40) % 10 == 0:
                subprocess.run([acl, "-d", "-m", "g:100:rwx", str(folder)], check=True)
        f = folder / f"f{n:06d}"
        f.write_bytes(b"x" * (n % 700))
        if n % 10 == 0:
            os.setxattr(f, "user.tag", b"blue")


def median_scan(src: Path, runs: int, code: str, pythonpath: str) -> float:
    """The median of ``runs`` scans in one process (the first scans of a process run slower)."""
    out = subprocess.run(
        [sys.executable, "-c", code, str(src), str(runs)],
        env={**os.environ, "PYTHONPATH": pythonpath},
        cwd=pythonpath,  # python -c looks in its folder first
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)


TIMED = """
import statistics, sys, time
from multivolumecopy.scan import resolve_sources, scan
{setup}
sources = resolve_sources([sys.argv[1]])
times = []
for _ in range(2 + int(sys.argv[2])):
    t = time.perf_counter()
    scan(sources{keep})
    times.append(time.perf_counter() - t)
print(statistics.median(times[2:]))
"""
BEFORE = TIMED.format(setup="", keep="")
NOW = TIMED.format(
    setup="from multivolumecopy.metadata import Keep\nkeep = Keep(True, {acls}, {acls})", keep=", keep=keep"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir")
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", help="a checkout of an older version, to time its scan too")
    args = ap.parse_args()
    src = Path(args.workdir) / "src"
    build(src, args.files)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.before:
        print(f"before (older checkout):        {median_scan(src, args.runs, BEFORE, args.before):.3f} s")
    print(
        f"--no-acls --no-xattrs:          {median_scan(src, args.runs, NOW.format(acls=False), here):.3f} s"
    )
    print(f"everything kept (listxattr):    {median_scan(src, args.runs, NOW.format(acls=True), here):.3f} s")


if __name__ == "__main__":
    main()
