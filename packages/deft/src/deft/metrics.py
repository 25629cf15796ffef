"""Exact-zero activation density of a model over evaluation batches (spec §3).

    density_l[b] = count_nonzero(A_l[b]) / (T·F)
    reported     = 100 · mean over layers l of (mean over samples b of density_l[b])

measured three ways side by side: ``reference`` (every position, padding included, as the reference
code), ``masked`` (real tokens only) and ``thresholded`` (real tokens, |a| ≤ τ counted as zero).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from deft._shapes import align_mask, as_batch_tokens_features
from deft.monitor import DensityMonitor
from deft.report import DensityReport, check_same_layers, threshold_variant

DEFAULT_THRESHOLDS = (1e-6, 1e-4, 1e-3)


def _per_token_counts(flags: torch.Tensor) -> torch.Tensor:
    """[B, T, F] booleans → [B, T] counts as CPU fp64 (exact; fp64 is missing on some devices)."""
    return flags.sum(dim=-1).cpu().double()


class _LayerTally:
    """Sums of per-sample densities (fractions) of one layer, over every batch seen."""

    def __init__(self, group: str, thresholds: Sequence[float]) -> None:
        self.group = group
        self.reference = self.reference_samples = 0.0
        self.masked = self.masked_samples = 0.0
        self.thresholded = dict.fromkeys(thresholds, 0.0)

    def add(self, activation: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Count one batch: ``activation`` [B, T, F], ``mask`` [B, T] aligned to it (or None)."""
        features = activation.shape[-1]
        nonzero = _per_token_counts(activation != 0)
        self.reference += float((nonzero.mean(dim=-1) / features).sum())
        self.reference_samples += activation.shape[0]
        weights = torch.ones_like(nonzero) if mask is None else mask.detach().cpu().double()
        tokens = weights.sum(dim=-1)
        real = tokens > 0  # a sample without real tokens has no masked density

        def masked_density(counts: torch.Tensor) -> float:
            per_sample = (counts * weights).sum(dim=-1)[real] / (tokens[real] * features)
            return float(per_sample.sum())

        self.masked += masked_density(nonzero)
        self.masked_samples += int(real.sum())
        for tau in self.thresholded:
            self.thresholded[tau] += masked_density(_per_token_counts(activation.abs() > tau))

    def percentages(self) -> dict[str, float]:
        def percent(total: float, count: float) -> float:
            return 100.0 * total / count if count else float("nan")

        result = {
            "reference": percent(self.reference, self.reference_samples),
            "masked": percent(self.masked, self.masked_samples),
        }
        for tau, total in self.thresholded.items():
            result[threshold_variant(tau)] = percent(total, self.masked_samples)
        return result


@torch.no_grad()
def measure_density(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    monitor: DensityMonitor | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    baseline: DensityReport | None = None,
) -> DensityReport:
    """Run ``model`` over ``batches`` in eval mode and report the density of every MLP activation.

    Args:
        model: the model to evaluate; its train/eval flags are restored afterwards.
        batches: dicts (called as ``model(**batch)``), tensors (``model(batch)``) or tuples
            (``model(*batch)``); tensors are moved to the model's device. ``attention_mask`` (and
            for encoder-decoder models ``decoder_attention_mask`` or ``labels`` with -100 on
            padding) select the real tokens of the masked and thresholded variants.
        monitor: an existing :class:`DensityMonitor` on ``model``; by default one is made with
            ``targets="auto"`` and removed at the end.
        thresholds: the τ of the thresholded variants.
        baseline: a report of the same layers (e.g. the plain PEFT model) to compare with;
            kept in ``report.baseline`` and shown by ``to_dict()`` and ``plot()``.

    Example:
        >>> from peft_core.testing import TinyClassifier
        >>> model = TinyClassifier(num_layers=2)
        >>> batches = [{"input_ids": torch.randint(0, 32, (4, 6))}]
        >>> report = measure_density(model, batches)
        >>> report.layers, report.dtype
        (['blocks.0.act', 'blocks.1.act'], 'float32')
    """
    if any(not isinstance(tau, (int, float)) or not tau >= 0 for tau in thresholds):
        raise ValueError(f"thresholds must be non-negative numbers, got {tuple(thresholds)}")
    device = next((p.device for p in model.parameters()), None)
    if device is not None and device.type == "meta":
        # a model built under init_empty_weights / torch.device("meta") has no values to count
        raise ValueError(
            "measure_density: the model's parameters are on the meta device (shapes without "
            "values); load its weights first, e.g. from_pretrained(...) or "
            "model.to_empty(device='cpu') followed by load_state_dict(...)"
        )
    own_monitor = monitor is None
    monitor = DensityMonitor(model) if monitor is None else monitor
    if baseline is not None:  # before the measurement, not when the report is exported
        try:
            check_same_layers(baseline.layers, monitor.layer_names)
        except ValueError:
            if own_monitor:
                monitor.remove()
            raise
    modes = {module: module.training for module in model.modules()}
    tallies: dict[str, _LayerTally] = {}
    dtypes: dict[str, None] = {}
    samples = 0
    try:
        model.eval()
        for batch in batches:
            batch = _to_device(batch, device)
            _call(model, batch)
            samples += _tally_batch(monitor, batch, tallies, dtypes, thresholds)
            monitor.clear()
    finally:
        for module, training in modes.items():
            module.training = training
        if own_monitor:
            monitor.remove()
    if not tallies:
        raise ValueError("measure_density got no batches (or the model computed no activation)")
    _warn_about_low_precision(dtypes)
    return _report(tallies, dtypes, samples, thresholds, baseline)


def _warn_about_low_precision(dtypes: Mapping[str, None]) -> None:
    """Exact zeros depend on the dtype: say so when the activations were not fp32 (spec §3)."""
    low = [dtype for dtype in dtypes if dtype not in ("float32", "float64")]
    if low:
        warnings.warn(
            f"measure_density: the MLP activations were computed in {', '.join(low)}; which outputs "
            "are exactly zero depends on the dtype (tanh-GELU reaches 0 below about -3.06 in "
            "bfloat16 but -5.16 in float32), so these densities do not compare with float32 "
            "ones (the paper's, and every recorded benchmark's); measure a float32 copy of the "
            "model for figures that do",
            stacklevel=4,  # past this helper, measure_density and torch.no_grad's wrapper
        )


def _tally_batch(
    monitor: DensityMonitor,
    batch: Any,
    tallies: dict[str, _LayerTally],
    dtypes: dict[str, None],
    thresholds: Sequence[float],
) -> int:
    activations = monitor.activations
    if not activations:
        raise RuntimeError(
            "the monitor captured no activation during the forward pass: was it built on this model?"
        )
    masks = monitor.masks_from_batch(batch)
    batch_size = _batch_size(batch)
    group_of = {target.name: target.group for target in monitor.targets}
    virtual_tokens = monitor.virtual_tokens
    for name, activation in activations.items():
        group = group_of[name.split("#")[0]]
        mask = masks.get(group)
        activation = as_batch_tokens_features(
            activation, name, mask.shape[0] if mask is not None else batch_size
        )
        if mask is not None:
            mask = align_mask(mask, activation, f"the {group} mask", name, virtual_tokens)
        tallies.setdefault(name, _LayerTally(group, thresholds)).add(activation, mask)
        dtypes[str(activation.dtype).removeprefix("torch.")] = None
    return batch_size or 0


def _report(
    tallies: dict[str, _LayerTally],
    dtypes: dict[str, None],
    samples: int,
    thresholds: Sequence[float],
    baseline: DensityReport | None,
) -> DensityReport:
    percentages = [tally.percentages() for tally in tallies.values()]
    return DensityReport(
        layers=list(tallies),
        groups=[tally.group for tally in tallies.values()],
        reference=[p["reference"] for p in percentages],
        masked=[p["masked"] for p in percentages],
        thresholded={
            float(tau): [p[threshold_variant(tau)] for p in percentages] for tau in thresholds
        },
        dtype=",".join(dtypes),
        num_samples=samples,
        baseline=baseline,
    )


def _call(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def _batch_size(batch: Any) -> int | None:
    """B of a batch: from its attention mask or input ids when it has them, else any tensor."""
    if isinstance(batch, Mapping):
        candidates = [batch.get("attention_mask"), batch.get("input_ids"), *batch.values()]
    elif isinstance(batch, (tuple, list)):
        candidates = list(batch)
    else:
        candidates = [batch]
    tensors = (c for c in candidates if isinstance(c, torch.Tensor) and c.ndim > 0)
    return next((t.shape[0] for t in tensors), None)


def _to_device(batch: Any, device: torch.device | None) -> Any:
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch
