"""What is left to do in a run (pure: questions about the catalog and the run's state, no I/O):
the entries on no volume yet, where each should go, which volumes must still be visited, what
to ask for next, and when the run is done.

``destinations`` maps an entry on no volume to the volume it should go to; an entry without
one needs a new drive (:data:`~multivolumecopy.placement.NEW_DRIVE`).  Entries that failed in
this run, or vanished since the scan, are not offered again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from . import jobfile as jf
from .catalog import NO_VOLUME
from .placement import NEW_DRIVE
from .sizes import numbered, plural


class Worklist:
    """Answers what is left of the run (see the module docstring), from the job, where entries
    are meant to go, and what failed or vanished in this run."""

    def __init__(
        self, job: jf.Job, destinations: dict[int, int], failed: Mapping[int, str], vanished: set[int]
    ):
        self.job = job
        self.destinations = destinations
        self.failed = failed
        self.vanished = vanished

    def unplaced(self) -> Iterator[int]:
        """Entries on no volume that this run may still place, in index order."""
        vols = self.job.catalog.volumes
        if NO_VOLUME not in vols:  # the common case after a volume, without a loop in Python
            return iter(())
        failed, vanished = self.failed, self.vanished
        return (i for i in range(len(vols)) if vols[i] == NO_VOLUME and i not in failed and i not in vanished)

    def any_unplaced(self) -> bool:
        """Whether any entry on no volume may still be placed in this run."""
        return next(self.unplaced(), None) is not None

    def bound_for(self, volume: int) -> Iterator[int]:
        """The entries on no volume meant for ``volume`` (NEW_DRIVE: for a new drive, or a volume
        being filled for the first time), in index order."""
        get = self.destinations.get
        return (i for i in self.unplaced() if get(i, NEW_DRIVE) == volume)

    def new_drive_needed(self) -> bool:
        """Whether an entry waits for a new drive (or for a volume being filled for the first
        time)."""
        return next(self.bound_for(NEW_DRIVE), None) is not None

    def left(self) -> tuple[int, int]:
        """Entries still to place, and their bytes."""
        sizes = self.job.catalog.sizes
        files = nbytes = 0
        for i in self.unplaced():
            files += 1
            nbytes += sizes[i]
        return files, nbytes

    def pending_volumes(self) -> list[int]:
        """Volumes this run must still visit: they hold a change, or something is meant for them."""
        run = self.job.run
        get = self.destinations.get
        targeted = {get(i, NEW_DRIVE) for i in self.unplaced()} - {NEW_DRIVE}
        return sorted((set(run.pending_volumes) | targeted) - set(run.done_volumes) - set(run.replace))

    def remains(self) -> bool:
        """Whether the run needs another drive."""
        run = self.job.run
        return bool(run.open_volume or run.replace or self.pending_volumes() or self.new_drive_needed())

    def wanted(self, output: str) -> tuple[list[int], int, str]:
        """What to ask for at ``output``: the volumes wanted (any of them will do), the one the
        swap names first (a new volume's number when a blank drive is wanted), and the message
        for a person."""
        job = self.job
        run = job.run
        if run.open_volume:
            n = run.open_volume
            return [n], n, f"insert volume {n} (not finished yet) at {output}"
        wanted = self.pending_volumes()
        parts = []
        if wanted:
            parts.append(volumes_text(wanted, "still "))
        blanks = [f"volume {v} (replacing the old drive)" for v in run.replace]
        if self.new_drive_needed():
            blanks.append(f"volume {job.next_volume_number()}")
        if blanks:
            parts.append(f"a blank drive is needed for {' and '.join(blanks)}")
        either = "either" if len(wanted) + len(blanks) > 1 else "it"
        message = "; ".join(parts) + f": insert {either} at {output}"
        if wanted:
            next_volume = wanted[0]
        elif run.replace:
            next_volume = run.replace[0]
        else:
            next_volume = job.next_volume_number()
        return wanted, next_volume, message


def volumes_text(wanted: list[int], still: str = "") -> str:
    """``[1]`` -> "volume 1 needs", ``[1, 4, 5]`` -> "volumes 1, 4 and 5 need" (then "updating")."""
    return f"{numbered('volume', wanted)} {still}{plural(len(wanted), 'needs', 'need')} updating"
