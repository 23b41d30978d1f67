"""Ctrl-C at a consistent point: a SIGINT that arrives inside `defer_interrupt()` is held until the block
ends, then raised as the usual KeyboardInterrupt.

The training loop updates the weights, the optimizer, the schedule and its step counters inside
such a block, so an interrupt never lands between a weight update and the counters that describe
it; the checkpoint written on Ctrl-C then resumes to exactly the weights of an uninterrupted run.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def defer_interrupt() -> Iterator[None]:
    """Hold SIGINT for the duration of the block (main thread, default handler only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
