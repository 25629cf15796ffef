"""MEFT's step time against vanilla backprop of the same architecture, every model in one process,
timed round by round.

`python -m benchmarks.run meft-step-time` (about 35 min on a 2-core CPU; 8 x 128 and 8 x 512
tokens on the 12-layer BERT-base-shaped model of the `meft` suite).

Why a second timing of what the `meft` suite already times: that suite needs a fresh process per
row for its peak-memory column, so it times the rows one after another, and load that comes and
goes on the machine falls on whichever row ran while it lasted. Its 128-token table shows the
size of that: MEFT1 and MEFT2 with vanilla backprop do the same arithmetic, yet their steps
differed by 11 % (2.92 s and 2.63 s), and each ratio to vanilla backprop inherits such an error.

Here every model is built in one process, and each round times one training step of every row in
turn, after one untimed step each, which also allocates the optimizer state (on a GPU: three
untimed steps, and 30 rounds). Per variant the ratio is taken within a round, the reversible step
over the vanilla step of the same round, and the record keeps every round's ratio beside their
median and the ratio of the medians. The target is met where both summaries are within it,
missed where neither is, and "on the bound" where they fall on either side. The estimate is the
operation count of the `meft` suite: a reversible step is a vanilla step plus one graph-free
forward, 1 + forward / vanilla step, with the forward (no autograd) timed in the same rounds.

Rows per variant: MEFT<n> with vanilla backprop (num_reversible_layers=0), MEFT<n> reversible,
and the forward without autograd. Two more rows of MEFT1: with float64 streams, the setting
`meft train` and the accuracy tables use (the paper's arithmetic is float32, the default of
MeftConfig and of every other row), and with its top layer on vanilla backprop
(num_reversible_layers = layers - 1), which skips that layer's recompute.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.allocator import keep_freed_memory
from benchmarks.meft.bench_memory_speed import (
    build,
    forward_without_autograd,
    random_inputs,
    training_step,
)
from benchmarks.records import make_record, write_record
from benchmarks.timing import time_interleaved

VARIANTS = ("MEFT1", "MEFT2", "MEFT3")
FLOAT64_ROW = "MEFT1 float64 streams"
TOP_LAYER_ROW = "MEFT1 top layer vanilla"  # num_reversible_layers = layers - 1
EXTRA_ROWS = (FLOAT64_ROW, TOP_LAYER_ROW)  # MEFT1 settings, against MEFT1's vanilla backprop
TIME_TARGET = 1.5  # the bound on step time vs vanilla backprop (we aim for 1.35)


def timed_rows(
    num_layers: int, batch: int, length: int, device: str
) -> dict[str, Callable[[], None]]:
    """Every row's callable, models built once: a training step, or a forward without autograd."""
    inputs = random_inputs(batch, length, device)

    def model(row: str) -> torch.nn.Module:
        return build(row, num_layers).to(device).train()

    rows: dict[str, Callable[[], None]] = {}
    for variant in VARIANTS:
        vanilla = model(f"{variant} vanilla backprop")
        rows[f"{variant} vanilla backprop"] = training_step(vanilla, inputs)
        rows[f"{variant} forward (no autograd)"] = forward_without_autograd(vanilla, inputs)
        rows[variant] = training_step(model(variant), inputs)
    for row in EXTRA_ROWS:
        rows[row] = training_step(model(row), inputs)
    return rows


def ratios(timings: dict[str, dict[str, Any]], num_layers: int) -> dict[str, dict[str, Any]]:
    """Per reversible row: its step over the vanilla step of the same variant, round by round and
    as the ratio of the medians, and the operation-count estimate 1 + recomputed forward / vanilla
    step (the whole forward; with the top layer on vanilla backprop, all but one layer's)."""
    result = {}
    for row in [*VARIANTS, *EXTRA_ROWS]:
        variant = row.split()[0]
        recomputed = (num_layers - 1) / num_layers if row == TOP_LAYER_ROW else 1.0
        vanilla = timings[f"{variant} vanilla backprop"]
        forward = timings[f"{variant} forward (no autograd)"]
        per_round = [
            reversible / plain
            for reversible, plain in zip(
                timings[row]["samples_ms"], vanilla["samples_ms"], strict=True
            )
        ]
        median_of_rounds = statistics.median(per_round)
        of_medians = timings[row]["median_ms"] / vanilla["median_ms"]
        result[row] = {
            "ratio_per_round": per_round,
            "median_ratio_per_round": median_of_rounds,
            "ratio_of_medians": of_medians,
            "estimate": 1 + recomputed * forward["median_ms"] / vanilla["median_ms"],
            "verdict": verdict(median_of_rounds, of_medians),
        }
    return result


def verdict(median_of_rounds: float, ratio_of_medians: float) -> str:
    """Against the target, by both summaries of the same rounds: where they fall on either side
    of it, the rounds cannot tell the ratio from the bound, and the verdict says so."""
    below = [ratio <= TIME_TARGET for ratio in (median_of_rounds, ratio_of_medians)]
    if all(below):
        return "meets"
    return "misses" if not any(below) else "on the bound"


def measure(
    num_layers: int, batch: int, length: int, rounds: int, device: str, warmup: int
) -> dict[str, Any]:
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    rows = timed_rows(num_layers, batch, length, device)
    print(
        f"   {num_layers} layers, {batch}x{length}: {len(rows)} rows, {rounds} rounds", flush=True
    )
    timings = time_interleaved(
        rows, rounds, warmup=warmup, keep_max=True, keep_samples=True, kernel_usage=True
    )
    versus_vanilla = ratios(timings, num_layers)
    for row, values in versus_vanilla.items():
        print(
            f"   {row:>22}: {values['median_ratio_per_round']:.2f}x vanilla per round "
            f"(from {min(values['ratio_per_round']):.2f} to {max(values['ratio_per_round']):.2f}), "
            f"estimate {values['estimate']:.2f}x",
            flush=True,
        )
    return {
        "rows": timings,
        "versus_vanilla": versus_vanilla,
        "target": TIME_TARGET,
        # Rounds shield the ratios from load that comes and goes, not the times themselves.
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }


def main(quick: bool = False) -> list[Path]:
    layers, batch = (2, 2) if quick else (12, 8)
    settings = [(32, 2)] if quick else [(128, 9), (512, 7)]  # (tokens, rounds)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # A GPU step takes milliseconds, and its first ones pay for kernel selection and the caching
    # allocator: more warm-up and rounds cost nothing there.
    warmup = 2 if device == "cuda" else 0
    if device == "cuda" and not quick:
        settings = [(length, 30) for length, _ in settings]
    # Before any model is built: every step's activations then come from memory the process
    # kept, as on a GPU, instead of from the kernel afresh (benchmarks.allocator).
    heap = keep_freed_memory()
    paths = []
    for length, rounds in settings:
        record = make_record(
            f"meft step time in one process bert-base {layers}L {batch}x{length}"
            + (" quick" if quick else ""),
            method="MEFT reversible vs vanilla backprop of the same architecture, interleaved",
            model=f"BertForSequenceClassification, random init, {layers}x768, 12 heads, sdpa "
            "attention",
            data=f"random tokens, batch {batch} x {length}, fp32",
            config={"rounds": rounds, "untimed_calls_per_row": warmup + 1, "allocator": heap},
            seed=0,
            train_info=measure(layers, batch, length, rounds, device, warmup),
        )
        paths.append(write_record(record))
    return paths
