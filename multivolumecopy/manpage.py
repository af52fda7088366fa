"""The manual page, multivolumecopy(1), written in roff from the parser at build time.

setup.py calls :func:`write` while ``pip install`` builds the package, and the page is installed
as ``share/man/man1/multivolumecopy.1`` beside the completions. Everything on it comes from the
code: the options as the parser groups them, their help, the exit codes and examples of
``--help``'s epilog, the names of the files the tool keeps. By hand::

    python -m multivolumecopy.manpage build/man/multivolumecopy.1 && man -l build/man/multivolumecopy.1
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from typing import Optional

from . import __version__
from .driveformat import CHANGES, JOBCOPY, LABEL, LOCKFILE, MANIFEST, SUMS, TMPDIR
from .errors import ExitCode
from .jobfile import CACHE_SUFFIX, DEFAULT_NAME, LOG_SUFFIX
from .parser import EPILOG, build_parser

SUMMARY = "back up a large file tree onto a series of smaller removable drives"

# (name, what it is): the FILES section; JOBFILE stands for -f's value.
FILES = (
    ("JOBFILE", f"the job's catalog: -f's value, by default {DEFAULT_NAME} in the current directory"),
    ("JOBFILE.lock", "held by the run using the jobfile"),
    (f"JOBFILE{LOG_SUFFIX}", "the operation log: what each run did and how it ended"),
    (f"JOBFILE{CACHE_SUFFIX}", "a binary copy of the catalog, for a faster start; may be deleted"),
    (JOBCOPY, "at the root of every drive: a copy of the jobfile as of that volume's end"),
    (SUMS, f"on every drive: what cd DRIVE && sha256sum -c {SUMS} checks"),
    (CHANGES, "on every drive: what the last run that visited the drive did to it"),
    (LABEL, "on every drive: which job and volume the drive is"),
    (MANIFEST, "on every drive, with .mvcopy-journal and .mvcopy-log: what it holds, what happened"),
    (f"{TMPDIR}/", "on every drive: partial copies, never under a final name; emptied by every run"),
    (LOCKFILE, "on every drive: held while a run or a verify uses the drive"),
)

SEE_ALSO = r"""\fBrsync\fR(1), \fBcp\fR(1), \fBsha256sum\fR(1).
README.rst and docs/ in the source (docs/usage.rst: every option at length; docs/formats.rst:
the jobfile and what each drive keeps; docs/exit-codes.rst)."""


def roff(text: str) -> str:
    """``text`` as roff running text: backslashes and hyphens escaped (so options copied from the
    page are ASCII minus signs), and a line never starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())


def manpage(parser: Optional[argparse.ArgumentParser] = None, date: Optional[str] = None) -> str:
    """The page, from ``parser`` (default: the command's own); ``date`` as on its title line
    (default: ``SOURCE_DATE_EPOCH``'s day if set, for reproducible builds, else today)."""
    parser = parser or build_parser()
    lines = [
        '.\\" Generated from the parser by multivolumecopy/manpage.py; do not edit.',
        f'.TH MULTIVOLUMECOPY 1 "{date or _build_date()}" "multivolumecopy {__version__}" "User Commands"',
        ".nh",
        ".SH NAME",
        f"{parser.prog} \\- {SUMMARY}",
        ".SH SYNOPSIS",
        *_synopsis(parser),
        ".SH DESCRIPTION",
        roff(parser.description or ""),
        ".SH OPTIONS",
        *_options(parser),
        ".SH EXIT STATUS",
    ]
    for code, meaning in exit_codes():
        lines += [".TP", f".B {code}", roff(meaning)]
    lines += [".SH FILES"]
    for name, what in FILES:
        lines += [".TP", f".I {roff(name)}", roff(what)]
    lines += [".SH EXAMPLES", ".nf", roff(_epilog_section("examples")), ".fi"]
    lines += [".SH SEE ALSO", SEE_ALSO]
    return "\n".join(lines) + "\n"


def exit_codes() -> list[tuple[int, str]]:
    """The exit codes with their meaning, as ``--help``'s epilog lists them (two to a line); an
    exit code the epilog leaves out is an error, so the page cannot be built without it."""
    found: dict[int, str] = {}
    for line in _epilog_section("exit codes").splitlines():
        for code, meaning in re.findall(r"(\d+) (.+?)(?=\s{2,}\d+ |\s*$)", line.strip()):
            found[int(code)] = meaning
    missing = [code.name for code in ExitCode if code.value not in found]
    if missing:
        raise ValueError(f"the epilog of --help does not explain the exit codes {', '.join(missing)}")
    return sorted(found.items())


def write(path: str) -> None:
    """Write the page to ``path``, making its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(manpage())


def _build_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        if epoch
        else datetime.datetime.now(datetime.timezone.utc)
    )
    return when.strftime("%Y-%m-%d")


def _epilog_section(title: str) -> str:
    """The lines under ``title:`` in the epilog, up to the next blank line, unindented."""
    match = re.search(rf"^{re.escape(title)}:\n(.*?)(?:\n\n|\Z)", EPILOG, re.S | re.M)
    if match is None:
        raise ValueError(f"the epilog of --help has no {title!r} section")
    return "\n".join(line[2:] if line.startswith("  ") else line for line in match.group(1).splitlines())


def _names(action: argparse.Action) -> str:
    """``-o DIR, --output DIR`` in roff: option names bold, the value italic."""
    return ", ".join(_name(action, opt) for opt in action.option_strings)


def _name(action: argparse.Action, opt: str = "") -> str:
    """One name of the option (default: its first) with its value, as one unbreakable word."""
    value = _metavar(action)
    arg = f"\\ \\fI{roff(value)}\\fR" if value else ""
    return f"\\fB{roff(opt or action.option_strings[0])}\\fR{arg}"


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.metavar:
        return str(action.metavar)
    if action.choices:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper()


def _help(action: argparse.Action, prog: str) -> str:
    """The help text with its ``%(...)s`` filled in, as argparse does."""
    text = action.help or ""
    if "%" not in text:
        return text
    params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    return text % dict(params, prog=prog)


def _synopsis(parser: argparse.ArgumentParser) -> list[str]:
    """``multivolumecopy [-o DIR] ... [--verify | --locate | ...] [SRC|PATTERN ...]`` as argparse's
    usage says it: an option by its first name, the modes that exclude each other as one choice,
    the positional last; no bracket broken across lines."""
    exclusive = {id(a): g for g in parser._mutually_exclusive_groups for a in g._group_actions}
    lines, done, positional = [".ad l", f".B {parser.prog}"], set(), []
    for action in parser._actions:
        group = exclusive.get(id(action))
        if not action.option_strings:
            positional.append(f"[\\fI{roff(str(action.metavar or action.dest))}\\fR\\ ...]")
        elif group is None:
            lines.append(f"[{_name(action)}]")
        elif id(group) not in done:
            done.add(id(group))
            lines.append("[" + " | ".join(_name(a) for a in group._group_actions) + "]")
    return [*lines, *positional, ".ad b"]


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """A subsection a group of the parser, an entry an option, in the parser's order."""
    lines: list[str] = []
    for group in parser._action_groups:
        if not group._group_actions:
            continue
        title = "Options" if group is parser._optionals else (group.title or "").capitalize()
        lines.append(f".SS {roff(title)}")
        for action in group._group_actions:
            names = _names(action) if action.option_strings else f"\\fI{roff(str(action.metavar))}\\fR"
            lines += [".TP", names, roff(_help(action, parser.prog))]
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m multivolumecopy.manpage PATH``: write the page to PATH (- for stdout)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m multivolumecopy.manpage PATH", file=sys.stderr)
        return 2
    if args[0] == "-":
        sys.stdout.write(manpage())
    else:
        write(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
