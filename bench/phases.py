"""Where a run's wall time goes: the tool run as usual, with a timer around each phase of the
parent (scan and merge, placement, identify, planning, the copy, the volume's close and commit,
the change report, jobfile saves).

    python bench/phases.py SOURCE -o OUTPUT -f JOBFILE [any other options of the tool]

Each line says when the phase started and how long it took, in seconds since the start of
the run; the last line gives the CPU seconds of the parent and of its children (the copy
workers and the scan's helpers).  See docs/performance.rst.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from multivolumecopy import backup, copysession, drive, jobfile, report, writer  # noqa: E402

START = time.perf_counter()

# (owner, name): the stages of docs/architecture.rst.  Functions backup imported by name are
# timed where backup looks them up (its own namespace).
PHASES: list[tuple[Any, str]] = [
    (backup, "merge"),
    (backup, "plan_run"),
    (backup, "identify"),
    (backup.Backup, "_plan"),
    (copysession.CopySession, "run"),
    (backup.Backup, "_close_volume"),
    (writer.VolumeWriter, "set_dir_metadata"),
    (drive.Drive, "commit"),
    (report.ChangeReport, "save"),
    (jobfile, "save"),
]


def timer(owner: Any, name: str) -> Callable[..., Any]:
    func = getattr(owner, name)

    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            took = time.perf_counter() - began
            print(f"  [{began - START:7.2f} +{took:6.2f}] {owner.__name__}.{name}", file=sys.stderr)

    return timed


def main() -> int:
    for owner, name in PHASES:
        setattr(owner, name, timer(owner, name))
    from multivolumecopy.cli import main as run

    sys.argv[0] = "multivolumecopy"
    try:
        return run()
    finally:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(
            f"  [{time.perf_counter() - START:7.2f}] end; CPU s: parent user {me.ru_utime:.2f} "
            f"system {me.ru_stime:.2f}, children user {kids.ru_utime:.2f} system {kids.ru_stime:.2f}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
