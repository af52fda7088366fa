"""Fault points for the crash tests: ``MVCOPY_FAULT=NAME[:N]`` kills the whole process group
with SIGKILL the Nth time (default: first) a process passes point NAME, as a power cut or
``kill -9`` would at exactly that moment.  Unset, a point costs one comparison.

Points: ``before-rename`` (a worker, a file fully written but not yet renamed into place, or
left in a staged folder), ``before-folder-rename`` (a worker, a staged new folder complete
but not yet renamed into place),
``replace:<file name>`` (the temporary copy of a record such as ``.mvcopy-manifest.json``
is written and synced but not yet renamed over the old one), ``after-purge`` (files
removed from a drive, the journal not yet told), ``after-rename`` (files moved in the sources
renamed on a drive, the journal not yet told), ``parity:marked`` (the parity drive's record
marks the blocks about to be written invalid, none written yet), ``parity:written`` (those
blocks written, not yet synced nor claimed).
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("MVCOPY_FAULT", "")
_NAME, _, _NTH = _SPEC.rpartition(":")
if not _NTH.isdigit():
    _NAME, _NTH = _SPEC, "1"
_LEFT = [int(_NTH)]


def point(name: str) -> None:
    """Fault point ``name``: with ``MVCOPY_FAULT`` naming it, the Nth pass kills the whole process
    group with SIGKILL."""
    if _SPEC and name == _NAME:
        _LEFT[0] -= 1
        if _LEFT[0] == 0:
            os.killpg(os.getpgrp(), signal.SIGKILL)
