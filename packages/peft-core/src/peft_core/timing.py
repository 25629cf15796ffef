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


def synchronize_device() -> None:
    """Wait for queued CUDA work (a no-op without CUDA): a clock read after it covers that work."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"time_step: {name} must be an integer >= {minimum}, got {value!r}")


def time_step(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 5) -> StepTiming:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; CUDA work is synchronised.

    Warm-up absorbs one-off costs (allocator growth, kernel selection, lazy initialisation), so the
    median describes the steady state a long training run sees.
    """
    _check_count("repeats", repeats, minimum=1)
    _check_count("warmup", warmup, minimum=0)
    for _ in range(warmup):
        fn()
    synchronize_device()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize_device()
        samples.append(time.perf_counter() - start)
    return StepTiming(statistics.median(samples), min(samples), max(samples), tuple(samples))
