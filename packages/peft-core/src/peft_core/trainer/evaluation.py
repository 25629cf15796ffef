"""Reading model outputs and the default classification metrics."""

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


def default_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro-F1 for classification logits ``[N, classes]`` and labels ``[N]``."""
    return {"accuracy": accuracy(logits, labels), "macro_f1": macro_f1(logits, labels)}
