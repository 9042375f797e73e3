"""The stage timer behind benchmarks/bench_cost.py."""

import skdiffmic._profiling as profiling
from skdiffmic._profiling import record_stages, timed


class _Clock:
    """A clock that advances only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_stages_record_self_time_under_their_path(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(profiling.time, "perf_counter", clock)
    with record_stages() as times:
        with timed("outer"):
            clock.now += 2.0
            for _ in range(2):
                with timed("inner"):
                    clock.now += 3.0
            clock.now += 1.0
    assert set(times.seconds) == {"outer", "outer/inner"}
    assert times.calls == {"outer": 1, "outer/inner": 2}
    # The outer stage is charged its own 3 s, not its children's 6 s.
    assert times.seconds["outer"] == 3.0
    assert times.seconds["outer/inner"] == 6.0
    assert times.total() == 9.0


def test_stages_outside_a_recording_record_nothing():
    with record_stages() as times:
        pass
    with timed("ignored"):
        pass
    assert dict(times.seconds) == {}
