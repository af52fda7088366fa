"""The job's options: what a job backs up and how it fills its drives, kept in its jobfile.

The first run of a job records them (the jobfile's ``options``); a later run that does not
give one takes the job's, so the bare command (``multivolumecopy SRC -o DRIVE -f JOBFILE``)
keeps doing the job it was made to do.  The parser's default for each is None, "not given";
:func:`resolve` is the one place that turns what the command line gave and what the jobfile
records into the values the run uses: the one given, else the one recorded, else the built-in
default.  A value given that differs from the job's is refused, unless the run says
``--change-options``; then it becomes the job's, and the run says what changes.

Pure: the callers read the command line (:mod:`multivolumecopy.cli`) and the jobfile
(:mod:`multivolumecopy.prepare`).  Options about one run only (how fast, how loud, how drives
are swapped, ``--no-hash``) are not here: docs/TECHNICAL_DECISIONS.rst, "The job remembers its
options", gives the list and why.  A new job option (``--parity``, say) is one more row in
:data:`OPTIONS`.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from .errors import UsageError
from .sizes import exact_size

PATTERNS, SWITCH, SIZE, LIMIT = "patterns", "switch", "size", "limit"


@dataclass(frozen=True)
class JobOption:
    """One option of the job: its key in the jobfile's ``options`` (and its field in
    :class:`~multivolumecopy.context.Options`), the flag that gives it, the flag that gives
    its "off" value where it has one, its built-in default, and its kind: ``patterns`` (a list,
    in any order), ``switch`` (on or off), ``size`` (bytes), ``limit`` (bytes, or None for no
    limit)."""

    key: str
    flag: str
    off: str
    default: Any
    kind: str


OPTIONS = (
    JobOption("exclude", "--exclude", "--no-exclude", [], PATTERNS),
    JobOption("one_file_system", "--one-file-system", "--no-one-file-system", False, SWITCH),
    JobOption("device_padding", "--device-padding", "", 0, SIZE),
    JobOption("volume_size", "--volume-size", "", None, LIMIT),
    JobOption("owner", "--owner", "--no-owner", True, SWITCH),
    JobOption("acls", "--acls", "--no-acls", True, SWITCH),
    JobOption("xattrs", "--xattrs", "--no-xattrs", True, SWITCH),
)
BY_KEY = {o.key: o for o in OPTIONS}
METADATA = ("owner", "acls", "xattrs")  # what of the sources' metadata the job keeps
DEFAULTS = {o.key: o.default for o in OPTIONS}


@dataclass(frozen=True)
class Change:
    """An option this run gives with another value than the job's."""

    option: JobOption
    old: Any
    new: Any

    @property
    def leaves_out_more(self) -> bool:
        """Whether the job may back up less: a new exclude, or ``-x`` turned on."""
        if self.option.kind == PATTERNS:
            return bool(set(self.new) - set(self.old))
        return self.option.key == "one_file_system" and bool(self.new)

    @property
    def takes_in_more(self) -> bool:
        """Whether the job may back up more: an exclude dropped, or ``-x`` turned off."""
        if self.option.kind == PATTERNS:
            return bool(set(self.old) - set(self.new))
        return self.option.key == "one_file_system" and not self.new

    @property
    def room(self) -> bool:
        """Whether the change is to the room the job takes on a drive."""
        return self.option.kind in (SIZE, LIMIT)


@dataclass(frozen=True)
class Resolved:
    """The job's options for this run (every key of :data:`OPTIONS`), and the changes a run
    with ``--change-options`` makes to them (none otherwise)."""

    values: dict[str, Any]
    changes: tuple[Change, ...] = ()


def shown(option: JobOption, value: Any) -> str:
    """The command-line text that gives ``option`` the value ``value``."""
    if option.kind == PATTERNS:
        return " ".join(f"{option.flag} {shlex.quote(p)}" for p in value) or option.off
    if option.kind == SWITCH:
        return option.flag if value else option.off
    if value is None:
        return f"{option.flag} none"
    return f"{option.flag} {exact_size(value)}"


def _flag(option: JobOption, value: Any) -> str:
    """The flag that gives ``value`` (the "off" one for no patterns, or a switch off)."""
    return shown(option, value).split(" ", 1)[0]


def same(option: JobOption, a: Any, b: Any) -> bool:
    """Whether two values of ``option`` make the same job (patterns: the same set, in any order)."""
    if option.kind == PATTERNS:
        return set(a) == set(b)
    return bool(a == b)


def _valid(option: JobOption, value: Any) -> bool:
    if option.kind == PATTERNS:
        return isinstance(value, list) and all(isinstance(p, str) for p in value)
    if option.kind == SWITCH:
        return isinstance(value, bool)
    if value is None:
        return option.kind == LIMIT
    return (
        isinstance(value, int) and not isinstance(value, bool) and value >= (1 if option.kind == LIMIT else 0)
    )


def unknown(recorded: Mapping[str, Any]) -> list[str]:
    """The keys of a jobfile's ``options`` that this version does not know (a later version's
    option): a run that ignored one would do another job than the one recorded."""
    return sorted(k for k in recorded if k not in BY_KEY)


def malformed(recorded: Mapping[str, Any]) -> list[str]:
    """The known keys of a jobfile's ``options`` whose value is not of their kind."""
    return [o.key for o in OPTIONS if o.key in recorded and not _valid(o, recorded[o.key])]


def job_values(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The job's options as the jobfile records them, the built-in default for any it does not
    (a jobfile written before the option existed): what a run that gives none uses."""
    return {o.key: recorded.get(o.key, o.default) for o in OPTIONS}


def resolve(given: Mapping[str, Any], recorded: Optional[Mapping[str, Any]], change: bool) -> Resolved:
    """The job's options for this run.

    ``given``: the job options the command line gave (a key that is missing was not given);
    ``recorded``: the jobfile's ``options`` (None: a new job, which takes what is given and
    the defaults); ``change``: ``--change-options`` was given.  A given value that differs
    from the job's is a :class:`Change`, adopted with ``change``, else refused with a
    :class:`~multivolumecopy.errors.UsageError` that names both."""
    if recorded is None:
        return Resolved(_copied({o.key: given.get(o.key, o.default) for o in OPTIONS}))
    job = job_values(recorded)
    for o in OPTIONS:
        if o.key in given and o.key not in recorded:  # a jobfile older than the option
            job[o.key] = given[o.key]
    changes = tuple(
        Change(o, job[o.key], given[o.key])
        for o in OPTIONS
        if o.key in given and not same(o, job[o.key], given[o.key])
    )
    if changes and not change:
        raise UsageError(refusal(changes))
    return Resolved(_copied({**job, **{c.option.key: c.new for c in changes}}), changes)


def _copied(values: dict[str, Any]) -> dict[str, Any]:
    """The values with lists of their own: the run's options never share one with the
    defaults or the jobfile read."""
    return {k: list(v) if isinstance(v, list) else v for k, v in values.items()}


def refusal(changes: tuple[Change, ...]) -> str:
    """The one line that refuses a run giving other values than the job's, and says what to do."""
    old = " ".join(shown(c.option, c.old) for c in changes)
    new = " ".join(shown(c.option, c.new) for c in changes)
    effect = (
        " (files they leave out are then deleted from the drives)"
        if any(c.leaves_out_more for c in changes)
        else ""
    )
    flags = _listed([_flag(c.option, c.new) for c in changes])
    return (
        f"the job has {old}; this run gives {new}: give --change-options to change the job's "
        f"options{effect}, or leave out {flags} to keep the job's"
    )


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" and {words[-1]}"


def change_note(changes: tuple[Change, ...], dry: bool = False) -> str:
    """What a run with ``--change-options`` changes (``dry``: would change), in one line."""
    new = " ".join(shown(c.option, c.new) for c in changes)
    old = " ".join(shown(c.option, c.old) for c in changes)
    effects = []
    if any(c.leaves_out_more for c in changes):
        effects.append(
            "files now left out are deleted from the drives, as files deleted from the sources are"
        )
    if any(c.takes_in_more for c in changes):
        effects.append("files no longer left out are copied")
    if any(c.option.key in METADATA for c in changes):
        effects.append(
            "owners, ACLs and attributes are read by that rule from now on; a copy already on a drive "
            "keeps what it has until it is written again"
        )
    if any(c.room for c in changes):
        effects.append("the new room applies to what is written from now on; what the drives hold stays")
    verb = "would change" if dry else "change"
    return "; ".join([f"the job's options {verb} to {new} (were {old})", *effects])


def describe(options: Mapping[str, Any]) -> str:
    """The job's options that are not the defaults, as a command line gives them ("the
    defaults" when all are); an option this version does not know as ``key=value``."""
    values = job_values(options)
    parts = [shown(o, values[o.key]) for o in OPTIONS if not same(o, values[o.key], o.default)]
    parts += [f"{k}={options[k]!r}" for k in unknown(options)]
    return " ".join(parts) or "the defaults"
