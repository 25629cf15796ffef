"""Matched-density thresholding: the post-hoc baseline a DEFT model should be compared with (spec §6).

CATS and TEAL make activations sparse without training: every |a| ≤ τ is zeroed in the forward
pass, τ chosen on calibration data so that a target fraction of activations stays non-zero. A fair
DEFT comparison thresholds the plain PEFT model to the *same density* the DEFT model reaches and
compares task scores.

- :func:`calibrate_threshold` finds τ per layer (the default) or one global τ: the quantile of |a|
  over the real tokens of the calibration batches (attention mask; for encoder-decoder models the
  decoder's own mask) such that the fraction of |a| > τ equals ``target_density``. Per layer is
  the default because layers differ: one global τ leaves early layers almost dense and late ones
  almost empty (or the reverse), while a per-layer τ gives every layer the target density.
- :func:`apply_threshold` installs forward hooks that zero |a| ≤ τ; remove them with the returned
  handle or use it as a context manager. :func:`deft.sparse.sparsify` accepts the same τ mapping
  and skips the zeroed neurons.

Density is counted like the masked variant of :func:`deft.measure_density`, except that the
calibration pools all real tokens while the metric averages per sample: the two agree when every
sample has the same number of real tokens and differ slightly otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from deft._shapes import align_mask, as_batch_tokens_features
from deft.discovery import ActivationTarget, GatedMode, find_targets
from deft.metrics import _batch_size, _call, _to_device
from deft.monitor import DensityMonitor
from deft.sparse.kernels import per_layer_thresholds, threshold_activation

# |a| values kept per layer for the quantile; beyond this a uniform random sample is kept.
DEFAULT_MAX_VALUES = 2**22


class _Reservoir:
    """A uniform random sample (without replacement) of at most ``capacity`` values, exact below.

    Every value gets a random key; the ``capacity`` values with the smallest keys form a uniform
    sample of all values seen, whatever the order in which they arrive. Chunks are concatenated
    lazily (when twice the capacity is buffered, and at the end) so that many small batches do
    not copy the kept values over and over.
    """

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        self.capacity = capacity
        self.generator = generator
        self._chunks: list[torch.Tensor] = []
        self._keys: list[torch.Tensor] = []
        self._buffered = 0
        self.seen = 0

    def add(self, values: torch.Tensor) -> None:
        values = values.detach().float().cpu().flatten()
        self.seen += values.numel()
        self._buffered += values.numel()
        self._chunks.append(values)
        self._keys.append(torch.rand(values.numel(), generator=self.generator))
        if self._buffered > 2 * self.capacity:
            self._compact()

    def _compact(self) -> None:
        values, keys = torch.cat(self._chunks), torch.cat(self._keys)
        if values.numel() > self.capacity:
            kept = keys.topk(self.capacity, largest=False).indices
            values, keys = values[kept], keys[kept]
        self._chunks, self._keys, self._buffered = [values], [keys], values.numel()

    @property
    def values(self) -> torch.Tensor:
        self._compact()
        return self._chunks[0]

    @property
    def sampled(self) -> bool:
        return self.seen > self.capacity


def threshold_for_density(magnitudes: torch.Tensor, target_density: float) -> float:
    """The τ such that the fraction of ``magnitudes`` > τ is ``target_density`` (to one element).

    With n values, k = round(target · n) of them must lie strictly above τ: τ is the (k+1)-th
    largest value. Ties at τ make the fraction smaller; if the (k+1)-th largest is 0 the natural
    density is already below the target and τ = 0.

    Example:
        >>> round(threshold_for_density(torch.tensor([0.1, 0.5, 0.2, 0.9, 0.0]), 0.4), 6)
        0.2
    """
    if not 0.0 <= target_density <= 1.0:
        raise ValueError(f"target_density must be a fraction in [0, 1], got {target_density!r}")
    values = magnitudes.flatten()
    if values.numel() == 0:
        raise ValueError("no activation values to calibrate on (were all tokens masked out?)")
    keep = round(target_density * values.numel())
    if keep >= values.numel():
        return 0.0
    # kthvalue counts from the smallest: the (k+1)-th largest is the (n-k)-th smallest.
    return float(values.kthvalue(values.numel() - keep).values)


def _real_values(
    activation: torch.Tensor, mask: torch.Tensor | None, name: str, virtual_tokens: int = 0
) -> torch.Tensor:
    """|a| of the real tokens of a [B, T, F] activation, flattened."""
    magnitudes = activation.detach().abs()
    if mask is None:
        return magnitudes.flatten()
    mask = align_mask(mask, activation, "the attention mask", name, virtual_tokens)
    return magnitudes[mask.bool()].flatten()


def _collect(
    model: nn.Module,
    batches: Iterable[Any],
    monitor: DensityMonitor,
    capacity: int,
    generator: torch.Generator,
    only: str | None = None,
) -> dict[str, _Reservoir]:
    """|a| of the real tokens per layer (``only`` one layer), in the order the model computes them."""
    reservoirs: dict[str, _Reservoir] = {}
    group_of = {target.name: target.group for target in monitor.targets}
    virtual_tokens = monitor.virtual_tokens
    device = next((p.device for p in model.parameters()), None)
    for batch in batches:
        batch = _to_device(batch, device)
        _call(model, batch)
        masks = monitor.masks_from_batch(batch)
        for name, activation in monitor.activations.items():
            layer = name.split("#")[0]  # a module called twice (shared weights) pools its calls
            if only is not None and layer != only:
                continue
            mask = masks.get(group_of[layer])
            rows = mask.shape[0] if mask is not None else _batch_size(batch)
            activation = as_batch_tokens_features(activation, name, rows)
            reservoir = reservoirs.setdefault(layer, _Reservoir(capacity, generator))
            reservoir.add(_real_values(activation, mask, name, virtual_tokens))
        monitor.clear()
    return reservoirs


@torch.no_grad()
def calibrate_threshold(
    model: nn.Module,
    batches: Iterable[Any],
    target_density: float,
    *,
    per_layer: bool = True,
    sequential: bool = True,
    targets: str | Sequence[str] = "auto",
    gated: GatedMode = "gate",
    max_values_per_layer: int = DEFAULT_MAX_VALUES,
    seed: int = 0,
) -> dict[str, float]:
    """τ per MLP activation such that a fraction ``target_density`` of |a| is above it.

    Args:
        model: the model to calibrate (run in eval mode; its modes are restored afterwards).
        batches: as for :func:`deft.measure_density` (dicts, tensors or tuples); ``attention_mask``
            selects the real tokens. Iterated once per layer when ``sequential``.
        target_density: the fraction (0–1) of activations to keep non-zero, e.g. the masked
            density of the DEFT model divided by 100.
        per_layer: one τ per layer (default) or one τ shared by all layers, computed over the
            pooled values of all layers (the mapping then holds the same τ for every layer).
        sequential: calibrate layer l with the τ of the layers before it applied, so that every
            layer reaches the target density in the thresholded model (one pass over ``batches``
            per layer). ``False``: one pass over the dense model, as CATS and TEAL do; thresholding
            early layers then shifts the inputs of later ones, which land near, not at, the target.
            A shared τ (``per_layer=False``) always uses one pass.
        targets, gated: which activations, as for :class:`deft.DensityMonitor`.
        max_values_per_layer: at most this many |a| values are kept per layer (fp32 on CPU); above
            it a uniform random sample (seeded by ``seed``) estimates the quantile.

    Returns:
        layer name → τ, the mapping :func:`apply_threshold` and :func:`deft.sparse.sparsify` take.

    Example:
        >>> from peft_core.testing import TinyClassifier
        >>> from deft import measure_density
        >>> model = TinyClassifier(num_layers=2)
        >>> batches = [{"input_ids": torch.arange(24).view(4, 6)}]  # distinct tokens: no ties
        >>> taus = calibrate_threshold(model, batches, target_density=0.25)
        >>> sorted(taus)
        ['blocks.0.act', 'blocks.1.act']
        >>> with apply_threshold(model, taus):
        ...     report = measure_density(model, batches)
        >>> [round(d, 1) for d in report.masked]
        [25.0, 25.0]
    """
    if isinstance(target_density, bool) or not 0.0 <= target_density <= 1.0:
        raise ValueError(
            f"target_density must be a fraction in [0, 1] (not a percentage), got {target_density!r}"
        )
    if max_values_per_layer < 1:
        raise ValueError(f"max_values_per_layer must be >= 1, got {max_values_per_layer}")
    generator = torch.Generator().manual_seed(seed)
    sequential = sequential and per_layer
    batches = list(batches) if sequential else batches
    monitor = DensityMonitor(model, targets, gated=gated)
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        reservoirs = _collect(model, batches, monitor, max_values_per_layer, generator)
        if not reservoirs:
            raise ValueError(
                "calibrate_threshold got no batches (or the model computed no activation)"
            )
        if not per_layer:
            return dict.fromkeys(
                reservoirs, _pooled_threshold(list(reservoirs.values()), target_density)
            )
        taus: dict[str, float] = {}
        for name, reservoir in reservoirs.items():  # in the order the model computes them
            if sequential and taus:
                earlier = [target for target in monitor.targets if target.name in taus]
                with _install(earlier, taus):
                    reservoir = _collect(
                        model, batches, monitor, max_values_per_layer, generator, only=name
                    )[name]
            taus[name] = threshold_for_density(reservoir.values, target_density)
        return taus
    finally:
        for module, training in modes.items():
            module.training = training
        monitor.remove()


def _pooled_threshold(reservoirs: list[_Reservoir], target_density: float) -> float:
    """One τ over all layers' values; a sampled layer's values count for the values they stand for."""
    if not any(reservoir.sampled for reservoir in reservoirs):
        return threshold_for_density(torch.cat([r.values for r in reservoirs]), target_density)
    values = torch.cat([r.values for r in reservoirs])
    weights = torch.cat(
        [torch.full_like(r.values, r.seen / r.values.numel()) for r in reservoirs]
    ).double()
    order = values.argsort(descending=True)
    above = weights[order].cumsum(0)  # weight of the values at or above each sorted position
    # τ is the first value whose inclusion would exceed the target weight, as in the unweighted case
    first_over = int(torch.searchsorted(above, target_density * float(weights.sum()), right=True))
    return float(values[order[first_over]]) if first_over < values.numel() else 0.0


class ThresholdHandle:
    """The hooks installed by :func:`apply_threshold`; ``remove()`` them, or use ``with``."""

    def __init__(self, handles: list[Any], thresholds: dict[str, float]) -> None:
        self._handles = handles
        self.thresholds = thresholds

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> ThresholdHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self._handles else "removed"
        return f"ThresholdHandle({len(self.thresholds)} layers, {state})"


def apply_threshold(
    model: nn.Module,
    taus: float | Mapping[str, float],
    *,
    targets: str | Sequence[str] = "auto",
    gated: GatedMode = "gate",
) -> ThresholdHandle:
    """Zero every MLP activation with |a| ≤ τ in ``model``'s forward passes until removed.

    The hooks run before any hook registered earlier on the same modules, so a
    :class:`deft.DensityMonitor` (and :func:`deft.measure_density`) sees the thresholded tensor.
    Gradients flow through the kept entries (the zeroed ones get none), as in CATS.

    Args:
        model: any model :func:`deft.find_targets` understands.
        taus: one τ for every layer, or layer name → τ (from :func:`calibrate_threshold`).
        targets, gated: which activations, as for :class:`deft.DensityMonitor`.

    Example:
        >>> mlp = nn.Sequential()
        >>> mlp.fc1, mlp.act, mlp.fc2 = nn.Identity(), nn.Identity(), nn.Identity()
        >>> with apply_threshold(nn.ModuleDict({"block": mlp}), 0.5):
        ...     print(mlp(torch.tensor([0.2, -0.7, 0.5, 1.0])))
        tensor([ 0.0000, -0.7000,  0.0000,  1.0000])
        >>> mlp(torch.tensor([0.2, -0.7]))  # removed
        tensor([ 0.2000, -0.7000])
    """
    found = find_targets(model, targets, gated=gated)
    return _install(found, per_layer_thresholds([t.name for t in found], taus, "taus"))


def _install(found: list[ActivationTarget], thresholds: dict[str, float]) -> ThresholdHandle:
    handles = []
    for target in found:
        tau = thresholds[target.name]
        if target.capture == "output":
            hook = _output_hook(tau, target.name)
            handles.append(target.module.register_forward_hook(hook, prepend=True))
        else:
            hook = _input_hook(tau, target.name)
            handles.append(target.module.register_forward_pre_hook(hook, prepend=True))
    return ThresholdHandle(handles, {target.name: thresholds[target.name] for target in found})


def _checked(tensor: Any, name: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"apply_threshold: {name} produced {type(tensor).__name__}, not a tensor")
    return tensor


def _output_hook(tau: float, name: str):
    def hook(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
        return threshold_activation(_checked(output, name), tau)

    return hook


def _input_hook(tau: float, name: str):
    def hook(module: nn.Module, args: tuple) -> tuple:
        if not args:
            raise TypeError(f"apply_threshold: {name} was called without a positional input")
        return (threshold_activation(_checked(args[0], name), tau), *args[1:])

    return hook
