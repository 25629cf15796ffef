"""A fingerprint of the frozen weights, so that a resume onto another base model is refused.

A checkpoint holds only the trained tensors; the frozen ones come from whatever model the resumed
process builds. Built from other pretrained weights (a re-downloaded revision, another file under
the same path) or from an unseeded random init, the run would go on silently as a mix of two
models. Each checkpoint therefore records, per frozen parameter, its shape, dtype, sum and L2
norm, accumulated in float64 on the tensor's own device: one read of each weight, no copy, a
fraction of a second even for a large model. Sums of equal tensors agree across devices to far
better than the tolerance below; weights from another checkpoint or seed miss it by orders of
magnitude.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peft_core.serialization import trainable_state_dict

FROZEN_WEIGHTS_FILE = "frozen_weights.json"
# Relative to the largest value the statistic could take for the tensor's norm (|sum| <= norm *
# sqrt(numel)). Float64 summation of float32 weights in any order errs by about log2(numel) *
# 1e-16 of that; one weight in a million changed by a thousandth of the largest still shows.
_TOLERANCE = 1e-9


def fingerprint(model: nn.Module, saved_parameters: tuple[str, ...] = ()) -> dict[str, list]:
    """``{name: [dtype, shape, sum, norm]}`` for every frozen parameter that a checkpoint does
    not hold (those matching ``saved_parameters`` are restored from it, not rebuilt)."""
    saved = trainable_state_dict(model, include_parameters=saved_parameters)
    found: dict[str, list] = {}
    for name, parameter in model.named_parameters():
        if name in saved or parameter.requires_grad or parameter.is_meta:
            continue
        found[name] = [str(parameter.dtype), list(parameter.shape), *_statistics(parameter)]
    return found


@torch.no_grad()
def _statistics(tensor: torch.Tensor) -> tuple[float, float]:
    values = tensor.detach()
    if values.is_complex():
        values = torch.view_as_real(values)
    elif not values.is_floating_point():
        values = values.to(torch.float64)  # packed integer weights (4-bit, 8-bit quantisation)
    total = torch.sum(values, dtype=torch.float64)
    norm = torch.linalg.vector_norm(values, dtype=torch.float64)
    return float(total), float(norm)


def write_fingerprint(directory: Path, found: dict[str, list]) -> None:
    (directory / FROZEN_WEIGHTS_FILE).write_text(json.dumps(found) + "\n", encoding="utf-8")


def fingerprint_differences(checkpoint: Path, current: dict[str, list]) -> list[str]:
    """What differs between the frozen weights recorded in ``checkpoint`` and ``current``, as
    ``"frozen_weights: ..."`` lines (none for a checkpoint from before they were recorded)."""
    recorded_file = checkpoint / FROZEN_WEIGHTS_FILE
    if not recorded_file.is_file():
        return []
    recorded = json.loads(recorded_file.read_text(encoding="utf-8"))
    changes = []
    missing = [name for name in recorded if name not in current]
    added = [name for name in current if name not in recorded]
    if missing:
        changes.append(f"frozen_weights: this model lacks {_some(missing)}")
    if added:
        changes.append(f"frozen_weights: this model adds {_some(added)}")
    kind = [
        name for name in recorded if name in current and recorded[name][:2] != current[name][:2]
    ]
    if kind:
        first = kind[0]
        changes.append(
            f"frozen_weights: {_count(kind, recorded)} differ in dtype or shape ({first}: "
            f"checkpoint {_layout(recorded[first])}, this run {_layout(current[first])})"
        )
    values = [
        name
        for name in recorded
        if name in current and name not in kind and not _close(recorded[name], current[name])
    ]
    if values:
        changes.append(
            f"frozen_weights: {_count(values, recorded)} hold other values "
            f"({_some(values)}); the model is not built from the same weights"
        )
    return changes


def _close(saved: list[Any], current: list[Any]) -> bool:
    (_, shape, saved_sum, saved_norm), (_, _, current_sum, current_norm) = saved, current
    scale = max(abs(saved_norm), abs(current_norm))
    largest_sum = scale * math.sqrt(max(1, math.prod(shape)))
    return (
        abs(saved_norm - current_norm) <= _TOLERANCE * scale + 1e-30
        and abs(saved_sum - current_sum) <= _TOLERANCE * largest_sum + 1e-30
    )


def _layout(entry: list[Any]) -> str:
    return f"{entry[0]} {tuple(entry[1])}"


def _count(names: list[str], recorded: dict[str, list]) -> str:
    return f"{len(names)} of {len(recorded)} frozen tensors"


def _some(names: list[str], shown: int = 3) -> str:
    listed = ", ".join(names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")
