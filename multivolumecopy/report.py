"""The change report: what changed in the sources since the last run, and what each volume had
done to it in this one (copied, rewritten, renamed, deleted, re-moded).  Written next to the
jobfile (``JOBFILE.changes.json``, the whole of it) and on each drive the run touched
(``.mvcopy-changes.json``, that volume's part); the format is in docs/formats.rst.  ``--dry-run``
lists the same things before they happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

from . import clock
from . import jobfile as jf
from .catalog import Catalog
from .changes import Changes
from .fsutil import atomic_write
from .jsonstream import stream

ACTIONS = ("copied", "rewritten", "renamed", "deleted", "chmod")


class ChangeReport:
    """One run's change report, filled in as the run goes (the module docstring says what it
    holds)."""

    def __init__(self, job: jf.Job, old: Optional[Catalog], changes: Changes):
        self.job = job
        self.old = old
        self.changes = changes
        self.actions: dict[int, dict[str, list]] = {}  # volume -> action -> paths ([old, new] for renamed)
        self.written: dict[int, int] = {}  # bytes copied to each volume

    def volume(self, number: int) -> dict[str, list]:
        """The lists of what was done to volume ``number``, made empty the first time."""
        return self.actions.setdefault(number, {name: [] for name in ACTIONS})

    def wrote(self, number: int, nbytes: int) -> None:
        """Count ``nbytes`` more copied to volume ``number``."""
        self.written[number] = self.written.get(number, 0) + nbytes

    def document(self, only: Optional[int] = None) -> dict:
        """The report as a JSON document: the whole of it, or volume ``only``'s part (without
        the lists of changes)."""
        cat, old, ch = self.job.catalog, self.old, self.changes
        vols = {str(v): a for v, a in sorted(self.actions.items()) if only is None or v == only}
        doc = {
            "format": "multivolumecopy-changes",
            "version": 1,
            "job_id": self.job.job_id,
            "run": self.job.run.number,
            "written": clock.now_iso(),
            "counts": {
                "new": len(ch.new),
                "changed": len(ch.changed),
                "moved": len(ch.moved),
                "deleted": len(ch.deleted) - len(ch.moved),
                "bytes_written": sum(n for v, n in self.written.items() if only is None or v == only),
            },
            "volumes": vols,
        }
        if only is None:
            moved_from = set(ch.moved.values())
            doc["changes"] = {
                "new": [[cat.paths[i], cat.sizes[i]] for i in ch.new],
                "changed": [[cat.paths[i], cat.sizes[i], cat.volumes[i]] for i in ch.changed],
                "moved": [
                    [old.paths[j], cat.paths[i], cat.sizes[i], old.volumes[j]]
                    for i, j in ch.moved.items()
                    if old is not None
                ],
                "deleted": [
                    [old.paths[j], old.sizes[j], old.volumes[j]]
                    for j in ch.deleted
                    if old is not None and j not in moved_from
                ],
            }
        return doc

    def chunks(self, only: Optional[int] = None) -> Iterator[bytes]:
        """The report as JSON, a chunk of bytes at a time: the whole of it, or volume ``only``'s
        part."""
        return stream(self.document(only))

    def save(self, jobfile: str) -> None:
        """``JOBFILE.changes.json``, for a run that visited a volume (else the last one's stays)."""
        if self.actions:
            atomic_write(jobfile + ".changes.json", self.chunks())
