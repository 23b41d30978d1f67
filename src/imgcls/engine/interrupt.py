"""Ctrl-C at a consistent point: the one mechanism a training run uses (`STOP`).

While `STOP.installed(collective=...)` holds the SIGINT handler (the fit loop):
- a single process raises KeyboardInterrupt at once, unless inside `STOP.deferred()`: the block that
  updates the weights, the optimizer, the schedule and the counters that describe them, or writes an
  epoch's row, best and checkpoints. There the signal is held and raised when the block ends, so an
  interrupt never lands between an update and its counters and the checkpoint written on Ctrl-C
  resumes to exactly the weights of an uninterrupted run;
- under DDP (`collective=True`) the signal only sets `requested`: torchrun and the terminal deliver it
  to every rank at slightly different moments, and a rank that raised at once would leave the others
  waiting in an all-reduce. Each step all-reduces the request with its loss (engine.loop), and all ranks
  stop together after that step, at the same position.
Outside the loop (data scans, feature caching) SIGINT keeps Python's default: an immediate KeyboardInterrupt.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopRequests:
    def __init__(self) -> None:
        self.requested = False
        self.collective = False
        self._depth = 0
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.collective or self._depth:
            self.requested = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def installed(self, *, collective: bool) -> Iterator[StopRequests]:
        """The handler for the block (main thread, Python's default handler only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread() or \
                signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield self
            return
        self.requested, self.collective, self._installed = False, collective, True
        previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
            self.requested, self.collective, self._installed = False, False, False

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a Ctrl-C for the block; in a single process it is raised when the block ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self.requested and not self.collective and not self._depth:
            self.requested = False
            raise KeyboardInterrupt


STOP = StopRequests()
