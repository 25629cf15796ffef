"""Measuring the memory a training step needs for its activations."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


def _storage_key(tensor: torch.Tensor) -> int | None:
    """Identity of the storage behind ``tensor``, shared by all its views.

    Not the data pointer: meta tensors (measuring a model too big to allocate) have none, so every
    storage, parameters included, would look like one.
    """
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None  # sparse and nested tensors have no plain storage
    return storage._cdata  # the address of the storage object itself


def _storage_bytes(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().nbytes()


# Only the innermost saved_tensors_hooks see a saved tensor, so a measurement inside another
# records for every enclosing one too (per thread, as autograd's hook stack is).
_open_measurements = threading.local()


def _measurement_stack() -> list[tuple[set[int], dict[int, int]]]:
    if not hasattr(_open_measurements, "stack"):
        _open_measurements.stack = []
    return _open_measurements.stack


def _exempt_storages(modules: Iterable[nn.Module]) -> set[int]:
    keys = set()
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            key = _storage_key(tensor)
            if key is not None:
                keys.add(key)
    return keys


def measure_activation_memory(
    fn: Callable[[], Any], model: nn.Module | Iterable[nn.Module] | None = None
) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs.

    Every saved tensor is seen through ``torch.autograd.graph.saved_tensors_hooks``; each storage
    counts once (a tensor saved by two ops, or two views of one buffer, cost memory once), and
    storages that belong to parameters are never counted — they exist whether or not you train.
    Pass ``model`` (or several modules) to also exclude their buffers (position ids, BatchNorm
    statistics). Call ``backward`` *outside* ``fn`` so that the graph is still alive while counting.
    A measurement inside ``fn`` counts its tensors for this one too.

    The count is exact and deterministic, unlike allocator peaks, and works on CPU and on the meta
    device (a model too large to allocate). It is the memory
    that activation-saving techniques (checkpointing, reversible layers) reduce.

    Example:
        >>> layer = nn.Linear(4, 3)
        >>> x = torch.randn(2, 4)
        >>> step = lambda: torch.relu(layer(x)).sum()
        >>> measure_activation_memory(step, layer)  # x (2x4 floats) and relu's output (2x3)
        56
    """
    exempt = _exempt_storages([model] if isinstance(model, nn.Module) else (model or ()))
    seen: dict[int, int] = {}
    stack = _measurement_stack()
    # A storage freed while fn runs (saved by a graph fn then dropped) would let a new storage
    # take its address, and so its key, and go uncounted: hold each counted one until the end.
    counted: list[torch.UntypedStorage] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor
        if isinstance(tensor, nn.Parameter) or isinstance(base, nn.Parameter):
            return tensor
        key = _storage_key(tensor)
        if key is not None:
            for exempt_here, seen_here in stack:
                if key not in exempt_here and key not in seen_here:
                    seen_here[key] = _storage_bytes(tensor)
                    counted.append(tensor.untyped_storage())
        return tensor

    stack.append((exempt, seen))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            fn()
    finally:
        stack.pop()
    return sum(seen.values())


def cuda_peak_memory(fn: Callable[[], Any], device: torch.device | int | None = None) -> int | None:
    """Peak CUDA bytes allocated by ``fn()`` above what was allocated before it; ``None`` without CUDA."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
