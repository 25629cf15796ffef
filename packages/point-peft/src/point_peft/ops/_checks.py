"""Argument checks shared by the point-cloud ops: each error names the argument at fault."""

from __future__ import annotations

import operator

import torch


def check_points(name: str, points: object) -> None:
    """Require a finite floating-point tensor of shape (batch, num_points, 3)."""
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(points).__name__}")
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape (batch, num_points, 3), got {tuple(points.shape)}"
        )
    if not points.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {points.dtype}")
    # NaN compares false with everything, so it would silently corrupt every argmax/topk downstream.
    # On a GPU this check costs one synchronisation per call. (Meta tensors carry no values.)
    if points.device.type != "meta" and not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} contains NaN or infinite coordinates")


def check_count(name: str, value: object, *, at_most: int | None = None, what: str = "") -> int:
    """Require an integer ``1 <= value <= at_most``; ``what`` says what ``at_most`` counts."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if count < 1:
        raise ValueError(f"{name} must be >= 1, got {count}")
    if at_most is not None and count > at_most:
        raise ValueError(f"{name}={count} exceeds the {at_most} {what or 'available'}")
    return count


def check_same_batch(
    first_name: str, first: torch.Tensor, second_name: str, second: torch.Tensor
) -> None:
    """Require two tensors on one device with the same batch size."""
    if first.device != second.device:
        raise ValueError(
            f"{first_name} is on {first.device} but {second_name} is on {second.device}"
        )
    if first.shape[0] != second.shape[0]:
        raise ValueError(
            f"{first_name} has batch size {first.shape[0]} but {second_name} has {second.shape[0]}"
        )


def working_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype to compute distances in: the promoted input dtype, but at least float32.

    Half-precision squared distances lose the ordering of nearby points (fp16 has 11 bits of
    mantissa) and several CPU kernels are slow or missing for them.
    """
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return torch.promote_types(dtype, torch.float32)
