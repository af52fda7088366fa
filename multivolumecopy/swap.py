"""The drive swap: getting the next drive into place.

Three ways, in this order of preference:

* ``--new-volume-script CMD``: run CMD through the shell with ``MVCOPY_VOLUME``
  (the volume just finished), ``MVCOPY_NEXT`` (the one wanted), ``MVCOPY_OUTPUT``
  and ``MVCOPY_JOBFILE`` in its environment.  Exit 0 means "the next drive is
  mounted, go on"; anything else stops the run cleanly, as tar's option does.
* on a terminal, a prompt: Enter to go on, ``q`` to stop;
* otherwise the run stops with exit code 3 and says which drive to insert
  before running the same command again.

Whichever way, the caller then reads the drive's label: the swapper never
decides which drive is in.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Callable, Optional, Union

from .errors import SwapNeeded
from .sizes import count

MAX_REFUSALS_BY_SCRIPT = 3


@dataclass(frozen=True)
class SwapRequest:
    """What a run asks for at a drive swap: where, which volume (and the one just finished), and
    why the last drive offered was refused."""

    output: str
    message: str  # what to insert, for a person
    finished: Optional[int]  # the volume just finished, if any
    next_volume: Union[int, str]  # "P1": the parity drive
    jobfile: str
    refusal: Optional[str] = None  # why the drive offered last time was refused


class Swapper:
    """Gets the next drive into place: by ``--new-volume-script``, a prompt, or stopping the run
    (see the module docstring)."""

    def __init__(
        self,
        script: Optional[str] = None,
        ask: Optional[Callable[[str], str]] = None,
    ):
        """``ask`` shows a prompt and returns the answer (raises EOFError on end of input);
        None when there is no terminal to ask on."""
        self.script = script
        self.ask = ask
        self._refusals = 0

    def request(self, req: SwapRequest) -> None:
        """Return once the operator (or script) says the next drive is in place."""
        if req.refusal is None:
            self._refusals = 0
        else:
            self._refusals += 1
        if self.script is not None:
            self._run_script(req)
        elif self.ask is not None:
            self._prompt(req)
        else:
            raise SwapNeeded(f"{req.message}; then run the same command again to continue")

    def _run_script(self, req: SwapRequest) -> None:
        assert self.script is not None
        if self._refusals >= MAX_REFUSALS_BY_SCRIPT:
            raise SwapNeeded(
                f"the drive offered by --new-volume-script was refused {count(self._refusals, 'time')} "
                f"({req.refusal}); {req.message}, then run the same command again"
            )
        env = dict(os.environ)
        env.update(
            MVCOPY_VOLUME=str(req.finished or ""),
            MVCOPY_NEXT=str(req.next_volume),
            MVCOPY_OUTPUT=req.output,
            MVCOPY_JOBFILE=req.jobfile,
            MVCOPY_MESSAGE=req.message,
        )
        rc = subprocess.call(self.script, shell=True, env=env)  # noqa: S602 - the user's own command
        if rc != 0:
            raise SwapNeeded(
                f"--new-volume-script exited with status {rc}; {req.message}, "
                "then run the same command again to continue"
            )

    def _prompt(self, req: SwapRequest) -> None:
        assert self.ask is not None
        text = ""
        if req.refusal:
            text += f"That drive was refused: {req.refusal}\n"
        elif req.finished:
            text += f"Volume {req.finished} is done; the drive is synced and safe to remove.\n"
        text += f"{req.message[0].upper()}{req.message[1:]}.\n"
        text += "Press Enter when it is mounted, or type q and Enter to stop: "
        try:
            answer = self.ask(text)
        except EOFError:
            answer = "q"
        if answer.strip().lower() in ("q", "quit", "n", "no", "stop"):
            raise SwapNeeded(f"stopped at the drive swap; {req.message}, then run the same command again")
