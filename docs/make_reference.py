"""Write docs/reference.rst, the command reference, from the parser itself.

    python docs/make_reference.py

tests/test_docs.py fails when the committed page and the parser disagree.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from multivolumecopy.parser import EPILOG, build_parser  # noqa: E402

HERE = Path(__file__).resolve().parent


def reference() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps the usage to the terminal: make it the same everywhere
    parser = build_parser()
    out = [
        "Command reference",
        "=================",
        "",
        "Generated from the parser by ``docs/make_reference.py``; ``multivolumecopy --help`` says",
        "the same. :doc:`usage` explains each option at more length.",
        "",
        ".. code-block:: text",
        "",
        "    " + parser.format_usage().strip().replace("\n", "\n    "),
        "",
    ]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.option_strings or a.dest == "sources"]
        if not actions:
            continue
        title = (group.title or "options").capitalize()
        out += [title, "-" * len(title), ""]
        for action in actions:
            if action.option_strings:
                names = ", ".join(action.option_strings)
                if action.metavar or (action.nargs != 0 and action.choices):
                    metavar = action.metavar or "{" + ",".join(action.choices) + "}"
                    names = ", ".join(f"{o} {metavar}" for o in action.option_strings)
            else:
                names = str(action.metavar)
            text = (action.help or "").replace("%(default)s", str(action.default))
            out += [f"``{names}``", f"    {text}", ""]
    out += ["Exit codes and examples", "-----------------------", "", ".. code-block:: text", ""]
    out += ["    " + line if line else "" for line in EPILOG.splitlines()]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    (HERE / "reference.rst").write_text(reference())
