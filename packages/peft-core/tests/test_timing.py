"""time_step: call counts, ordering of the statistics and argument errors (no timing assertions)."""

from __future__ import annotations

import statistics
from types import SimpleNamespace

import pytest

from peft_core import StepTiming, time_step
from peft_core import timing as timing_module


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.mark.parametrize(("warmup", "repeats"), [(0, 1), (2, 5), (3, 4), (1, 7)])
def test_warmup_and_repeat_call_counts(warmup, repeats):
    fn = Counter()
    timing = time_step(fn, warmup=warmup, repeats=repeats)
    assert fn.calls == warmup + repeats
    assert len(timing.samples) == repeats


def test_default_counts():
    fn = Counter()
    timing = time_step(fn)
    assert fn.calls == 2 + 5
    assert len(timing.samples) == 5


def test_only_the_repeats_are_timed(monkeypatch):
    # A fake clock that only the step advances: warm-up steps "take" 100 s, timed ones 1, 2, 3 s.
    # Samples must be exactly the timed steps' durations, in order: no warm-up leaks in.
    clock = [0.0]
    monkeypatch.setattr(timing_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    durations = iter([100.0, 100.0, 3.0, 1.0, 2.0])

    def step():
        clock[0] += next(durations)

    timing = time_step(step, warmup=2, repeats=3)
    assert timing.samples == (3.0, 1.0, 2.0)
    assert (timing.min, timing.median, timing.max) == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("repeats", [1, 2, 5, 6])
def test_statistics_are_consistent(repeats):
    timing = time_step(lambda: sum(range(100)), warmup=1, repeats=repeats)
    assert isinstance(timing, StepTiming)
    assert all(sample >= 0 for sample in timing.samples)
    assert timing.min <= timing.median <= timing.max
    assert timing.min == min(timing.samples)
    assert timing.max == max(timing.samples)
    assert timing.median == statistics.median(timing.samples)


def test_to_dict():
    timing = StepTiming(median=2.0, min=1.0, max=3.0, samples=(1.0, 2.0, 3.0))
    assert timing.to_dict() == {
        "median_s": 2.0,
        "min_s": 1.0,
        "max_s": 3.0,
        "samples_s": [1.0, 2.0, 3.0],
    }


@pytest.mark.parametrize("repeats", [0, -1])
def test_repeats_must_be_positive(repeats):
    fn = Counter()
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        time_step(fn, repeats=repeats)
    assert fn.calls == 0


def test_warmup_must_not_be_negative():
    fn = Counter()
    with pytest.raises(ValueError, match="warmup must be an integer >= 0"):
        time_step(fn, warmup=-1)
    assert fn.calls == 0


@pytest.mark.parametrize(
    ("argument", "value"), [("repeats", True), ("repeats", 2.5), ("warmup", None), ("warmup", "2")]
)
def test_counts_that_are_not_integers_are_refused_by_name(argument, value):
    fn = Counter()
    with pytest.raises(ValueError, match=f"time_step: {argument} must be an integer"):
        time_step(fn, **{argument: value})
    assert fn.calls == 0


def test_exception_in_step_propagates():
    def failing():
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError, match="step failed"):
        time_step(failing, warmup=0, repeats=1)
