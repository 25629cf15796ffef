"""Does a longer run let the task recover under the paper's λ = 1?

The 2-epoch sweep (`deft-weight-sweep`) shows plain LoRA learning the task in ~125 steps while
LoRA + density loss at λ = 1 does not. The paper trains for 10 epochs over GLUE-sized sets, long
enough for the density term to saturate (neurons at exact zero, and strongly active ones, have
no density gradient left) and hand the updates back to the task. This suite repeats λ = 0 and
λ = 1 with three times the epochs, everything else as in the sweep.

`python -m benchmarks.run deft-weight-sweep-long` (about 12 min per λ on a quiet 2-core CPU).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.deft.bench_weight_sweep import RECORD_NAME, run_sweep

EPOCHS = 6.0
WEIGHTS = (0.0, 1.0)


def main(quick: bool = False) -> list[Path]:
    return run_sweep(WEIGHTS, EPOCHS, f"{RECORD_NAME} {EPOCHS:g} epochs", quick)
