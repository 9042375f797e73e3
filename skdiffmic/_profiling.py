"""Wall time per stage of ``fit`` and ``predict``, for the cost benchmark.

The training loop, the sampler and the guidance model mark their stages with
``with timed("name"):``. Outside :func:`record_stages` that is a no-op (one
global lookup), so production code pays nothing. Inside it, every stage's
*self* time (its wall time less that of the stages nested in it) is added to
the recorder under its path (``"calibration/feature statistics"``), with the
device synchronised at each boundary so that asynchronous CUDA work is
charged to the stage that queued it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch

__all__ = ["StageTimes", "record_stages", "timed"]


class StageTimes:
    """Accumulated self time (seconds) and call count per stage name."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [start, time in nested stages, path]

    def total(self) -> float:
        return float(sum(self.seconds.values()))


_active: StageTimes | None = None


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextmanager
def timed(name: str):
    """Charge the enclosed block's self time to ``name`` while recording.

    Nested stages are recorded under their path: ``name`` prefixed by the
    names of the stages around it, joined by ``/``.
    """
    times = _active
    if times is None:
        yield
        return
    _sync()
    path = f"{times._stack[-1][2]}/{name}" if times._stack else name
    frame = [time.perf_counter(), 0.0, path]
    times._stack.append(frame)
    try:
        yield
    finally:
        _sync()
        elapsed = time.perf_counter() - frame[0]
        times._stack.pop()
        times.seconds[path] += elapsed - frame[1]
        times.calls[path] += 1
        if times._stack:
            times._stack[-1][1] += elapsed


@contextmanager
def record_stages():
    """Record the stages run inside the block; yields a :class:`StageTimes`.

    Time outside any stage is not recorded: wrap the whole call in a stage of
    its own (``with timed("other"):``) to account for all of it.
    """
    global _active
    previous, _active = _active, StageTimes()
    try:
        yield _active
    finally:
        _active = previous
