"""docs/tutorial.rst, run as written, and the scripts it ships (data/examples/).

Every ``.. code-block:: bash`` of the tutorial is run in order, each command with bash as it
is written, in a mount namespace of the test's own (as root: ``unshare --mount``) where
``/srv`` and ``/mnt`` are empty folders of the test and ``/usr/local`` takes writes in a
throwaway layer (overlayfs): ``/srv/share``, ``/mnt/usb`` and ``/usr/local/bin/next-drive``
are literally those, and nothing outside is touched. The drives are four loop-attached ext4
images labelled ``backup-1`` to ``backup-4``, as in a dock; ``multivolumecopy`` on the
``PATH`` is this source tree's. A comment ``.. tutorial-test: ...`` just before a block says
how to run it (see the tutorial's own comment at its top); a line ``# ...`` after a command
is output it must print.

The story between the commands (a month of changes to the share, a lost drive, a deleted
file, the NAS gone) is done by the test at the start of the section that tells it, and each
section ends with what a user would check: the drives against the share by rsync, the file
back, the tree back.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import importlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pexpect
import pytest

from conftest import IS_ROOT
from helpers import REPO, files_on, leftovers, mvc_env, union_of
from multivolumecopy.parser import build_parser

TUTORIAL = REPO / "docs/tutorial.rst"
EXAMPLES = REPO / "data/examples"
SCRIPTS = ("next-drive", "notify-mail")
MARKERS = ("not run", "at the prompt", "no terminal")
PROMPT = "Press Enter when it is mounted, or type q and Enter to stop: "
# What the namespace gives the tutorial; an absolute path elsewhere in a command run fails
# the test, rather than letting the tutorial write to the machine.
MAPPED = ("/srv/", "/mnt/usb", "/usr/local/bin/")
LABELS = tuple(f"backup-{n}" for n in range(1, 5))
EXCLUDES = ("*.tmp", ".cache")  # the first backup's --exclude
# A drive the test makes: 1 GiB of the tutorial's --device-padding plus room for about
# 6 MiB of the share, which is about 10 MiB: two volumes.
DRIVE_KIB = (1024 + 14) * 1024
BUDGET = "projects/2025/budget.xlsx"
LOCK = Path("/tmp/multivolumecopy-tutorial-test.lock")


# -- the tutorial's blocks -----------------------------------------------------------------


@dataclass
class Command:
    text: str
    output: list[str] = field(default_factory=list)  # "# ..." lines after it: printed by it


@dataclass
class Block:
    section: str
    marker: str  # "" or one of MARKERS
    line: int
    commands: list[Command]


def tutorial_blocks(text: str) -> list[Block]:
    """The ``bash`` code blocks, in order, with their section and ``tutorial-test`` marker."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section, marker, marker_line = "", "", 0
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"([-=~])\1{2,}", nxt) and len(nxt) >= len(line.rstrip()):
            section = line.strip()
        m = re.match(r"\.\. tutorial-test: (.*)", line)
        if m:
            marker = next((k for k in MARKERS if m.group(1).startswith(k)), "")
            assert marker, f"tutorial line {i + 1}: unknown marker {m.group(1)!r} (known: {MARKERS})"
            marker_line = i + 1
        elif line.strip() == ".. code-block:: bash":
            body = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                body.append(lines[i])
                i += 1
            blocks.append(Block(section, marker, i, _commands(body, i)))
            marker = ""
            continue
        elif line.strip() and marker:
            pytest.fail(f"tutorial line {marker_line}: a tutorial-test marker goes just before a code block")
        i += 1
    return blocks


def _commands(body: list[str], where: int) -> list[Command]:
    cmds: list[Command] = []
    pending = ""
    for raw in body:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#") and not pending:
            assert cmds, f"tutorial block ending at line {where}: output shown before any command"
            cmds[-1].output.append(line[1:].strip())
        elif line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
        else:
            cmds.append(Command(pending + line))
            pending = ""
    return cmds


BLOCKS = tutorial_blocks(TUTORIAL.read_text())


def run_commands() -> list[Command]:
    return [c for b in BLOCKS if b.marker != "not run" for c in b.commands]


def option_values(option: str) -> list[str]:
    """The value given to ``option`` in each of the tutorial's multivolumecopy commands."""
    values = []
    for b in BLOCKS:
        for c in b.commands:
            words = shlex.split(c.text, comments=True)
            values += [words[k + 1] for k, w in enumerate(words[:-1]) if w == option]
    return values


# -- what needs no root --------------------------------------------------------------------


def test_every_multivolumecopy_command_of_the_tutorial_parses():
    """With the options spelt out: argparse takes an abbreviation, until a new option makes it
    ambiguous."""
    parser = build_parser()
    options = {o for action in parser._actions for o in action.option_strings}
    commands = [c.text for b in BLOCKS for c in b.commands if c.text.startswith("multivolumecopy ")]
    assert len(commands) >= 8
    for text in commands:
        argv = shlex.split(text, comments=True)[1:]
        for word in argv:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in options, f"{text}\nhas no option {word}"
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"the tutorial's command does not parse: {text}")


def test_the_tutorial_touches_only_what_the_test_gives_it():
    for cmd in run_commands():
        for word in shlex.split(cmd.text, comments=True):
            for path in re.findall(r"(?:^|=)(/[^\s]*)", word):
                assert path.startswith(MAPPED), (
                    f"{cmd.text!r} uses {path}, which tests/test_tutorial.py does not map "
                    f"(it maps {', '.join(MAPPED)}): map it there, or use one of those"
                )


def test_the_tutorial_s_shell_snippets_parse_under_dash():
    """--notify-command and --new-volume-script run through /bin/sh, which is dash on Debian:
    a bashism (``<<<``) there fails every time it runs."""
    snippets = option_values("--notify-command") + option_values("--new-volume-script")
    assert snippets
    for snippet in snippets:
        result = subprocess.run(["dash", "-n", "-c", snippet], capture_output=True, text=True)
        assert result.returncode == 0, f"/bin/sh (dash) rejects {snippet!r}: {result.stderr.strip()}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_example_scripts_are_posix_sh(script):
    path = EXAMPLES / script
    assert os.access(path, os.X_OK), f"{path} is not executable"
    assert path.read_text().startswith("#!/bin/sh\n")
    for shell in ("sh", "dash"):
        result = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{shell} -n {script}: {result.stderr}"
    if shutil.which("checkbashisms"):
        result = subprocess.run(["checkbashisms", "-f", "-p", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_the_example_scripts_are_installed_with_the_package():
    import setuptools  # noqa: F401 - provides distutils where Python no longer does

    run_setup = importlib.import_module("distutils.core").run_setup
    dist = run_setup(str(REPO / "setup.py"), stop_after="init")
    installed = dict(dist.data_files)
    assert sorted(installed["share/multivolumecopy/examples"]) == sorted(
        f"data/examples/{p.name}" for p in EXAMPLES.iterdir()
    )


def notify(tmp_path: Path, *args: str, path: Optional[str] = None, **env: str) -> subprocess.CompletedProcess:
    """notify-mail run through dash as multivolumecopy runs it at the end of a run."""
    full = dict(os.environ, MVCOPY_EVENT="done", MVCOPY_MESSAGE="done: 12 files copied", MVCOPY_EXIT_CODE="0")
    full.update(env)
    if path is not None:
        full["PATH"] = path
    cmd = [shutil.which("dash") or "dash", "-c", 'exec "$0" "$@"', str(EXAMPLES / "notify-mail"), *args]
    return subprocess.run(
        cmd, env=full, capture_output=True, text=True, cwd=tmp_path, stdin=subprocess.DEVNULL
    )


def test_notify_mail_writes_the_event_to_the_file_it_is_given(tmp_path):
    log = tmp_path / "notify.log"
    result = notify(tmp_path, "admin@example.org", NOTIFY_MAIL_FILE=str(log))
    assert result.returncode == 0, result.stderr
    line = log.read_text()
    assert ": done to admin@example.org: done: 12 files copied exit code: 0\n" in line


def test_notify_mail_without_mail_or_sendmail_logs_and_says_so(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("hostname", "logger", "tr", "sed"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    result = notify(tmp_path, "admin@example.org", path=str(bin_dir))
    assert "neither mail nor sendmail is installed" in result.stderr
    assert "done: done: 12 files copied" in result.stderr
    assert result.returncode == 0  # logger took it


def test_next_drive_missing_stops_the_run_with_exit_3_naming_the_drive(tmp_path):
    """A drive that is not plugged in: next-drive says which, and the run stops as documented."""
    src = tmp_path / "src"
    src.mkdir()
    for k in range(4):
        (src / f"f{k}").write_bytes(os.urandom(300_000))
    (tmp_path / "usb").mkdir()
    label = f"mvct{os.getpid()}-"  # a label no drive has
    result = subprocess.run(
        [sys.executable, "-m", "multivolumecopy", str(src), "-o", str(tmp_path / "usb")]
        + ["-f", str(tmp_path / "job.json"), "--volume-size", "700K"]
        + ["--new-volume-script", str(EXAMPLES / "next-drive")],
        env=mvc_env({"NEXT_DRIVE_LABEL": label}),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    assert f"next-drive: no drive with LABEL={label}2 is plugged in (for volume 2)" in result.stderr
    assert "--new-volume-script exited with status 1" in result.stderr


# -- the namespace the tutorial runs in ----------------------------------------------------


class Namespace:
    """A mount namespace where ``/srv`` and ``/mnt`` are ``top/srv`` and ``top/mnt``,
    ``/usr/local`` keeps its files and takes writes in a tmpfs, and this source tree is
    read-only.  A process holds it; commands enter it with nsenter."""

    def __init__(self, top: Path):
        self.top = top
        for name in ("srv", "mnt", "layer", "check"):
            (top / name).mkdir()
        layer, repo = shlex.quote(str(top / "layer")), shlex.quote(str(REPO))
        setup = f"""set -e
mount --bind {shlex.quote(str(top / "srv"))} /srv
mount --bind {shlex.quote(str(top / "mnt"))} /mnt
mount -t tmpfs -o size=64m tmpfs {layer}
mkdir {layer}/upper {layer}/work
mount -t overlay overlay -o lowerdir=/usr/local,upperdir={layer}/upper,workdir={layer}/work /usr/local
mount --bind {repo} {repo}
mount -o remount,bind,ro {repo}
echo ready
exec sleep 900
"""
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != "ready":
            self.holder.wait(10)
            pytest.fail(f"cannot make the tutorial's mount namespace: {self.holder.stderr.read()}")  # type: ignore[union-attr]
        self.pid = self.holder.pid
        self.ns = os.readlink(f"/proc/{self.pid}/ns/mnt")

    def enter(self, command: str) -> list[str]:
        """The argv that runs ``command`` with bash in the namespace, in the source tree."""
        return ["nsenter", "-t", str(self.pid), "-m", f"--wd={REPO}", "--", "bash", "-c", command]

    def run(self, command: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.enter(command),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )

    def path(self, inside: str) -> Path:
        """Where pytest, outside, sees the namespace's ``inside``."""
        return Path(f"/proc/{self.pid}/root{inside}")

    def close(self) -> None:
        """Kill what runs in the namespace; with its last process it goes, and its mounts."""
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/ns/mnt") == self.ns and int(pid) != os.getpid():
                    os.kill(int(pid), signal.SIGKILL)
                    left.append(int(pid))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
        self.holder.wait(10)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{p}") for p in left) and time.monotonic() < deadline:
            time.sleep(0.02)


def labelled(label: str) -> list[str]:
    """Block devices that carry the filesystem label ``label``."""
    out = subprocess.run(
        ["blkid", "-c", "/dev/null", "-o", "device", "-t", f"LABEL={label}"], capture_output=True, text=True
    )
    return [d for d in out.stdout.split() if Path(d).is_block_device()]


@pytest.fixture
def own_labels() -> Iterator[None]:
    """The labels backup-1... to this test alone: one tutorial test at a time on a machine,
    and none beside a real drive of that name (the test would mount it)."""
    with open(LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        taken = {label: labelled(label) for label in LABELS}
        taken = {label: devs for label, devs in taken.items() if devs}
        if taken:
            pytest.skip(
                f"drives labelled as the tutorial's are attached ({taken}); the test will not run beside them"
            )
        yield


# -- the share and what happens to it --------------------------------------------------------


OLD = dt.datetime(2025, 6, 1, 9, 30, tzinfo=dt.timezone.utc).timestamp()
BUDGET_TIME = dt.datetime.fromisoformat("2026-10-30T16:02:11+00:00").timestamp()


def put(root: Path, rel: str, data: bytes, mode: int = 0o644, mtime: float = OLD) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def make_share(share: Path, rnd: random.Random) -> None:
    """About 10 MiB in a few folders, with what a share has: temporary files and caches (which
    the tutorial leaves out), a symlink, an empty folder, odd names and modes."""
    for year in (2019, 2020):
        for k in range(10):
            put(share, f"archive/{year}/scan-{k:02}.bin", rnd.randbytes(400 * 1024))
    put(share, "projects/2024/report.odt", rnd.randbytes(200 * 1024))
    put(share, BUDGET, rnd.randbytes(49357), mtime=BUDGET_TIME)
    put(share, "projects/2025/notes.txt", b"call the bank\n")
    put(share, "projects/2025/~budget.xlsx.tmp", b"lock\n")
    put(share, "projects/.cache/thumbs.db", rnd.randbytes(3000))
    put(share, ".cache/index", rnd.randbytes(5000))
    os.symlink("2025", share / "projects/current")
    for k in range(5):
        put(share, f"scans/2024/scan-{k}.pdf", rnd.randbytes(300 * 1024))
    (share / "inbox").mkdir()
    put(share, "Ärger & Ünïcödé/letter: to the bank.txt", "Sehr geehrte…\n".encode())
    put(share, "private.txt", b"pin\n", mode=0o600)
    put(share, "run-me.sh", b"#!/bin/sh\necho hi\n", mode=0o750)
    for d in ("archive", "projects", "scans", "inbox", "Ärger & Ünïcödé", ""):
        os.utime(share / d, (OLD, OLD))


def a_month_of_changes(share: Path, rnd: random.Random) -> None:
    """A file rewritten on each of the two volumes, new files, a folder renamed, a file
    deleted, a mode changed, and a new temporary file."""
    now = time.time() - 60
    put(share, "archive/2019/scan-03.bin", rnd.randbytes(400 * 1024), mtime=now)
    put(share, "projects/2025/notes.txt", b"call the bank\ncalled: they will write\n", mtime=now)
    put(share, "projects/2026/plan.txt", b"budget 2026\n", mtime=now)
    put(share, "projects/2026/plan.txt.tmp", b"autosave\n", mtime=now)
    for k in range(2):
        put(share, f"scans/2025/scan-{k}.pdf", rnd.randbytes(300 * 1024), mtime=now)
    (share / "scans/2024").rename(share / "scans/2024-done")
    (share / "archive/2020/scan-09.bin").unlink()
    os.chmod(share / "private.txt", 0o640)


def differences(src: Path, other: Path) -> str:
    """What rsync finds different between ``src`` and ``other`` (content by checksum,
    symlinks, modes, times, extras), leaving out what the tutorial excludes.  ``other``'s top
    is a mount point or a restore's target: it gets ``src``'s mode and time first."""
    st = os.stat(src)
    os.chmod(other, st.st_mode & 0o7777)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    excludes = [f"--exclude={p}" for p in EXCLUDES]
    cmd = ["rsync", "-rlptcn", "--delete", "--itemize-changes", *excludes, f"{src}/", f"{other}/"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def samples(section: str) -> list[list[str]]:
    """The tutorial's literal blocks (after ``::``) in ``section``: output it shows."""
    parts = re.split(r"\n(.+)\n-{3,}\n", TUTORIAL.read_text())  # preamble, title, body, title...
    body = dict(zip(parts[1::2], parts[2::2]))[section]
    return [
        [line.strip() for line in m.group(1).splitlines() if line.strip()]
        for m in re.finditer(r"::\n\n((?:    .*\n|\n)+)", body)
    ]


def shows(sample: str, out: str) -> bool:
    """Whether a line of ``out`` says ``sample`` with its own numbers and sizes."""
    number = r"\d+(?:\.\d+)?(?: (?:[KMGT]i)?B)?"
    parts = re.split(number, sample)
    pattern = number.join(re.escape(p) for p in parts)
    return any(re.search(pattern, line) for line in out.splitlines())


def plain(text: str) -> str:
    """Terminal output as a person reads it: no colours or cursor moves, what a \\r overwrote
    gone."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n"))


def words(text: str) -> str:
    return " ".join(text.split())


# -- the run ---------------------------------------------------------------------------------


class Tutorial:
    """Runs the blocks in order as a person at the NAS would, and the story between them."""

    def __init__(self, tmp_path: Path, drives, ns: Namespace):
        self.tmp = tmp_path
        self.drives = drives
        self.ns = ns
        self.share = tmp_path / "srv/share"
        self.rnd = random.Random(19)
        self.notified = tmp_path / "notify.log"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "multivolumecopy"  # the command, from this source tree
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m multivolumecopy "$@"\n')
        wrapper.chmod(0o755)
        self.env = mvc_env(
            {
                "PATH": f"{bin_dir}:/usr/local/bin:{os.environ['PATH']}",
                "TZ": "UTC",
                "PYTHONDONTWRITEBYTECODE": "1",
                "NOTIFY_MAIL_FILE": str(self.notified),  # what notify-mail would have mailed
            }
        )
        for name in list(self.env):
            if name.startswith(("MVCOPY_", "NEXT_DRIVE_")):
                del self.env[name]
        self.drive: dict[str, str] = {}  # label: loop device
        self.images: dict[str, Path] = {}
        for label in LABELS:
            self.plug_in(label)
        self.section = ""
        self.transcript: list[tuple[str, str, str]] = []  # (section, command, what it printed)
        self.asked: list[tuple[str, int]] = []  # (section, volume) at each prompt
        self.budget = b""

    def plug_in(self, label: str, name: str = "") -> None:
        image = self.drives.image(name or label, DRIVE_KIB, label=label)
        self.images[label] = image
        self.drive[label] = self.drives.attach(image)

    # -- running commands

    def run(self) -> None:
        before: dict[str, Callable[[], None]] = {
            "The first backup": lambda: make_share(self.share, self.rnd),
            "The monthly re-run": lambda: a_month_of_changes(self.share, self.rnd),
            "A drive is lost": self.volume_2_falls_off_the_desk,
            "A single file back": self.someone_deletes_the_budget,
            "Everything back": self.the_nas_is_gone,
        }
        after: dict[str, Callable[[], None]] = {
            "The first backup": self.check_first_backup,
            "The monthly re-run": self.check_monthly_run,
            "A drive is lost": self.check_replacement,
            "A single file back": self.check_budget_back,
            "Everything back": self.check_everything_back,
        }
        sections = [b.section for b in BLOCKS]
        missing = [s for s in {**before, **after} if s not in sections]
        assert not missing, f"the test's story hangs on sections the tutorial no longer has: {missing}"
        section = ""
        i = 0
        while i < len(BLOCKS):
            block = BLOCKS[i]
            if block.section != section:
                after.get(section, lambda: None)()
                section = self.section = block.section
                before.get(section, lambda: None)()
            assert block.marker != "at the prompt", (
                f"the block ending at tutorial line {block.line} answers a prompt, but the command "
                "before it never asked for a drive"
            )
            answer = (
                BLOCKS[i + 1] if i + 1 < len(BLOCKS) and BLOCKS[i + 1].marker == "at the prompt" else None
            )
            if block.marker != "not run":
                for k, cmd in enumerate(block.commands):
                    last = k == len(block.commands) - 1
                    if block.marker == "no terminal":
                        self.plainly(cmd)
                    else:
                        self.at_a_terminal(cmd, answer if last else None)
            i += 2 if answer is not None and block.marker != "not run" else 1
        after.get(section, lambda: None)()

    def check(self, cmd: Command, rc: int, out: str) -> None:
        self.transcript.append((self.section, cmd.text, out))
        assert rc == 0, f"{cmd.text}\nexited with {rc}:\n{out[-3000:]}"
        assert len(self.stacked()) <= 1, f"{cmd.text}\nleft drives mounted on each other at /mnt/usb"
        for expected in cmd.output:
            assert words(expected) in words(out), f"{cmd.text}\ndid not print {expected!r}:\n{out[-3000:]}"

    def plainly(self, cmd: Command) -> None:
        """As cron runs it: no terminal, no input."""
        result = self.ns.run(cmd.text, self.env)
        self.check(cmd, result.returncode, result.stdout)

    def at_a_terminal(self, cmd: Command, answer: Optional[Block]) -> None:
        """In a pseudo-terminal; at a drive-swap prompt, ``answer``'s commands (the first time)
        or next-drive mount the drive asked for, then Enter."""
        argv = self.ns.enter(cmd.text)
        child = pexpect.spawn(
            argv[0], argv[1:], env=self.env, encoding="utf-8", timeout=90, dimensions=(40, 160)
        )
        out = []
        while child.expect_exact([PROMPT, pexpect.EOF]) == 0:
            out.append(child.before + PROMPT)
            assert "That drive was refused" not in child.before, (
                f"{cmd.text}\nrefused the drive it was given:\n{plain(''.join(out))}"
            )
            asked = plain(child.before).rstrip().splitlines()[-1]
            wanted = re.search(r"volumes? (\d+)", asked)
            assert wanted, f"{cmd.text}\nasked for no volume: {asked!r}"
            self.asked.append((self.section, int(wanted.group(1))))
            if answer is not None:
                child.sendline("")  # the old drive still in: refused
                child.expect_exact(PROMPT)
                out.append(child.before + PROMPT)
                assert "volume 1 was already updated in this run" in child.before
                for swap in answer.commands:
                    result = self.ns.run(swap.text, self.env)
                    self.check(swap, result.returncode, result.stdout)
                answer = None
            else:
                self.swap_to(int(wanted.group(1)))
            child.sendline("")
        out.append(child.before)
        child.wait()
        child.close()
        rc = child.exitstatus if child.signalstatus is None else -child.signalstatus
        self.check(cmd, rc, plain("".join(out)))
        assert answer is None, f"{cmd.text}\nnever asked for a drive, but the tutorial swaps one next"

    def swap_to(self, volume: int) -> None:
        """What the person at the prompt does: the tutorial's next-drive mounts the drive."""
        cmd = f"MVCOPY_OUTPUT=/mnt/usb MVCOPY_NEXT={volume} /usr/local/bin/next-drive"
        result = self.ns.run(cmd, self.env)
        assert result.returncode == 0, f"{cmd}: {result.stdout}"

    def stacked(self) -> list[str]:
        """The mounts at /mnt/usb, bottom first: one drive at most, or a swap left one behind."""
        out = self.ns.run("awk '$5 == \"/mnt/usb\" { print $3 }' /proc/self/mountinfo", self.env).stdout
        return out.split()

    def output_of(self, section: str) -> str:
        """What the multivolumecopy commands of ``section`` printed."""
        outs = [out for sec, text, out in self.transcript if sec == section and "multivolumecopy" in text]
        assert outs, f"the tutorial's section {section!r} runs no multivolumecopy"
        return "\n".join(outs)

    # -- the drives, seen from outside

    @contextmanager
    def drives_in(self) -> Iterator[dict[str, Path]]:
        """Every drive, mounted where it is in the namespace or else read-only for a look."""
        points, ours = {}, []
        try:
            for label, dev in self.drive.items():
                at = self.ns.run(f"findmnt -n -o TARGET --source {dev} | head -n 1", self.env).stdout.strip()
                if not at:
                    at = str(self.tmp / "check" / label)
                    os.makedirs(at, exist_ok=True)
                    result = self.ns.run(f"mount -o ro {dev} {shlex.quote(at)}", self.env)
                    assert result.returncode == 0, result.stdout
                    ours.append(at)
                points[label] = self.ns.path(at)
            yield points
        finally:
            for at in ours:
                self.ns.run(f"umount {shlex.quote(at)}", self.env)

    def check_drives_hold(self, src: Path, excluded_left_out: bool) -> dict[str, set[str]]:
        """The drives together are the share (rsync by checksum, as restoring by hand gives
        it), no file is on two drives, and none has temporary files of ours left."""
        with self.drives_in() as points:
            held = {label: files_on(p) for label, p in points.items()}
            for label, p in points.items():
                assert leftovers(p) == [], f"{label} has temporary files left"
            union = union_of(list(points.values()), self.tmp / f"union-{time.monotonic_ns()}")
        assert differences(src, union) == ""
        seen: dict[str, str] = {}
        for label, paths in held.items():
            for p in paths:
                assert p not in seen, f"{p} is on {seen[p]} and on {label}"
                seen[p] = label
        if excluded_left_out:
            names = {part for p in seen for part in Path(p).parts}
            assert not {n for n in names if n.endswith(".tmp") or n == ".cache"}, (
                "an excluded file was copied"
            )
        return held

    # -- the story

    def check_first_backup(self) -> None:
        out = self.output_of("The first backup")
        for line in samples("The first backup")[0]:  # the end of a volume, and the prompt
            assert shows(line, out), f"the first backup did not print (numbers aside) {line!r}:\n{out}"
        held = self.check_drives_hold(self.share, excluded_left_out=True)
        assert held["backup-1"] and held["backup-2"] and not held["backup-3"], "the share fills two drives"

    def check_monthly_run(self) -> None:
        out = self.output_of("The monthly re-run")
        assert shows(samples("The monthly re-run")[0][0], out), f"no 'since the last run' line:\n{out}"
        assert "next-drive: mounted" in out, "the cron run needed a swap and next-drive should have made it"
        assert "--notify-command exited" not in out and "--new-volume-script exited" not in out
        mails = self.notified.read_text()
        assert ": swap to admin@example.org: " in mails
        assert ": done to admin@example.org: " in mails and "exit code: 0" in mails
        events = (self.tmp / "srv/backup/share.events").read_text().splitlines()
        last = json.loads(events[-1])
        assert (last["event"], last["exit_code"]) == ("run_done", 0)
        # The cron line gives no --exclude: the job remembers the first run's.
        self.check_drives_hold(self.share, excluded_left_out=True)

    def volume_2_falls_off_the_desk(self) -> None:
        dev = self.drive.pop("backup-2")
        mounted = self.ns.run("findmnt -n -o SOURCE --mountpoint /mnt/usb", self.env).stdout.split()
        if dev in mounted:
            assert self.ns.run("umount /mnt/usb", self.env).returncode == 0
        self.drives.detach(dev)
        self.drives.wait_detached(self.images["backup-2"])
        self.images["backup-2"].unlink()
        self.plug_in("backup-2", "backup-2-new")  # a new drive, formatted with that label

    def check_replacement(self) -> None:
        held = self.check_drives_hold(self.share, excluded_left_out=True)
        assert BUDGET in held["backup-2"]
        with self.drives_in() as points:
            assert json.loads((points["backup-2"] / ".mvcopy-label.json").read_text())["volume"] == 2

    def someone_deletes_the_budget(self) -> None:
        self.budget = (self.share / BUDGET).read_bytes()
        (self.share / BUDGET).unlink()

    def check_budget_back(self) -> None:
        with self.drives_in() as points:
            assert (points["backup-2"] / BUDGET).is_file(), "--locate said volume 2, whose drive lacks it"
        assert (self.share / BUDGET).read_bytes() == self.budget
        assert os.stat(self.share / BUDGET).st_mtime == BUDGET_TIME
        assert {v for section, v in self.asked if section == "A single file back"} <= {2}

    def the_nas_is_gone(self) -> None:
        self.expected = self.tmp / "expected"
        subprocess.run(["cp", "-a", str(self.share), str(self.expected)], check=True)
        shutil.rmtree(self.tmp / "srv/share")
        shutil.rmtree(self.tmp / "srv/backup")
        if self.ns.run("mountpoint -q /mnt/usb", self.env).returncode == 0:
            assert self.ns.run("umount /mnt/usb", self.env).returncode == 0

    def check_everything_back(self) -> None:
        assert differences(self.expected, self.share) == ""


@pytest.mark.skipif(
    not IS_ROOT, reason="needs root: runs the tutorial in a mount namespace, on loop-mounted ext4 drives"
)
def test_the_tutorial_runs_as_written(tmp_path, own_labels, drives):
    for tool in ("unshare", "nsenter", "blkid", "rsync"):
        assert shutil.which(tool), f"{tool} is missing: install util-linux and rsync (see README.rst)"
    ns = Namespace(tmp_path)
    try:
        Tutorial(tmp_path, drives, ns).run()
    finally:
        ns.close()
