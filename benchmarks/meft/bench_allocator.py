"""What the C heap's handling of freed memory does to CPU step times, and so to MEFT's ratios.

`python -m benchmarks.run meft-allocator` (about 13 min on a 2-core CPU; 8 x 128 and 8 x 512
tokens on the 12-layer BERT-base-shaped model of the `meft` suite).

Rows: full fine-tuning, MEFT1 with vanilla backprop, its forward without autograd, and MEFT1
reversible, timed round by round as in `meft-step-time`, once with glibc's default allocator and
once with freed memory kept in the process (:func:`benchmarks.allocator.keep_freed_memory`),
each allocator in a fresh process (it is process-wide). Per row and allocator: step time, kernel
CPU time and minor page faults per step (medians of the timed rounds), and MEFT1's ratio to
vanilla backprop with its operation-count estimate. A step that saves gigabytes of activations
gets them from the kernel afresh every step under the default allocator (see
:mod:`benchmarks.allocator`); this suite shows how much of its time that is, and what it does to a
ratio against a method that saves almost nothing.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
from pathlib import Path
from typing import Any

import torch

from benchmarks import allocator
from benchmarks.meft.bench_memory_speed import (
    build,
    forward_without_autograd,
    random_inputs,
    training_step,
)
from benchmarks.records import make_record, write_record
from benchmarks.timing import time_interleaved

ALLOCATORS = ("default", "kept")
VANILLA, FORWARD, REVERSIBLE, FULL = (
    "MEFT1 vanilla backprop",
    "MEFT1 forward (no autograd)",
    "MEFT1",
    "full fine-tuning",
)


def _rows(num_layers: int, batch: int, length: int) -> dict[str, Any]:
    inputs = random_inputs(batch, length)
    vanilla = build(VANILLA, num_layers).train()
    return {
        FULL: training_step(build(FULL, num_layers).train(), inputs),
        VANILLA: training_step(vanilla, inputs),
        FORWARD: forward_without_autograd(vanilla, inputs),
        REVERSIBLE: training_step(build(REVERSIBLE, num_layers).train(), inputs),
    }


def measure_allocator(
    which: str, num_layers: int, batch: int, length: int, rounds: int
) -> dict[str, Any]:
    """Runs in a fresh process: set the allocator up, build the rows, time them in rounds."""
    described = allocator.keep_freed_memory() if which == "kept" else allocator.DEFAULT
    torch.manual_seed(0)
    timings = time_interleaved(
        _rows(num_layers, batch, length),
        rounds,
        warmup=0,
        keep_max=True,
        keep_samples=True,
        kernel_usage=True,
    )
    return {"allocator": described, "rows": timings, "meft1_versus_vanilla": ratios(timings)}


def ratios(timings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """MEFT1's step over the vanilla step of the same round, the ratio of the medians, and the
    operation-count estimate 1 + forward / vanilla step; and the vanilla step over full
    fine-tuning's."""
    per_round = [
        reversible / plain
        for reversible, plain in zip(
            timings[REVERSIBLE]["samples_ms"], timings[VANILLA]["samples_ms"], strict=True
        )
    ]
    vanilla = timings[VANILLA]["median_ms"]
    return {
        "ratio_per_round": per_round,
        "median_ratio_per_round": statistics.median(per_round),
        "ratio_of_medians": timings[REVERSIBLE]["median_ms"] / vanilla,
        "estimate": 1 + timings[FORWARD]["median_ms"] / vanilla,
        "vanilla_over_full_fine_tuning": vanilla / timings[FULL]["median_ms"],
    }


def _in_fresh_process(*args: Any) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure_allocator, args)


def measure(num_layers: int, batch: int, length: int, rounds: int) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    allocators = {}
    for which in ALLOCATORS:
        print(f"   {num_layers} layers, {batch}x{length}, allocator {which} ...", flush=True)
        result = allocators[which] = _in_fresh_process(which, num_layers, batch, length, rounds)
        for name, row in result["rows"].items():
            print(
                f"   {name:>28}: {row['median_ms'] / 1e3:6.2f} s, kernel "
                f"{statistics.median(row['kernel_s_per_call']):5.2f} s, "
                f"{statistics.median(row['minor_faults_per_call']):>9,.0f} page faults",
                flush=True,
            )
        versus = result["meft1_versus_vanilla"]
        print(
            f"   MEFT1 / vanilla: {versus['median_ratio_per_round']:.2f} (median of rounds), "
            f"{versus['ratio_of_medians']:.2f} (of medians), estimate {versus['estimate']:.2f}",
            flush=True,
        )
    return {
        "allocators": allocators,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }


def main(quick: bool = False) -> list[Path]:
    layers, batch = (2, 2) if quick else (12, 8)
    settings = [(32, 2)] if quick else [(128, 5), (512, 3)]  # (tokens, rounds)
    paths = []
    for length, rounds in settings:
        record = make_record(
            f"meft allocator bert-base {layers}L {batch}x{length}" + (" quick" if quick else ""),
            method="full fine-tuning, MEFT1 vanilla backprop and MEFT1 reversible under glibc's "
            "default allocator and with freed memory kept, each in a fresh process",
            model=f"BertForSequenceClassification, random init, {layers}x768, 12 heads, sdpa "
            "attention",
            data=f"random tokens, batch {batch} x {length}, fp32",
            config={"rounds": rounds, "untimed_calls_per_row": 1, "allocators": list(ALLOCATORS)},
            seed=0,
            train_info=measure(layers, batch, length, rounds),
        )
        paths.append(write_record(record))
    return paths
