"""Timing training steps for benchmarks (never for unit tests: timings are not assertions)."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


@dataclasses.dataclass(frozen=True)
class StepTiming:
    """Seconds per call over the timed repeats."""

    median: float
    min: float
    max: float
    samples: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": self.min,
            "max_s": self.max,
            "samples_s": list(self.samples),
        }


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_step(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 5) -> StepTiming:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; CUDA work is synchronised.

    Warm-up absorbs one-off costs (allocator growth, kernel selection, lazy initialisation), so the
    median describes the steady state a long training run sees.
    """
    if repeats < 1:
        raise ValueError(f"time_step: repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"time_step: warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    _synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize()
        samples.append(time.perf_counter() - start)
    return StepTiming(statistics.median(samples), min(samples), max(samples), tuple(samples))
