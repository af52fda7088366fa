"""The man page, multivolumecopy(1): written from the parser, complete, valid roff, installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import checkout_copy
from multivolumecopy.errors import ExitCode
from multivolumecopy.manpage import exit_codes, manpage, roff
from multivolumecopy.parser import build_parser

OPTIONS = [opt for action in build_parser()._actions for opt in action.option_strings]


def section(page: str, title: str) -> str:
    return page.split(f".SH {title}\n", 1)[1].split("\n.SH ", 1)[0]


def render(path: Path) -> subprocess.CompletedProcess:
    """The page as ``man`` shows it, plain text, with groff's warnings (all of them) on stderr."""
    return subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-P-cbou", str(path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, LC_ALL="C.UTF-8"),
        check=True,
    )


def test_text_is_escaped_for_roff():
    """A help text with a backslash, a line starting with a dot or a quote, and options in it
    comes out as written, not as roff requests or escapes."""
    assert roff("a\\b --to\n.mvcopy-lock\n'x") == "a\\eb \\-\\-to\n\\&.mvcopy\\-lock\n\\&'x"


def test_the_man_page_describes_every_option_in_its_group_and_every_exit_code():
    page = manpage(date="2026-01-01")
    options = section(page, "OPTIONS")
    for opt in OPTIONS:
        assert f"\\fB{roff(opt)}\\fR" in options, opt
    assert ".SS Verifying\n.TP\n\\fB\\-i\\fR\\ \\fIN\\fR, \\fB\\-\\-device\\-startindex\\fR" in options
    status = section(page, "EXIT STATUS")
    for code in ExitCode:
        assert re.search(rf"^\.TP\n\.B {code.value}\n\S", status, re.M), code
    assert dict(exit_codes())[3].startswith("stopped at a drive swap")
    for title in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "EXAMPLES", "SEE ALSO"):
        assert f"\n.SH {title}\n" in page, title


@pytest.mark.skipif(
    shutil.which("groff") is None, reason="groff is not installed (tests/run installs it as root)"
)
def test_the_man_page_renders_without_warnings_and_options_read_as_typed(tmp_path):
    (tmp_path / "multivolumecopy.1").write_text(manpage())
    shown = render(tmp_path / "multivolumecopy.1")
    assert shown.stderr == ""
    assert shown.stdout.startswith("MULTIVOLUMECOPY(1)")
    text = re.sub(r"\s+", " ", shown.stdout)
    for opt in OPTIONS:  # ASCII hyphens, so an option copied from the page works when pasted
        assert re.search(rf"(^|[\s\[,|]){re.escape(opt)}([\s\],|]|$)", text), opt
    assert "130 interrupted (what was copied is kept; run again to continue)" in text


def test_pip_install_puts_the_page_in_share_man_beside_the_completions(tmp_path):
    """A clean copy of the project, installed by pip as a user would (build isolation: the page
    is written while building, with nothing but setuptools there), into a new venv."""
    src = checkout_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = dict(os.environ, SOURCE_DATE_EPOCH="1767225600")  # 2026-01-01: the page's date
    done = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", str(src)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    share = venv / "share"
    assert (share / "man/man1/multivolumecopy.1").read_text() == manpage(date="2026-01-01")
    assert (share / "zsh/site-functions/_multivolumecopy").is_file()
    assert (share / "bash-completion/completions/multivolumecopy").is_file()
    if shutil.which("man"):  # man finds it by the venv's bin/ in PATH, as once the venv is activated
        found = subprocess.run(
            ["man", "-w", "multivolumecopy"],
            capture_output=True,
            text=True,
            env={"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        assert found.stdout.strip() == str(share / "man/man1/multivolumecopy.1")
