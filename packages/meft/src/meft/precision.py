"""How far reconstruction rounding is predicted to grow, and the warning at conversion.

Each reversible layer's inverse divides by λ and β, so the rounding of the streams (or of 16-bit
layers recomputed on a reconstructed input) grows ~1/(λβ) per layer on the way down, over the whole
stack or up to the next saved input (``MeftConfig.save_inputs_every``). The prediction is a rule of
thumb; ``check_reconstruction=True`` measures the real error.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from meft.config import MeftConfig

# Rounding of the stream dtype, and the relative error past which reconstruction is useless.
_EPSILON = {
    "float32": 6e-8, "float64": 1.1e-16, torch.float16: 4.9e-4, torch.bfloat16: 3.9e-3,
}  # fmt: skip
_UNSTABLE = 1e-2
# What a suggested save_inputs_every aims at, far under the warning's level: a real model's
# bottom layers can amplify more than 1/(λβ) per layer. On the real 30-layer SmolLM2 with float64
# streams, the suggestion this gives (every 10th layer) leaves MEFT1/MEFT2 gradients within 1e-3.
_SAFE = 1e-6


def warn_if_reconstruction_is_unstable(
    config: MeftConfig, num_reversible: int, name: str, layer_dtype: torch.dtype | None = None
) -> None:
    """Each inverse divides by λ and β: rounding grows ~1/(λβ) per layer down the stack.

    With 16-bit layers and float32 streams the rounding that grows is the layers': an input
    reconstructed a float32 rounding off can round to a neighbouring 16-bit value when F or G is
    recomputed, so its output moves by a 16-bit rounding (measured on a 2-layer bf16 BERT: MEFT3's
    bottom input 122% off, 2.8e-4 with float32 layers). Float64 streams reconstruct closely enough
    that the recompute rounds as the forward did.
    """
    x1_factor, x2_factor = config.factors
    growth = 1 / (x1_factor * x2_factor)
    every = config.save_inputs_every
    predicted, rounding = _predicted_error(
        config.stream_dtype, layer_dtype, growth, _compounding(num_reversible, every)
    )
    if predicted <= _UNSTABLE:
        return
    remedies = []
    if config.stream_dtype == "float32":
        wide, _ = _predicted_error(
            "float64", layer_dtype, growth, _compounding(num_reversible, every)
        )
        wide_every = (
            None
            if wide <= _UNSTABLE
            else _safe_save_inputs_every("float64", layer_dtype, growth, num_reversible)
        )
        remedies.append(
            "stream_dtype='float64'"
            + (f" with {_saving(wide_every, num_reversible)}" if wide_every else "")
        )
    safe = _safe_save_inputs_every(config.stream_dtype, layer_dtype, growth, num_reversible)
    if safe is not None:
        streams = " with float32 streams" if config.stream_dtype == "float32" else ""
        remedies.append(f"{_saving(safe, num_reversible)}{streams}")
    remedies += ["fewer num_reversible_layers", "check_reconstruction=True to measure"]
    saved = f" (saving those of every {_ordinal(every)} layer)" if every is not None else ""
    warnings.warn(
        f"MEFT ({config.variant}, λ={x1_factor}, β={x2_factor}): reconstructing the inputs of "
        f"{num_reversible} reversible layers of {name}{saved} amplifies {rounding} by "
        f"~{growth:.0f}x per layer (predicted relative error ~{predicted:.0e} at the worst "
        f"layer). Use {', '.join(remedies[:-1])}, or {remedies[-1]}.",
        stacklevel=3,
    )


def _saving(every: int, num_reversible: int) -> str:
    return (
        f"save_inputs_every={every} (keeps the inputs of {-(-num_reversible // every)} layers; "
        "below 1e-6 if each layer amplifies by 1/(λβ) only, which real bottom layers can exceed: "
        "measure it)"
    )


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _compounding(num_reversible: int, every: int | None) -> int:
    """Inversions the worst-reconstructed input goes through: the whole stack, or up to the next
    saved input (layers 0, k, 2k, … are saved, so at most k − 1, and layer 0 never)."""
    if every is None:
        return num_reversible
    return max(0, min(num_reversible - 1, every - 1))


def _predicted_error(
    stream_dtype: str, layer_dtype: torch.dtype | None, growth: float, inversions: int
) -> tuple[float, str]:
    """Predicted relative error after ``inversions`` inverses, and the rounding that grows."""
    predicted = _EPSILON[stream_dtype] * growth**inversions if inversions else 0.0
    rounding = f"{stream_dtype} rounding"
    if layer_dtype in _EPSILON and stream_dtype == "float32" and inversions > 0:
        predicted = max(predicted, _EPSILON[layer_dtype] * growth ** (inversions - 1))
        rounding = f"the {str(layer_dtype).removeprefix('torch.')} layers' rounding"
    return predicted, rounding


def _safe_save_inputs_every(
    stream_dtype: str, layer_dtype: torch.dtype | None, growth: float, num_reversible: int
) -> int | None:
    """The largest ``save_inputs_every`` whose predicted error stays below ``_SAFE`` (None where
    only saving every input would, which is no longer MEFT's memory saving)."""
    for every in range(num_reversible, 1, -1):
        predicted, _ = _predicted_error(stream_dtype, layer_dtype, growth, every - 1)
        if predicted <= _SAFE:
            return every
    return None


def lowest_precision(layers: list[nn.Module]) -> torch.dtype | None:
    """The narrowest floating dtype among the layers' parameters (None without any)."""
    dtypes = {p.dtype for layer in layers for p in layer.parameters() if p.is_floating_point()}
    return min(dtypes, key=lambda dtype: torch.finfo(dtype).bits, default=None)
