"""How much of a drive's free space a volume fills with backed-up data before it is called full,
and what the tool's own records cost on it.

    python bench/space.py [--drives 68M:/usr/share/doc,2G:/usr/lib,1G:synthetic] [--images DIR]

Root only (loop-mounted ext4 drives from loopdrives.py).  For each SIZE:SOURCE, a new ext4
drive of SIZE is the first volume of a new job over SOURCE (a tree larger than the drive,
with no file larger than the drive; ``synthetic``: 1.3 times the drive in files of 0.5-1.5 MiB
of random bytes, made in a temporary folder, so that the drive is about a thousand times
larger than the job's records): the run fills it and stops at the swap (exit 3: no next
drive is given).  Then
it counts, on the drive, the space its files and folders take (allocated blocks), the space the
tool's records take (``.mvcopy*``), and what is left free; and, from the jobfile, the size of
the entry that did not fit (the next in index order: the volume ends there, so that each drive
holds whole, contiguous folders) and the room the tool kept for its records (twice the jobfile:
the copy on the drive is replaced by writing the new one beside it).

"Free space" is what ``statvfs`` gives an unprivileged user on the new filesystem (f_bavail):
the part of the drive a backup can use at all.  The records' cost is counted against the data,
and the drive's size against the records (the issue's case: a drive a thousand times larger
than the job's records fills to 99.5 % or more).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from loopdrives import HERE, MiB, compile_tool, fresh_drive, load, mvc

sys.path.insert(0, str(HERE))

from multivolumecopy import jobfile  # noqa: E402
from multivolumecopy.catalog import NO_VOLUME  # noqa: E402


def parse_size(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def allocated(top: Path) -> tuple[int, int]:
    """Bytes allocated to the backed-up tree and to the tool's records on the drive (folders
    included; lost+found, mkfs's own, in neither)."""
    data = records = 0
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d != "lost+found"]
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if rel == "." and name.startswith(".mvcopy"):
                records += st.st_blocks * 512
            else:
                data += st.st_blocks * 512
    return data, records


def synthetic(top: Path, size: int) -> Path:
    """A tree of 1.3 x ``size`` bytes in files of 0.5-1.5 MiB, 100 to a folder."""
    rnd = random.Random(17)
    made = n = 0
    while made < 1.3 * size:
        k = rnd.randrange(MiB // 2, 3 * MiB // 2)
        folder = top / f"f{n // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n:05d}.bin").write_bytes(os.urandom(k))
        made += k
        n += 1
    return top


def one(source: Path, size: int, where: Path) -> dict[str, float]:
    with fresh_drive(where, "space", size) as drive:
        st = os.statvfs(drive.mount)
        free = st.f_bavail * st.f_frsize
        job = where / "job.json"
        r = subprocess.run(mvc(source, [drive.mount], job), shell=True, capture_output=True, text=True)
        if r.returncode not in (0, 3):
            raise SystemExit(f"the backup ended {r.returncode}:\n{r.stderr[-2000:]}")
        data, records = allocated(drive.mount)
        st = os.statvfs(drive.mount)
        left = st.f_bavail * st.f_frsize
        cat = jobfile.load(str(job)).catalog
        nxt = next((i for i in range(len(cat)) if cat.volumes[i] == NO_VOLUME and cat.kind(i) == "f"), None)
        next_size = cat.sizes[nxt] if nxt is not None else 0
        jobsize = job.stat().st_size
        for f in where.glob("job.json*"):
            f.unlink()
        return {
            "size": size,
            "free": free,
            "data": data,
            "records": records,
            "left": left,
            "next": next_size,
            "jobfile": jobsize,
            "entries": sum(1 for v in cat.volumes if v != NO_VOLUME),
            "full": r.returncode == 3,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--drives",
        default="68M:/usr/share/doc,2G:/usr/lib,1G:synthetic",
        help="SIZE:SOURCE pairs, comma-separated (default 68M:/usr/share/doc,2G:/usr/lib,1G:synthetic)",
    )
    ap.add_argument("--images", default="/dev/shm", help="where the drive images live (default /dev/shm)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/space.py: needs root (loop devices and mount)")
    compile_tool()
    print(f"{os.cpu_count()} CPUs, {os.uname().release}; {load()}")
    print(
        f"  {'drive':>8} {'source':>16} {'free MiB':>9} {'entries':>8} {'data MiB':>9} {'data %':>7}"
        f" {'records':>9} {'left MiB':>9} {'next file':>10} {'jobfile':>9} {'drive/records':>14}"
    )
    for pair in args.drives.split(","):
        text, source = pair.split(":", 1)
        with tempfile.TemporaryDirectory(dir=args.images) as tmp, tempfile.TemporaryDirectory() as made:
            src = synthetic(Path(made), parse_size(text)) if source == "synthetic" else Path(source)
            m = one(src, parse_size(text), Path(tmp))
        share = 100 * m["data"] / m["free"]
        print(
            f"  {text:>8} {source:>16} {m['free'] / MiB:9.1f} {m['entries']:8,} {m['data'] / MiB:9.1f}"
            f" {share:6.2f}% {m['records'] / MiB:7.2f}Mi {m['left'] / MiB:9.2f} {m['next'] / MiB:8.2f}Mi"
            f" {m['jobfile'] / MiB:7.2f}Mi {m['size'] / max(m['records'], 1):13,.0f}x"
            + ("" if m["full"] else "  (the whole source fitted: not a full drive)")
        )
    print(
        "  data %: allocated to backed-up files and folders over the new drive's free space;"
        " records: the tool's .mvcopy* files; left: free when the volume was called full;"
        " next file: the entry that did not fit"
    )
    print(f"at the end: {load()}")


if __name__ == "__main__":
    main()
