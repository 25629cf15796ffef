"""What every demo section is told about the run: its length, its seed, and whether it is a smoke run."""

from __future__ import annotations

from dataclasses import dataclass

# --smoke: the sizes of a run that checks every section end to end in a few minutes on a CPU.
# Its accuracies mean nothing (32 training sentences, 64 test sentences, a few point-cloud steps).
SMOKE_MAX_TRAIN = 32
SMOKE_MAX_EVAL = 64
SMOKE_POINT_DATA = {"samples_per_class": 2, "test_samples_per_class": 2}  # of the 15 classes
SMOKE_POINT_TRAINING = {"max_steps": 3, "batch_size": 8}


@dataclass(frozen=True)
class DemoOptions:
    epochs: float = 1.0
    """Epochs of the text sections' runs (the point section runs its recipe's)."""
    seed: int = 0
    smoke: bool = False
    """Tiny data and a few steps everywhere: checks that the demo runs, not what it measures."""
