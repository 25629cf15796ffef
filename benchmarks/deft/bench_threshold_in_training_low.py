"""`deft-threshold-in-training` at 10 % density, where thresholding after training starts to cost.

At the 30 % of `deft-threshold-in-training` the matched-density baseline loses nothing (plain
LoRA, seed 0: 84.51 % at 29.8 % against 83.32 % unthresholded), so there is no accuracy for
training with the zeros or the density loss to win back. At 10 % it loses about 2 points (81.33 %
at 9.9 %, `deft-lora-targets`). This suite repeats the 30 % suite (same rows, seeds, recipe) with
the training threshold keeping 10 % of the starting model's activations, and ε = 0.03 ≈ τ² for
the τ ≈ 0.17 that does so (0.21 in the first layer; above GELU's smallest output, −0.17: every
negative output and the smallest positive ones are zeroed).

`python -m benchmarks.run deft-threshold-in-training-low` (about 5 min per row on a quiet 2-core
CPU, 3 rows per seed); the record is rewritten after every row and a rerun with --resume resumes.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.deft.bench_threshold_in_training import RECORD_NAME, run

TRAINING_DENSITY = 0.1
EPS = 0.03  # ≈ τ² for the τ ≈ 0.17 that keeps 10 % of MiniLM's GELU outputs


def main(quick: bool = False) -> list[Path]:
    return run(quick, TRAINING_DENSITY, EPS, f"{RECORD_NAME} at 10 % density")
