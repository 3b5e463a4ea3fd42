"""Stop requests from a scheduler: SIGTERM (preemption, `scancel`, torchrun's teardown) and SIGUSR1
(what SLURM sends with `--signal=USR1@SECONDS` before a time limit).

A signal only raises a flag; the training loop checks it after every optimizer step and all ranks
agree (one tiny all-reduce), so every rank stops after the same step, writes `last.pt` there and exits
with code 0. Loader worker processes ignore these signals (see video/loader.py): a signal sent to a
whole process group must not kill the decoders of the step in flight.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Callable, Dict, Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """Catches the stop signals while active (a context manager); `received` names the first one."""

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._previous: Dict[int, Callable | int | None] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.received = self.received or signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is not threading.main_thread():
            return self  # Python delivers signals to the main thread only: nothing to catch here
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


def resume_hint(signal_name: str, step: int, checkpoint: str) -> str:
    """The one line a stopped run prints: what happened and how to continue."""
    return (f"stopped by {signal_name} after step {step}; {checkpoint} holds that step: run the same command "
            f"with trainer.resume=auto to continue exactly")
