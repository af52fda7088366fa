"""The zsh completion offers exactly the options the parser knows, with path completion where due."""

from __future__ import annotations

import re

from helpers import REPO
from multivolumecopy.cli import build_parser

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
