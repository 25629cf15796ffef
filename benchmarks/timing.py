"""Timing rows of a benchmark side by side: interleaved rounds, so that load which comes and goes
on the machine falls on every row alike instead of on whichever ran while it lasted."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from benchmarks import allocator
from peft_core import time_step


def time_interleaved(
    rows: dict[str, Callable[[], Any]],
    rounds: int,
    *,
    warmup: int,
    repeats: int = 1,
    keep_max: bool = False,
    keep_samples: bool = False,
    kernel_usage: bool = False,
) -> dict[str, dict[str, Any]]:
    """Milliseconds per call of every row: first a warm-up round of ``warmup + 1`` calls of
    each row, none of them kept (allocator growth, lazy kernel selection, optimizer state), then
    ``rounds`` rounds that time ``repeats`` calls of each row in turn. Per row: ``median_ms``,
    ``min_ms`` (and ``max_ms`` with ``keep_max``) over all ``rounds * repeats`` samples, and their
    count, ``samples``. With ``keep_samples``, also ``samples_ms``, in the order they were
    timed: the n-th sample of every row comes from the same round, so two rows can be compared
    round by round (``repeats`` of 1 makes that one sample a round). With ``kernel_usage``, also
    ``kernel_s_per_call`` and ``minor_faults_per_call`` of the timed calls, in the same order
    (:func:`benchmarks.allocator.kernel_usage`).

    Example:
        >>> timings = time_interleaved({"a": lambda: None, "b": lambda: None}, 2, warmup=1)
        >>> sorted(timings["a"]), timings["b"]["samples"]
        (['median_ms', 'min_ms', 'samples'], 2)
    """
    if kernel_usage:
        rows, usage = allocator.kernel_usage(rows)
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for fn in rows.values():
        time_step(fn, warmup=warmup, repeats=1)
    for _ in range(rounds):
        for name, fn in rows.items():
            samples[name].extend(time_step(fn, warmup=0, repeats=repeats).samples)
    timings = {}
    for name, s in samples.items():
        timings[name] = {"median_ms": statistics.median(s) * 1e3, "min_ms": min(s) * 1e3}
        if keep_max:
            timings[name]["max_ms"] = max(s) * 1e3
        timings[name]["samples"] = len(s)
        if keep_samples:
            timings[name]["samples_ms"] = [value * 1e3 for value in s]
        if kernel_usage:
            # the warm-up calls come first
            timings[name].update(allocator.usage_fields(usage[name][-len(s) :]))
    return timings
