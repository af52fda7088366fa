"""Parity (issue 17): a parity drive computed from the source; any one lost data drive rebuilt
from it and the others.  Real loop-mounted ext4 drives (root); the rebuilt files are checked
against the source by rsync, which shares no code with the tool."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from helpers import Bay, Drives, backup, bay_args, files_on, label_of, make_tree, mvc_argv, mvc_env, run_mvc

VOLUME_SIZE = "300K"  # the tree below (about 800 KiB) takes three volumes


def drive_roles(drives: Drives, images: list[Path]) -> tuple[dict[int, Path], Path, dict[int, set[str]]]:
    """Which image is which data volume, which is the parity drive, and the files on each volume
    (walked on the drive, not read from the tool's records)."""
    volumes: dict[int, Path] = {}
    held: dict[int, set[str]] = {}
    parity = None
    with drives.inspect(images) as points:
        for img, point in zip(images, points):
            if not (point / ".mvcopy-label.json").exists():
                continue
            label = label_of(point)
            if label.get("role") == "parity":
                parity = img
            else:
                volumes[label["volume"]] = img
                held[label["volume"]] = files_on(point)
    assert parity is not None, "no parity drive was written"
    return volumes, parity, held


def wipe(drives: Drives, image: Path) -> None:
    """The drive is lost: a new empty filesystem over it."""
    drives.image(image.stem, image.stat().st_size // 1024)


def rebuild(tmp_path: Path, bay: Bay, lost: int, to: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_mvc(
        "--restore",
        "--to",
        str(to),
        "-f",
        str(tmp_path / "job.json"),
        "-o",
        str(bay.point),
        "--new-volume-script",
        bay.script,
        "--lost-volume",
        str(lost),
        *extra,
        cwd=tmp_path,
    )


def differences(src: Path, rebuilt: Path, paths: set[str]) -> str:
    """What rsync (by checksum, with modes, times and links) finds different between the source
    and the rebuilt tree, for ``paths``; and any file rebuilt that should not be."""
    listing = rebuilt.parent / f"{rebuilt.name}.list"
    listing.write_text("".join(f"{p}\n" for p in sorted(paths)))
    out = subprocess.run(
        ["rsync", "-rlptcn", "--itemize-changes", f"--files-from={listing}", f"{src}/", f"{rebuilt}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    extra = files_on(rebuilt) - paths
    return out + (f"\nnot on the lost volume: {sorted(extra)}" if extra else "")


def first_backup(tmp_path: Path, drives: Drives, bay: Bay, *extra: str, link: bool = False) -> list[Path]:
    make_tree(tmp_path / "src", n_files=40, big=3)
    if link:
        os.link(tmp_path / "src/zeta/big 0.dat", tmp_path / "src/zeta/big 0 again.dat")
    images = [drives.image(f"d{k}", 2048) for k in range(5)]
    bay.enqueue(*images[1:])
    bay.insert(images[0])
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE, "--parity", "1", *extra)
    assert r.returncode == 0, r.stderr
    assert bay.swaps()[-1][1] == "P1", "the parity drive is asked for last, as P1"
    assert "parity drive P1 updated" in r.stderr
    bay.eject()
    return images


def rebuild_and_check(
    tmp_path: Path,
    drives: Drives,
    bay: Bay,
    images: list[Path],
    lost: int,
    tag: str,
    first: Optional[Path] = None,
) -> None:
    """Lose volume ``lost`` (mkfs), rebuild it with the source away, check it against the source;
    ``first``: a drive offered before the parity drive (its refusal is in ``rebuilt-TAG.stderr``)."""
    volumes, parity, held = drive_roles(drives, images)
    assert len(volumes) >= 3
    wipe(drives, volumes[lost])
    others = [img for v, img in sorted(volumes.items(), reverse=True) if v != lost]  # any order
    if first is None:
        bay.enqueue(*others)
        bay.insert(parity)
    else:
        bay.enqueue(parity, *others)
        bay.insert(first)
    to = tmp_path / f"rebuilt-{tag}"
    src = tmp_path / "src"
    src.rename(tmp_path / "src-away")  # the server is gone too: the rebuild reads only drives
    try:
        r = rebuild(tmp_path, bay, lost, to)
    finally:
        (tmp_path / "src-away").rename(src)
    bay.eject()
    (tmp_path / f"rebuilt-{tag}.stderr").write_text(r.stderr)
    assert r.returncode == 0, r.stderr
    assert held[lost], "the lost volume held files"
    assert differences(tmp_path / "src", to, held[lost]) == ""
    assert not (to / ".mvcopy-rebuild").exists()


def test_a_lost_data_drive_is_rebuilt_exactly_from_the_parity_drive_and_the_others(drives, bay, tmp_path):
    images = first_backup(tmp_path, drives, bay, link=True)
    status = run_mvc("--status", "-f", str(tmp_path / "job.json"), cwd=tmp_path)
    assert status.returncode == 0 and "parity P1 current" in status.stdout.splitlines()[0], status.stdout
    _, _, held = drive_roles(drives, images)
    lost = next(v for v, paths in held.items() if "zeta/big 0 again.dat" in paths)
    rebuild_and_check(tmp_path, drives, bay, images, lost, "lost")
    rebuilt = tmp_path / "rebuilt-lost/zeta"
    assert (rebuilt / "big 0.dat").stat().st_ino == (rebuilt / "big 0 again.dat").stat().st_ino


def test_after_a_rerun_with_changes_each_volume_in_turn_is_rebuilt_exactly(drives, bay, tmp_path):
    images = first_backup(tmp_path, drives, bay)
    volumes, parity, held = drive_roles(drives, images)
    src = tmp_path / "src"
    on1 = sorted(p for p in held[1] if (src / p).is_file() and not (src / p).is_symlink())
    on3 = sorted(p for p in held[3] if (src / p).is_file() and not (src / p).is_symlink())
    big = [p for p in on1 if (src / p).stat().st_size > 4096]
    (src / on1[0]).unlink()  # deleted
    changed = src / big[-1]
    changed.write_bytes(os.urandom(changed.stat().st_size))  # same size, other bytes
    moved = src / big[0]
    moved.rename(moved.with_name("moved " + moved.name))  # moved (renamed on its drive)
    with open(src / big[1], "ab") as fh:
        fh.write(os.urandom(5000))  # grown
    (src / on3[0]).write_bytes(os.urandom(9000))  # rewritten, grown or shrunk
    (src / "zeta" / "new one.bin").write_bytes(os.urandom(20000))  # new
    bay.enqueue(*[volumes[v] for v in sorted(volumes)], parity)
    bay.insert(parity)  # left in the bay since the last run: refused as a data drive
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE)  # the job keeps its parity
    assert r.returncode == 0, r.stderr
    assert "drive refused: it is the parity drive P1 of this job; insert a data drive" in r.stderr
    assert "parity drive P1 updated" in r.stderr
    bay.eject()
    record = json.loads((tmp_path / "job.json.parity-1.json").read_text())
    assert record["invalid"] == [] and record["left_out"] == []
    for lost in sorted(volumes):  # each volume in turn: lost, rebuilt, then its drive put back
        kept = tmp_path / f"volume-{lost}.img"
        shutil.copyfile(volumes[lost], kept)
        rebuild_and_check(tmp_path, drives, bay, images, lost, f"lost-{lost}")
        os.replace(kept, volumes[lost])


def test_a_source_changed_after_its_drive_was_written_is_reported_unprotected_not_rebuilt_wrong(
    drives, bay, tmp_path
):
    src = tmp_path / "src"
    make_tree(src, n_files=40, big=3)
    victim = src / "zeta" / "big 1.dat"
    # Between the data drives and the parity drive the source changes: the drive holds the old
    # bytes, the source the new ones.
    changer = tmp_path / "change.sh"
    changer.write_text(
        f'if [ "$MVCOPY_NEXT" = P1 ]; then printf x | dd of="{victim}" bs=1 seek=5 conv=notrunc '
        f"2>/dev/null; fi\nexec {bay.script}\n"
    )
    images = [drives.image(f"d{k}", 2048) for k in range(5)]
    bay.enqueue(*images[1:])
    bay.insert(images[0])
    args = bay_args(tmp_path, bay, "--volume-size", VOLUME_SIZE, "--parity", "1")
    r = run_mvc(*[f"sh {changer}" if a == bay.script else a for a in args], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "does not protect 1 file" in r.stderr and "big 1.dat" in r.stderr
    bay.eject()
    volumes, parity, held = drive_roles(drives, images)
    lost = next(v for v, paths in held.items() if "zeta/big 1.dat" in paths)
    status = run_mvc("--status", "--json", "-f", str(tmp_path / "job.json"), cwd=tmp_path)
    doc = json.loads(status.stdout)
    assert doc["parity"]["volumes"][str(lost)]["unprotected_files"] == 1, doc["parity"]
    wipe(drives, volumes[lost])
    bay.enqueue(*[img for v, img in volumes.items() if v != lost])
    bay.insert(parity)
    to = tmp_path / "rebuilt"
    r = rebuild(tmp_path, bay, lost, to)
    bay.eject()
    assert r.returncode == 1, r.stderr
    assert "zeta/big 1.dat: the parity drive P1 does not protect it" in r.stderr
    assert not (to / "zeta" / "big 1.dat").exists(), "never left under its final name"
    assert differences(src, to, held[lost] - {"zeta/big 1.dat"}) == ""


def parity_map(tmp_path: Path) -> dict[str, list[list]]:
    return json.loads((tmp_path / "job.json.parity-map.json").read_text())["volumes"]


def test_a_parity_update_killed_midway_claims_no_block_it_had_not_committed_and_the_next_run_finishes_it(
    drives, bay, tmp_path
):
    images = first_backup(tmp_path, drives, bay)
    volumes, parity, held = drive_roles(drives, images)
    src = tmp_path / "src"
    # Rewrite (same sizes) the files of volume 1 past block ``cut``: the parity of their blocks
    # is computed again; the files of volume ``lost`` below ``cut`` keep theirs.
    runs = {
        int(v): [(row[0], row[1], row[1] + row[2]) for row in rows if row[2]]
        for v, rows in parity_map(tmp_path).items()
    }
    lost = max((v for v in runs if v != 1), key=lambda v: len(runs[v]))
    cut = sorted(stop for _, _, stop in runs[lost])[len(runs[lost]) // 2]
    changed = [run for run in runs[1] if run[1] >= cut]
    ok = [path for path, _, stop in runs[lost] if stop <= cut]
    assert changed and ok
    for path, _, _ in changed:
        (src / path).write_bytes(os.urandom((src / path).stat().st_size))
    bay.enqueue(parity)  # only volume 1 changed
    bay.insert(volumes[1])
    r = run_mvc(
        *bay_args(tmp_path, bay, "--volume-size", VOLUME_SIZE),
        cwd=tmp_path,
        env_extra={"MVCOPY_FAULT": "parity:written"},
        start_new_session=True,
    )
    assert r.returncode == -9, r.stderr
    bay.eject()
    with drives.inspect([parity]) as (point,):
        record = json.loads((point / ".mvcopy-parity.json").read_text())
    invalid = record["invalid"]
    for _, start, stop in changed:  # the blocks being written are not claimed
        assert any(a <= start and stop <= b for a, b in invalid), (start, stop, invalid)

    # A rebuild now: what the cut update touched is reported, never rebuilt wrong.
    bay.enqueue(*[img for v, img in sorted(volumes.items(), reverse=True) if v != lost])  # not its own
    bay.insert(parity)
    to = tmp_path / "rebuilt-cut"
    r = rebuild(tmp_path, bay, lost, to)
    bay.eject()
    problems = [line for line in r.stderr.splitlines() if line.startswith("FAILED")]
    assert problems and all("was never completed" in line for line in problems), r.stderr
    failed = {line[len("FAILED ") :].split(": ", 1)[0] for line in problems}
    assert not failed & set(ok), "files whose blocks the cut update did not touch are rebuilt"
    assert differences(src, to, held[lost] - failed) == ""

    # The next run finishes the parity (nothing else to do: it asks for P1 alone).
    bay.enqueue(parity)
    bay.insert(volumes[1])
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE)
    assert r.returncode == 0, r.stderr
    assert "parity drive P1 updated" in r.stderr
    bay.eject()
    rebuild_and_check(tmp_path, drives, bay, images, 2, "after")


def test_the_parity_record_is_committed_only_after_the_parity_is_synced(tmp_path, drives, bay):
    if shutil.which("strace") is None:
        pytest.skip("strace is missing: it watches the order of fsync, syncfs and rename")
    trace = tmp_path / "strace.log"
    make_tree(tmp_path / "src", n_files=40, big=3)
    images = [drives.image(f"d{k}", 2048) for k in range(5)]
    bay.enqueue(*images[1:])
    bay.insert(images[0])
    calls = "trace=syncfs,fsync,fdatasync,rename,renameat,renameat2"
    r = subprocess.run(
        ["strace", "-f", "-qq", "-y", "-e", calls, "-o", str(trace)]
        + mvc_argv(*bay_args(tmp_path, bay, "--volume-size", VOLUME_SIZE, "--parity", "1")),
        cwd=tmp_path,
        env=mvc_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    data_synced = drive_synced = False
    commits = []
    drive = re.escape(str(bay.point))
    for line in trace.read_text().splitlines():
        call = line.split(None, 1)[1]
        if re.match(r"f(data)?sync\(\d+<[^>]*\.mvcopy-parity-1\.bin>", call):
            data_synced = True
        elif re.match(rf"syncfs\(\d+<{drive}>", call):
            drive_synced = True
        elif re.match(r'rename\w*\(.*"[^"]*\.mvcopy-parity\.json"', call):
            commits.append((data_synced, drive_synced))
            data_synced = drive_synced = False
    assert len(commits) >= 2, "no parity record commits seen"
    assert commits[-1] == (True, True), (
        f"the record claiming the new parity went in place before its sync: {commits}"
    )


def test_a_parity_drive_too_small_is_refused_in_one_line_and_the_data_drives_stay_saved(
    drives, bay, tmp_path
):
    make_tree(tmp_path / "src", n_files=40, big=3)
    images = [drives.image(f"d{k}", 2048) for k in range(4)]
    small = drives.image("small", 400)
    bay.enqueue(*images[1:4], small)
    bay.insert(images[0])
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE, "--parity", "1")
    assert r.returncode == 5, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("multivolumecopy: the drive at ") and "too small for the parity drive P1" in last
    assert "Traceback" not in r.stderr
    bay.eject()
    with drives.inspect([small]) as (point,):
        assert not (point / ".mvcopy-label.json").exists(), "a drive refused is not labelled"
    job = json.loads((tmp_path / "job.json").read_text().split('\n "files"')[0].rstrip(",") + "}")
    assert job["run"]["state"] == "done" and job["failed"] == []


def test_lost_volume_goes_with_restore_and_takes_no_pattern(tmp_path):
    r = run_mvc("--lost-volume", "2", str(tmp_path), "-o", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "--lost-volume goes with --restore" in r.stderr
    r = run_mvc(
        "--restore",
        "--to",
        str(tmp_path / "to"),
        "-o",
        str(tmp_path),
        "--lost-volume",
        "2",
        "x",
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "give no PATTERN" in r.stderr
    r = run_mvc(str(tmp_path), "-o", str(tmp_path), "--parity", "2", cwd=tmp_path)
    assert r.returncode == 2 and "--parity" in r.stderr


def test_parity_given_to_an_old_job_visits_each_volume_once_and_then_protects_them_all(drives, bay, tmp_path):
    """--parity 1 on a job that has volumes: the map needs what each drive holds, so the run
    asks for every volume (one with nothing to change only has its copies refreshed), then for
    the parity drive; a volume that nothing changed is then rebuilt exactly."""
    make_tree(tmp_path / "src", n_files=40, big=3)
    images = [drives.image(f"d{k}", 2048) for k in range(6)]
    bay.enqueue(*images[1:4])
    bay.insert(images[0])
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE)
    assert r.returncode == 0, r.stderr
    bay.eject()
    volumes, _, held = drive_roles_without_parity(drives, images[:4])
    assert len(volumes) >= 3, "the test wants three data volumes or more"
    src = tmp_path / "src"
    path = sorted(p for p in held[1] if (src / p).is_file() and (src / p).stat().st_size > 100)[0]
    (src / path).write_bytes(os.urandom(5000))
    bay.enqueue(*[volumes[v] for v in sorted(volumes) if v != 1], images[5])
    bay.insert(volumes[1])
    r = backup(tmp_path, bay, "--volume-size", VOLUME_SIZE, "--parity", "1")
    assert r.returncode == 0, r.stderr
    assert "parity drive P1 updated" in r.stderr
    for v in volumes:
        if v != 1:
            assert f"volume {v} done: " in r.stderr and "nothing on it needed changing" in r.stderr
    doc = json.loads(run_mvc("--status", "--json", "-f", str(tmp_path / "job.json"), cwd=tmp_path).stdout)
    assert doc["parity"]["current"], doc["parity"]
    bay.eject()
    untouched = max(volumes)
    rebuild_and_check(tmp_path, drives, bay, images[:4] + [images[5]], untouched, "old")


def drive_roles_without_parity(
    drives: Drives, images: list[Path]
) -> tuple[dict[int, Path], None, dict[int, set[str]]]:
    volumes: dict[int, Path] = {}
    held: dict[int, set[str]] = {}
    with drives.inspect(images) as points:
        for img, point in zip(images, points):
            if (point / ".mvcopy-label.json").exists():
                volumes[label_of(point)["volume"]] = img
                held[label_of(point)["volume"]] = files_on(point)
    return volumes, None, held
