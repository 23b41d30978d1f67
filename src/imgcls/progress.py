"""Progress of a long pass (an epoch, feature caching, an evaluation, a download), shown as fits where it goes:
a tqdm bar on a terminal or in a notebook; elsewhere (a log file, CI, `| tee`) a few whole lines, because
tqdm's carriage returns would turn one pass into one line of kilobytes there.

Layer 0: tqdm is imported only when a bar is shown. Every progress display of imgcls goes through `show_progress`
(or `track` for a loop), so `--progress` / `--no-progress` mean the same everywhere.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TextIO, TypeVar

from imgcls.limits import human_bytes

T = TypeVar("T")

EVERY = 0.25  # a line at 25%, 50% and 75% of a pass
MIN_SECONDS = 10.0  # ... of one that has run this long: a short pass shows only its caller's own line


class Progress(Protocol):
    """What callers use of a tqdm bar; `Lines` and `Off` answer the same."""

    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, **values: Any) -> Any: ...

    def close(self) -> Any: ...


class Off:
    """--no-progress: nothing is shown."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


class Lines:
    """A pass as whole lines, for a stream that is not a terminal: one when the pass crosses each `every` of its
    total (`epoch 3/30: 50% 5,512/11,024 [2m31s] loss 0.812 ...`), once it has run `min_seconds`. Nothing at the
    end: the caller's own line (the epoch's, the cached features', the report) says the pass finished. A pass of
    unknown length shows nothing."""

    def __init__(self, total: int | None, *, desc: str, initial: int = 0, unit: str = "it", stream: TextIO,
                 every: float = EVERY, min_seconds: float = MIN_SECONDS) -> None:
        self.total, self.desc, self.n, self.unit, self.stream = total, desc, initial, unit, stream
        self.every, self.min_seconds = every, min_seconds
        self.start, self.postfix = time.monotonic(), ""
        self.mark = self._next_mark()

    def _next_mark(self) -> float:
        """The next fraction of the total that earns a line (past the current position: a resumed pass starts
        counting where it is)."""
        done = self.n / self.total if self.total else 0.0
        return (math.floor(done / self.every + 1e-9) + 1) * self.every

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.total or self.n / self.total < self.mark - 1e-9:
            return
        self.mark = self._next_mark()
        elapsed = time.monotonic() - self.start
        if self.n < self.total and elapsed >= self.min_seconds:
            print(f"{self.desc}: {100 * self.n / self.total:.0f}% {self._amount()} [{clock(elapsed)}]{self.postfix}",
                  file=self.stream, flush=True)

    def _amount(self) -> str:
        if self.unit == "B":
            return f"{human_bytes(self.n)} of {human_bytes(self.total)}"
        return f"{self.n:,}/{self.total:,}"

    def set_postfix(self, **values: Any) -> None:
        self.postfix = "".join(f" {k.replace('_', '/')} {v}" for k, v in values.items())

    def close(self) -> None:
        pass


def clock(seconds: float) -> str:
    """A duration as 2m05s or 1h02m05s (progress lines, a run's summary)."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


def shows_bars(stream: TextIO) -> bool:
    """Whether `stream` redraws a line in place: a terminal, or a notebook's output (ipykernel's stream)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) or type(stream).__module__.startswith("ipykernel")


def show_progress(total: int | None, *, desc: str, enabled: bool = True, initial: int = 0, unit: str = "it",
                  leave: bool = False, stream: TextIO | None = None) -> Progress:
    """The progress display of one pass of `total` steps (or bytes, `unit="B"`) on `stream` (sys.stderr at the
    time of the call): a tqdm bar where bars redraw in place, `Lines` elsewhere, nothing when not `enabled`."""
    if not enabled:
        return Off()
    stream = sys.stderr if stream is None else stream
    if not shows_bars(stream):
        return Lines(total, desc=desc, initial=initial, unit=unit, stream=stream)
    from tqdm.auto import tqdm  # a notebook's widget there, the terminal bar elsewhere

    scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, file=stream, **scale)


def track(items: Iterable[T], *, total: int | None, desc: str, enabled: bool = True,
          stream: TextIO | None = None) -> Iterator[T]:
    """`items`, one step of a `show_progress` display each."""
    bar = show_progress(total, desc=desc, enabled=enabled, stream=stream)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
