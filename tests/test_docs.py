"""The docs stay true: README's commands are what CI runs, every exit code and option is documented."""

from __future__ import annotations

import re
import sys

from helpers import REPO, readme_commands
from multivolumecopy.errors import ExitCode
from multivolumecopy.parser import build_parser


def test_readme_opens_with_the_two_commands_ci_runs():
    cmds = readme_commands()
    assert len(cmds) == 2
    assert cmds[0].startswith('mvc=$(mktemp -d) && python3 -m venv "$mvc/venv" && ')
    assert cmds[1] == "tests/run"
    assert "/tmp" not in cmds[0], "a fixed folder is shared by two runs at once (and two users)"
    ci = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()]
    assert cmds[0] in ci and cmds[1] in ci
    assert ci.index(cmds[0]) < ci.index(cmds[1])


def test_every_exit_code_is_in_the_table_and_in_help():
    table = (REPO / "docs/exit-codes.rst").read_text()
    help_text = build_parser().format_help()
    for code in ExitCode:
        assert re.search(rf"^{code.value}\s+{code.name}\s", table, re.M), code
        assert re.search(rf"(^|\s){code.value} ", help_text), code


def test_every_option_is_in_the_usage_page():
    usage = (REPO / "docs/usage.rst").read_text()
    for action in build_parser()._actions:
        for opt in action.option_strings:
            assert f"``{opt}" in usage or f", {opt}" in usage or f"``{opt} " in usage, opt


def test_the_command_reference_is_generated_from_the_parser_and_current():
    sys.path.insert(0, str(REPO / "docs"))
    try:
        from make_reference import reference
    finally:
        sys.path.pop(0)
    committed = (REPO / "docs/reference.rst").read_text()
    assert committed == reference(), "run python docs/make_reference.py and commit docs/reference.rst"
    for action in build_parser()._actions:
        for opt in action.option_strings:
            assert f"``{opt}" in committed or f", {opt}" in committed, opt
