"""README's first command, word for word, as a new user meets it: not root, the system's own
python3 (externally managed on Debian 12 and Ubuntu: no ``pip install`` outside a venv), in a
fresh clone, and run twice at once (two terminals, two CI jobs on one machine)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from helpers import checkout_copy, readme_commands, tree_differences, union_of

SOURCE = Path("/usr/share/doc")  # what the command backs up
# What a user's shell has; python3 comes from these, not from the PATH the tests run with.
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path
    top: Path  # everything the test makes for the user, removed after


@pytest.fixture
def new_user() -> Iterator[User]:
    """A throwaway unprivileged user with a HOME of its own; afterwards its processes are killed,
    the user and its group deleted and its files removed, pass or fail."""
    if os.geteuid() != 0:
        pytest.skip("needs root: makes a throwaway user (useradd) to run README's command as")
    for tool in ("useradd", "userdel"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install passwd")
    # Not in tmp_path: pytest keeps that in a folder only root may enter.
    top = Path(tempfile.mkdtemp(prefix="mvc-first-command-"))
    name = f"mvc-t{secrets.token_hex(4)}"
    home = top / "home"
    subprocess.run(
        [
            "useradd",
            "--no-create-home",
            "--home-dir",
            str(home),
            "--shell",
            "/bin/bash",
            "--user-group",
            name,
        ],
        check=True,
    )
    try:
        pw = subprocess.run(["getent", "passwd", name], capture_output=True, text=True, check=True)
        uid, gid = (int(field) for field in pw.stdout.split(":")[2:4])
        home.mkdir()
        (top / "tmp").mkdir()
        for path in (top, home, top / "tmp"):
            os.chown(path, uid, gid)
        yield User(name, uid, gid, home, top)
    finally:
        left = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
        for proc in left:
            proc.kill()
        psutil.wait_procs(left, timeout=10)
        subprocess.run(["userdel", name], check=True)
        shutil.rmtree(top)


def start_as(user: User, command: str, cwd: Path) -> subprocess.Popen:
    """``command`` in bash as ``user`` with a login's environment (no stdin, as in CI), and the
    machine's pip settings and proxies, which say how to reach the package index."""
    env = {
        "HOME": str(user.home),
        "USER": user.name,
        "LOGNAME": user.name,
        "SHELL": "/bin/bash",
        "PATH": USER_PATH,
        "LANG": "C.UTF-8",
        "TMPDIR": str(user.top / "tmp"),  # mktemp's folders land here, so the test removes them
    }
    for key, value in os.environ.items():
        if (key.startswith("PIP_") and key != "PIP_CACHE_DIR") or key.lower().endswith("_proxy"):
            env[key] = value
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_readme_first_command_twice_at_once_as_a_user(new_user, tmp_path):
    clone = checkout_copy(new_user.top / "clone")
    subprocess.run(["chown", "-R", f"{new_user.uid}:{new_user.gid}", str(clone)], check=True)
    command = readme_commands()[0]

    runs = [start_as(new_user, command, clone) for _ in range(2)]
    outputs = []
    for run in runs:
        try:
            outputs.append(run.communicate(timeout=900)[0])
        except subprocess.TimeoutExpired:
            for r in runs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(r.pid, signal.SIGKILL)
            raise

    folders = []
    for run, out in zip(runs, outputs):
        assert run.returncode == 0, f"exit {run.returncode}:\n{out[-4000:]}"
        last = out.rstrip().splitlines()[-1]
        paths = re.findall(r"/[^\s,;:()]+", last)
        assert paths, f"the last line should say where the results are: {last!r}"
        folders.append(Path(os.path.commonpath(paths)))  # $mvc/usb-1, $mvc/job.json, ...: $mvc
    assert folders[0] != folders[1], f"two runs at once shared one folder, {folders[0]}"

    for n, folder in enumerate(folders):
        assert folder.parent == new_user.top / "tmp", f"{folder} is not a new folder from mktemp -d"
        assert folder.stat().st_uid == new_user.uid
        volumes = sorted(p for p in folder.iterdir() if p.name == "usb" or p.name.startswith("usb-"))
        assert volumes, f"no volume in {folder}: {sorted(os.listdir(folder))}"
        union = union_of(volumes, tmp_path / f"union-{n}")
        assert tree_differences(SOURCE, union) == "", f"the volumes in {folder} do not hold {SOURCE}"
