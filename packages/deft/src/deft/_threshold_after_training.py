"""``deft train --threshold-density`` without ``--threshold-in-training``: zero |a| ≤ τ once
training ends, so that the recipe's own test evaluation (accuracy, macro-F1) scores the model
with its zeros, after keeping the test metrics of the same weights without them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peft_core.trainer import TrainerCallback


class ThresholdAfterTraining(TrainerCallback):
    """At the end of training: evaluate ``test_set`` as is, then ``install()`` the threshold.

    ``install`` returns the handle of the installed hooks (:func:`deft.apply_threshold`); it is
    kept in ``handle`` for the caller to remove, and the metrics without the zeros in
    ``metrics_without``.
    """

    name = "threshold_after_training"

    def __init__(self, install: Callable[[], Any], test_set: Any) -> None:
        self.install = install
        self.test_set = test_set
        self.handle: Any = None
        self.metrics_without: dict[str, float] | None = None

    def on_train_end(self, trainer: Any) -> None:
        self.metrics_without = trainer.evaluate(self.test_set)
        self.handle = self.install()
