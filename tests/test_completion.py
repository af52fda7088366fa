"""The zsh completion offers exactly the options the parser knows, with path completion where due."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from helpers import REPO
from multivolumecopy.parser import build_parser

ZSH = REPO / "data" / "autocomplete.zsh" / "_multivolumecopy"
PATH_OPTIONS = {"--output": "_files -/", "--jobfile": "_files", "--to": "_files -/"}


def zsh_specs() -> dict[str, str]:
    """Option string -> the spec line it appears on."""
    specs: dict[str, str] = {}
    for line in ZSH.read_text().splitlines():
        line = line.strip()
        if not line.startswith(("'", "*'", "'(")):
            continue
        head = line.split("[", 1)[0]  # the option strings; the rest is description and action
        for opt in re.findall(r"(?<![\w-])(--?[a-zA-Z][-a-zA-Z]*)", head):
            specs[opt] = line
    return specs


def parser_options() -> set[str]:
    return {s for a in build_parser()._actions for s in a.option_strings}


def test_zsh_completion_offers_every_option_of_the_parser_and_no_other():
    assert set(zsh_specs()) == parser_options()


def test_zsh_completion_completes_paths_for_options_that_take_paths():
    specs = zsh_specs()
    for opt, completer in PATH_OPTIONS.items():
        assert completer in specs[opt], f"{opt} should complete with {completer}"
    assert "_files" in ZSH.read_text().splitlines()[-1], "sources complete as files"


BASH = REPO / "data" / "autocomplete.bash" / "multivolumecopy"


def bash_complete(words: list[str]) -> list[str]:
    """What bash offers after ``words`` (the last one being completed), from the real function."""
    script = (
        f"source {BASH}; COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; _multivolumecopy; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_bash_completion_offers_every_option_of_the_parser_and_no_other():
    assert set(bash_complete(["multivolumecopy", "-"])) == parser_options()


def test_bash_completion_completes_directories_after_output_and_choices_after_io_priority(tmp_path):
    (tmp_path / "drive-a").mkdir()
    (tmp_path / "drive-file").write_text("")
    assert bash_complete(["multivolumecopy", "-o", str(tmp_path / "drive-")]) == [str(tmp_path / "drive-a")]
    assert bash_complete(["multivolumecopy", "--io-priority", ""]) == ["idle", "normal"]
    assert sorted(bash_complete(["multivolumecopy", "--ver"])) == ["--verbose", "--verify", "--version"]


@pytest.mark.skipif(
    shutil.which("zsh") is None, reason="zsh is not installed (tests/run installs it as root)"
)
def test_zsh_completion_is_valid_zsh():
    assert subprocess.run(["zsh", "-n", str(ZSH)]).returncode == 0
