"""Classification accuracy of a point-cloud model over a test loader, with optional voting.

:func:`evaluate` reports the two numbers of the ScanObjectNN / ModelNet tables: overall accuracy
(OA, the fraction of test clouds classified correctly) and mean class accuracy (mAcc, the mean over
classes of each class's accuracy).

Voting, as Point-MAE / Point-BERT (and Point-PEFT's reference code) vote: every test cloud is
classified ``votes`` times, each time after a fresh random scale-and-translate (per-axis scale
U(2/3, 3/2), shift U(-0.2, 0.2)), and the **logits** of the copies are averaged before the argmax
(``average="probabilities"`` averages softmax outputs instead). The reference also re-draws
1024 of 1200 FPS points per copy on ModelNet; pass
``augmentation=Compose([RandomSubset(1024), ScaleAndTranslate()])`` on 1200-point clouds for that.
The reference's voting crashes with Point-PEFT (it calls the model without the memory-bank query
features); here every model computes what it needs from the points it is given, so voting works
for :class:`~point_peft.method.PointPeftModel` as for the baselines and the plain classifiers.
The reference also reports the best of 300 voting runs over the test set; report one seeded run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from point_peft.data.augmentations import ScaleAndTranslate
from point_peft.method.query import evaluation_mode

AVERAGES = ("logits", "probabilities")


def classification_metrics(
    scores: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
) -> dict[str, Any]:
    """Overall and mean class accuracy of ``scores`` (batch, classes) or predicted classes (batch,)
    against ``labels`` (batch,).

    Mean class accuracy averages over the classes present in ``labels`` (a class with no test
    sample has no accuracy; ScanObjectNN and ModelNet test sets hold every class).

    Returns:
        ``accuracy`` (overall, a fraction in [0, 1]), ``mean_class_accuracy`` (in [0, 1]),
        ``per_class_accuracy`` (a list over classes, ``None`` for a class absent from ``labels``),
        ``num_samples``.

    Example:
        >>> predictions = torch.tensor([0, 0, 1, 1, 2, 0])
        >>> labels = torch.tensor([0, 0, 0, 1, 2, 2])
        >>> metrics = classification_metrics(predictions, labels, num_classes=3)
        >>> round(metrics["accuracy"], 4), round(metrics["mean_class_accuracy"], 4)
        (0.6667, 0.7222)
        >>> [round(value, 4) for value in metrics["per_class_accuracy"]]
        [0.6667, 1.0, 0.5]
    """
    labels = torch.as_tensor(labels).reshape(-1).long().cpu()
    scores = torch.as_tensor(scores).detach().cpu()
    if scores.dim() == 2:
        if num_classes is None:
            num_classes = scores.shape[1]
        elif num_classes != scores.shape[1]:
            raise ValueError(
                f"num_classes={num_classes} but the scores have {scores.shape[1]} columns"
            )
        predictions = scores.argmax(dim=1)
    elif scores.dim() == 1:
        predictions = scores.long()
    else:
        raise ValueError(
            f"scores must be (batch, classes) logits or (batch,) predictions, got shape "
            f"{tuple(scores.shape)}"
        )
    if predictions.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{predictions.shape[0]} predictions for {labels.shape[0]} labels: they must match"
        )
    if labels.numel() == 0:
        raise ValueError("no sample to evaluate")
    if num_classes is None:
        num_classes = int(max(labels.max(), predictions.max())) + 1
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(
            f"labels must be class indices in [0, {num_classes}), got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    correct = predictions == labels
    totals = torch.bincount(labels, minlength=num_classes)
    hits = torch.bincount(labels[correct], minlength=num_classes)
    present = totals > 0
    per_class = hits.double() / totals.clamp_min(1).double()
    return {
        "accuracy": float(correct.double().mean()),
        "mean_class_accuracy": float(per_class[present].mean()),
        "per_class_accuracy": [
            float(value) if is_present else None
            for value, is_present in zip(per_class.tolist(), present.tolist(), strict=True)
        ],
        "num_samples": int(labels.numel()),
    }


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    votes: int = 1,
    augmentation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
    average: str = "logits",
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Overall and mean class accuracy of ``model`` on ``loader``, voting over augmented copies.

    Args:
        model: anything that maps clouds (batch, N, 3) to class logits (batch, classes), as a
            tensor or as an output with ``logits`` (:class:`~point_peft.method.PointPeftModel`,
            :class:`~point_peft.baselines.BaselineModel`, a plain
            :class:`~point_peft.models.PointMAE` / :class:`~point_peft.models.PointBERT`). It runs
            in eval mode under ``no_grad`` with its points only (no labels, no
            ``sample_indices``: Point-PEFT computes every test query afresh); the mode of each of
            its submodules is restored afterwards.
        loader: batches as the datasets here give them (dicts with ``"points"`` and ``"labels"``;
            other keys are ignored) or ``(points, labels)`` pairs.
        votes: classifications per cloud whose scores are averaged (1: plain evaluation).
        augmentation: applied to each copy (a batch in, a batch out). ``None``: with
            ``votes > 1`` a :class:`~point_peft.data.ScaleAndTranslate` whose draws come from a CPU
            generator seeded with ``seed`` (the same copies on every device), with ``votes=1``
            none.
        seed: seeds the default augmentation, and torch's global random state (CPU, and CUDA when
            in use) inside the call, for an ``augmentation`` that draws from it; the global state
            is restored afterwards. The draws run batch by batch in loader order, vote by vote.
        average: ``"logits"`` (the reference's voting) or ``"probabilities"`` (softmax outputs).
        return_predictions: also return the averaged ``scores`` (samples, classes) and the
            ``labels`` (samples,) as CPU tensors.

    Returns:
        A dict: ``accuracy`` (overall accuracy, a fraction in [0, 1]), ``mean_class_accuracy``,
        ``per_class_accuracy`` (``None`` for a class with no test sample), ``num_samples``,
        ``votes``, ``average``; JSON-serialisable unless ``return_predictions``.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> from point_peft.data import ProceduralShapes
        >>> from point_peft.models import PointMAE, PointTransformerConfig
        >>> _ = torch.manual_seed(0)
        >>> model = PointMAE(PointTransformerConfig.small(num_classes=15))
        >>> test = ProceduralShapes("test", "clean", num_points=256, samples_per_class=1)
        >>> metrics = evaluate(model, DataLoader(test, batch_size=8), votes=3)
        >>> sorted(metrics)
        ['accuracy', 'average', 'mean_class_accuracy', 'num_samples', 'per_class_accuracy', 'votes']
        >>> metrics["num_samples"], metrics["votes"], model.training  # its mode is restored
        (15, 3, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(votes, bool) or not isinstance(votes, int) or votes < 1:
        raise ValueError(f"votes must be a positive integer, got {votes!r}")
    if augmentation is not None and not callable(augmentation):
        raise TypeError(
            "augmentation must be a callable from a batch of clouds to a batch of clouds, or "
            f"None, got {type(augmentation).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
    if augmentation is None and votes > 1:
        augmentation = ScaleAndTranslate(generator=torch.Generator().manual_seed(seed))
    device, dtype = _placement(model)

    all_scores, all_labels = [], []
    with evaluation_mode(model), torch.no_grad(), _seeded_global_rng(seed):
        for batch in loader:
            points, labels = _unpack(batch)
            points = points.to(device=device, dtype=dtype)
            copies = []
            for _ in range(votes):
                copy = points if augmentation is None else augmentation(points)
                logits = _logits(model(copy), points.shape[0])
                copies.append(logits.float() if average == "logits" else logits.float().softmax(-1))
            all_scores.append(torch.stack(copies).mean(dim=0).cpu())
            all_labels.append(torch.as_tensor(labels).reshape(-1).cpu())
    if not all_scores:
        raise ValueError("the loader yielded no batch: nothing to evaluate")
    scores, labels = torch.cat(all_scores), torch.cat(all_labels)
    result = classification_metrics(scores, labels)
    result.update(votes=votes, average=average)
    if return_predictions:
        result.update(scores=scores, labels=labels)
    return result


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the model's floating-point parameters live (inputs are moved there)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.device, parameter.dtype
    return torch.device("cpu"), torch.float32


def _unpack(batch: Any) -> tuple[torch.Tensor, Any]:
    if isinstance(batch, Mapping):
        missing = [key for key in ("points", "labels") if key not in batch]
        if missing:
            raise KeyError(
                f"a batch must hold 'points' and 'labels'; this one lacks {missing} "
                f"(keys: {sorted(batch)})"
            )
        return batch["points"], batch["labels"]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(
        "batches must be dicts with 'points' and 'labels' or (points, labels) pairs, got "
        f"{type(batch).__name__}"
    )


def _logits(output: Any, batch: int) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        logits = output
    elif isinstance(output, Mapping) and "logits" in output:
        logits = output["logits"]
    elif isinstance(getattr(output, "logits", None), torch.Tensor):
        logits = output.logits
    else:
        raise TypeError(
            "the model must return logits: a tensor, a dict with 'logits' or an object with a "
            f".logits tensor; got {type(output).__name__}"
        )
    if logits.dim() != 2 or logits.shape[0] != batch:
        raise ValueError(
            f"the model's logits must be (batch={batch}, classes), got {tuple(logits.shape)}"
        )
    return logits


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed torch's global CPU (and initialised CUDA) random state, restoring it on exit."""
    cuda_devices = (
        list(range(torch.cuda.device_count()))
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else []
    )
    with torch.random.fork_rng(devices=cuda_devices):
        torch.default_generator.manual_seed(seed)
        if cuda_devices:
            torch.cuda.manual_seed_all(seed)
        yield
