"""What the DEFT accuracy and density suites (and the demo section) measure the same way.

- :class:`LossCurve`: the peft-core Trainer's logged losses (task, density term, total) per step.
- :func:`batches`: a data set cut into collated batches once, reused by every measurement so that
  each row of a comparison sees the very same tokens.
- :func:`accuracy`: test accuracy of a classifier in eval mode (argmax of the logits).
- :func:`thresholded`: a model with |a| ≤ τ zeroed, τ calibrated per layer to a density: its τ,
  density report and test accuracy (the matched-density baseline and its curve).
- :func:`step_time_overhead`: the median time of one training step with and without the density
  term, interleaved step by step on the same batches (so load from other processes hits both rows
  alike) — the side-by-side figure behind "loss overhead ≤ 10% of step time".
- :func:`summary` (from :mod:`benchmarks.records`): mean ± std (sample std) over seeds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from benchmarks.records import summary
from peft_core.timing import synchronize_device
from peft_core.trainer import TrainerCallback


class LossCurve(TrainerCallback):
    """Keeps every training log record (``loss``, ``task_loss``, ``density_loss`` …) by step.

    Example:
        >>> curve = LossCurve()
        >>> curve.on_step_end(None, {"step": 1, "loss": 0.7, "task_loss": 0.69, "type": "train"})
        >>> curve.points
        [{'step': 1, 'loss': 0.7, 'task_loss': 0.69}]
    """

    name = "loss_curve"

    def __init__(self) -> None:
        self.points: list[dict[str, float]] = []

    def on_step_end(self, trainer: Any, logs: dict[str, float]) -> None:
        keep = ("step", "loss", "task_loss", "density_loss", "density", "density_weight")
        self.points.append({key: logs[key] for key in keep if key in logs})


def batches(
    dataset: torch.utils.data.Dataset,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    batch_size: int,
    limit: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The first ``limit`` examples (all by default) of ``dataset`` as collated batches, in order.

    Example:
        >>> rows = [{"x": torch.tensor([i])} for i in range(5)]
        >>> stack = lambda items: {"x": torch.cat([item["x"] for item in items])}
        >>> [b["x"].tolist() for b in batches(rows, stack, batch_size=2)]
        [[0, 1], [2, 3], [4]]
    """
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return [
        collate([dataset[i] for i in range(start, min(start + batch_size, count))])
        for start in range(0, count, batch_size)
    ]


def on_device(batch: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``batch`` on the device of ``model``'s parameters (the Trainer may have moved it to a GPU)."""
    device = next(model.parameters()).device
    return {key: value.to(device) for key, value in batch.items()}


@torch.no_grad()
def accuracy(model: nn.Module, eval_batches: Iterable[dict[str, torch.Tensor]]) -> float:
    """Fraction of examples whose argmax logit is the label; the model is left in eval mode.

    Example:
        >>> class Fixed(nn.Module):
        ...     def forward(self, x, labels):
        ...         return {"logits": x}
        >>> logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
        >>> accuracy(Fixed(), [{"x": logits, "labels": torch.tensor([0, 1, 1])}])
        0.6666666666666666
    """
    model.eval()
    correct = total = 0
    for batch in eval_batches:
        batch = on_device(batch, model)
        outputs = model(**batch)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        correct += int((logits.argmax(dim=-1) == batch["labels"]).sum())
        total += len(batch["labels"])
    if total == 0:
        raise ValueError("accuracy got no examples")
    return correct / total


def step_time_overhead(
    model: nn.Module,
    train_batches: Sequence[dict[str, torch.Tensor]],
    learning_rate: float,
    *,
    rounds: int,
    weight: float = 1.0,
) -> dict[str, Any]:
    """Median seconds of a training step without and with ``weight ·`` the density loss.

    One step is what the Trainer does per batch: forward, task loss (+ the density term), backward,
    AdamW step, zero the gradients. The two rows alternate batch by batch on the same model: the
    plain step runs with no hook on the model at all; the DEFT step attaches a
    :class:`deft.DensityMonitor` just before it and removes it after (attaching is not timed), so
    the difference is exactly the hooks plus the loss term and its backward. The weights move a
    little with each step; timing does not depend on their values. One untimed warm-up step of
    each kind goes first.

    Example:
        >>> from peft_core.testing import TinyClassifier
        >>> model = TinyClassifier(num_layers=1)
        >>> data = [{"input_ids": torch.randint(0, 32, (2, 4)), "labels": torch.tensor([0, 1])}]
        >>> timing = step_time_overhead(model, data, 1e-3, rounds=1)
        >>> sorted(timing), timing["samples"]
        (['overhead_percent', 'samples', 'with_density_loss_s', 'without_density_loss_s'], 1)
    """
    from deft import DensityMonitor

    if rounds < 1 or not train_batches:
        raise ValueError("step_time_overhead needs rounds >= 1 and at least one batch")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate)
    model.train()

    def step(batch: dict[str, torch.Tensor], with_loss: bool) -> float:
        batch = on_device(batch, model)
        monitor = DensityMonitor(model) if with_loss else None
        try:
            synchronize_device()
            started = time.perf_counter()
            outputs = model(**batch)
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs.loss
            if monitor is not None:
                loss = loss + weight * monitor.loss_for_batch(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            synchronize_device()
            return time.perf_counter() - started
        finally:
            if monitor is not None:
                monitor.remove()

    step(train_batches[0], False)
    step(train_batches[0], True)
    samples: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for batch in train_batches:
            for with_loss in (False, True):
                samples[with_loss].append(step(batch, with_loss))
    without, with_loss = statistics.median(samples[False]), statistics.median(samples[True])
    return {
        "without_density_loss_s": summary(samples[False]) | {"median": without},
        "with_density_loss_s": summary(samples[True]) | {"median": with_loss},
        "overhead_percent": 100.0 * (with_loss - without) / without,
        "samples": len(samples[False]),
    }


def thresholded(
    model: nn.Module,
    calibration: list,
    density: float,
    test_batches: list,
    *,
    thresholds: Sequence[float],
    baseline: Any = None,
) -> tuple[dict[str, float], Any, float]:
    """Zero |a| ≤ τ in ``model``, τ calibrated per layer on ``calibration`` to ``density``.

    Returns the τ per layer, the density report of ``test_batches`` (variants ``thresholds``,
    compared with ``baseline``) and the test accuracy, both measured with the τ applied.
    """
    from deft import apply_threshold, calibrate_threshold, measure_density

    taus = calibrate_threshold(model, calibration, density)
    with apply_threshold(model, taus):
        report = measure_density(model, test_batches, thresholds=thresholds, baseline=baseline)
        return taus, report, accuracy(model, test_batches)
