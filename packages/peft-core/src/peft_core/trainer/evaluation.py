"""Reading model outputs and the default metrics: classification, and regression (STS-B)."""

from __future__ import annotations

from typing import Any

import torch


def output_field(outputs: Any, name: str) -> Any:
    """``outputs.name`` or ``outputs[name]``: works for Hugging Face ModelOutput, dicts and objects."""
    if isinstance(outputs, dict):
        return outputs.get(name)
    return getattr(outputs, name, None)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(dim=-1) == labels).float().mean().item()


def macro_f1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """F1 averaged over the classes that occur in labels or predictions."""
    predictions = logits.argmax(dim=-1)
    scores = []
    for cls in torch.unique(torch.cat([labels, predictions])):
        true_positive = ((predictions == cls) & (labels == cls)).sum().item()
        predicted = (predictions == cls).sum().item()
        actual = (labels == cls).sum().item()
        denominator = predicted + actual
        scores.append(2 * true_positive / denominator if denominator else 0.0)
    return sum(scores) / len(scores)


def matthews_correlation(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Matthews correlation coefficient of the argmax predictions, in [-1, 1]; GLUE's metric for
    CoLA. With more than two classes it is Gorodkin's generalisation (what scikit-learn's
    ``matthews_corrcoef`` computes), which equals the binary formula for two. 0.0 when either
    the labels or the predictions hold a single class (the coefficient is undefined there).

    Example:
        >>> logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
        >>> round(matthews_correlation(logits, torch.tensor([0, 1, 1, 1])), 4)
        0.5774
    """
    predictions = logits.argmax(dim=-1)
    classes = max(logits.shape[-1], int(labels.max().item()) + 1 if labels.numel() else 0)
    # float64 sums: n² overflows nothing and loses nothing at any evaluation-set size
    actual = torch.bincount(labels, minlength=classes).double()
    predicted = torch.bincount(predictions, minlength=classes).double()
    correct = (predictions == labels).sum().double()
    total = float(labels.numel())
    covariance = correct * total - (predicted * actual).sum()
    spread = (total**2 - (predicted**2).sum()) * (total**2 - (actual**2).sum())
    return (covariance / spread.sqrt()).item() if spread > 0 else 0.0


def pearson_correlation(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Pearson's r between two vectors, computed in float64; 0.0 when either is constant (r is
    undefined there, and a model that predicts one value has learnt nothing to rank by).

    Example:
        >>> r = pearson_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 7.0]))
        >>> round(r, 6)
        0.993399
    """
    x = predictions.double().flatten() - predictions.double().mean()
    y = targets.double().flatten() - targets.double().mean()
    norms = x.norm() * y.norm()
    return (x @ y / norms).item() if norms > 0 else 0.0


def spearman_correlation(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks, ties given their average rank
    (as ``scipy.stats.spearmanr`` does). GLUE reports it with Pearson's r for STS-B.

    Example:
        >>> rho = spearman_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 7.0]))
        >>> round(rho, 6)  # the same order: a perfect rank correlation
        1.0
    """
    return pearson_correlation(_average_ranks(predictions), _average_ranks(targets))


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    ordered, order = torch.sort(values.flatten())
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    # a run of equal values at 1-based ranks first..last shares their mean, last - (count - 1) / 2
    last = counts.cumsum(0).double()
    shared = last - (counts.double() - 1) / 2
    ranks = torch.empty(values.numel(), dtype=torch.float64)
    ranks[order] = shared[group]
    return ranks


def regression_metrics(predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Pearson's and Spearman's correlation and the mean squared error of a one-output head's
    predictions ``[N]`` or ``[N, 1]`` against float targets ``[N]``."""
    if predictions.ndim == 2 and predictions.shape[-1] != 1:
        raise ValueError(
            f"regression needs one output per example, got logits of shape {tuple(predictions.shape)}: "
            "load the model with num_labels=1"
        )
    predictions = predictions.reshape(-1)
    return {
        "pearson": pearson_correlation(predictions, targets),
        "spearman": spearman_correlation(predictions, targets),
        "mse": torch.mean((predictions.double() - targets.double()) ** 2).item(),
    }


def default_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """For class ids ``[N]`` and logits ``[N, classes]``: accuracy, macro-F1 and the Matthews
    correlation. For float targets ``[N]`` (a regression task): :func:`regression_metrics`."""
    if labels.is_floating_point():
        return regression_metrics(logits, labels)
    return {
        "accuracy": accuracy(logits, labels),
        "macro_f1": macro_f1(logits, labels),
        "matthews_correlation": matthews_correlation(logits, labels),
    }
