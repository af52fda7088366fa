"""Copying to a drive through a pool of worker processes.

``protocol`` (what parent and workers say: CopyItem, Outcome, Status, batches), ``filecopy``
(one file's bytes), ``staging`` (a new folder built whole, renamed once), ``drivepaths`` (places
on the drive as a worker sees them), ``state`` (what a worker keeps between batches),
``worker`` (the worker function), ``pool`` (the parent's side).
"""

from .pool import CopyPool, StopFlag, WorkerDied
from .protocol import BatchDone, CopyBatch, CopyItem, Outcome, Progress, Status, make_batches
from .worker import copy_batch, worker_main

__all__ = [
    "BatchDone",
    "CopyBatch",
    "CopyItem",
    "CopyPool",
    "Outcome",
    "Progress",
    "Status",
    "StopFlag",
    "WorkerDied",
    "copy_batch",
    "make_batches",
    "worker_main",
]
