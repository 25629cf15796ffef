"""Point-PEFT's configuration: the point-prior prompt, the geometry-aware adapter, the FFN adapter.

The defaults are the reference's ScanObjectNN setting (Point-MAE, 12 × 384, 128 patches):
10 prompts (the query, the aggregated memory and the top-8 memory entries) in layers 0–5, a GA-Adapter
with 64 anchors of 16 neighbours in every layer, 16-wide residual and FFN adapters.
"""

from __future__ import annotations

import dataclasses
import math

from peft_core import ConfigError, MethodConfig

ADAPTER_INITS = ("xavier", "normal", "zero_up")
# Buffers that are part of a trained Point-PEFT model besides its parameters. The BatchNorm
# statistics: the GA-Adapter's and the head's move in training, and so do the frozen patch
# encoder's unless ``freeze_batchnorm_stats``; saving all of them costs a few kilobytes.
SAVED_BUFFERS = (
    "memory_bank.features",
    "*.running_mean",
    "*.running_var",
    "*.num_batches_tracked",
)


@dataclasses.dataclass
class PointPeftConfig(MethodConfig):
    """How Point-PEFT adapts a frozen Point-MAE / Point-BERT classifier.

    Example:
        >>> config = PointPeftConfig()
        >>> config.num_prompts, config.top_k, config.prompt_layers, config.ga_anchors
        (10, 8, 6, 64)
        >>> PointPeftConfig.from_dict(config.to_dict()) == config
        True
        >>> PointPeftConfig(num_prompts=12)
        Traceback (most recent call last):
        ...
        peft_core.config.ConfigError: PointPeftConfig.num_prompts=12 must equal top_k + 2 = 10: the prompts of a layer are added to the context tokens [query ; aggregated memory ; top_k memory entries]
    """

    method = "point_peft"

    num_prompts: int = 10
    """Prompt tokens per prompted layer; must equal ``top_k + 2`` because each prompt is added to
    one context token (the query, the aggregated memory, then the ``top_k`` retrieved entries)."""
    prompt_layers: int = 6
    """The first ``prompt_layers`` blocks get prompts (0: no prompts, no memory bank needed)."""
    top_k: int = 8
    """Memory-bank entries retrieved per sample (the largest cosine similarities)."""
    cp_adapter_dim: int = 8
    """Bottleneck width of each prompted layer's context adapter (384 → 8 → 384)."""
    ga_anchors: int = 64
    """GA-Adapter anchors per cloud, chosen by farthest point sampling over the token centres (and,
    in prompted layers, the prompt coordinates)."""
    ga_neighbors: int = 16
    """Tokens per GA-Adapter group: each anchor's nearest centres (the anchor itself included)."""
    ga_heads: int = 6
    """Heads of the GA-Adapter's local attention."""
    ga_head_dim: int = 3
    """Width of each local-attention head: qkv projects 384 → 3 · heads · head_dim."""
    ga_scale: float = 0.3
    """Weight of the anchor's own token in its group feature: ``f = GELU(BN(max)) + ga_scale · x``."""
    propagate_scale: float = 0.3
    """Weight of the propagated group features: ``x_i += propagate_scale · Σ_j w_ij f_j``
    (0 switches the GA-Adapter's propagation off)."""
    residual_adapter_dim: int = 16
    """Bottleneck width of the residual adapter after the GA-Adapter (every layer)."""
    ffn_adapter_dim: int = 16
    """Bottleneck width of the adapter on the FFN branch (every layer)."""
    ffn_adapter_scale: float = 0.7
    """``x = x + h + ffn_adapter_scale · A(h)`` with ``h`` the frozen FFN branch's output."""
    adapter_dropout: float = 0.1
    """Dropout inside every bottleneck adapter (context, residual and FFN adapters)."""
    prompt_dropout: float = 0.1
    """Dropout on the learned prompt embeddings (per sample), before the context is added."""
    adapter_init: str = "xavier"
    """Initialisation of the bottleneck adapters: ``"xavier"`` (the reference: xavier-uniform
    weights, N(0, 1e-6²) biases), ``"normal"`` or ``"zero_up"`` (up projections start at zero),
    see :class:`peft_core.BottleneckAdapter`."""
    freeze_batchnorm_stats: bool = False
    """``True``: the frozen BatchNorms (the patch encoder's) stay in eval mode and keep their
    pre-trained statistics. ``False`` (the reference): in train mode they normalise with batch
    statistics and update their running statistics, as ``model.train()`` does by default."""
    learnable_prompt_coordinates: bool = True
    """Give every prompt token a learnable 3-D coordinate, so that prompted layers group over
    [prompt coordinates ; token centres] (the fix of the reference's misaligned indices).
    ``False``: prompt tokens take no part in the GA-Adapter."""
    query_num_groups: int = 64
    """Patches of the frozen encoder pass that computes the memory bank and the queries."""
    query_group_size: int = 32
    """Points per patch of that pass (the memory bank must have been built with the same grouping)."""
    cache_query_features: bool = False
    """In training, reuse each sample's query feature after its first computation, keyed by the
    ``sample_indices`` passed to the model (skips the second encoder forward; the query then comes
    from the first augmentation of the sample that was seen, not the current one)."""
    memory_bank_size: int | None = None
    """Entries of the memory bank. Filled in by :func:`get_point_peft_model` from the bank it is
    given, so that a saved config tells ``peft_core.load`` how large a bank to allocate."""

    @property
    def saved_buffers(self) -> tuple[str, ...]:
        """Buffers ``peft_core.save_trainable`` saves with the trained parameters."""
        return SAVED_BUFFERS

    @property
    def uses_memory_bank(self) -> bool:
        """Whether any layer has point-prior prompts (which need the memory bank and the query)."""
        return self.prompt_layers > 0

    def validate(self) -> None:
        for name in (
            "num_prompts",
            "top_k",
            "cp_adapter_dim",
            "ga_anchors",
            "ga_neighbors",
            "ga_heads",
            "ga_head_dim",
            "residual_adapter_dim",
            "ffn_adapter_dim",
            "query_num_groups",
            "query_group_size",
        ):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("prompt_layers", self.prompt_layers, minimum=0)
        if self.memory_bank_size is not None:
            _require_int("memory_bank_size", self.memory_bank_size, minimum=1)
        if self.num_prompts != self.top_k + 2:
            raise ConfigError(
                f"PointPeftConfig.num_prompts={self.num_prompts} must equal top_k + 2 = "
                f"{self.top_k + 2}: the prompts of a layer are added to the context tokens "
                "[query ; aggregated memory ; top_k memory entries]"
            )
        if self.memory_bank_size is not None and self.top_k > self.memory_bank_size:
            raise ConfigError(
                f"PointPeftConfig.top_k={self.top_k} exceeds memory_bank_size="
                f"{self.memory_bank_size}"
            )
        for name in ("ga_scale", "propagate_scale", "ffn_adapter_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"PointPeftConfig.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"PointPeftConfig.{name} must be finite, got {value!r}")
        for name in ("adapter_dropout", "prompt_dropout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value < 1.0
            ):
                raise ConfigError(f"PointPeftConfig.{name} must be in [0, 1), got {value!r}")
        if self.adapter_init not in ADAPTER_INITS:
            raise ConfigError(
                f"PointPeftConfig.adapter_init must be one of {ADAPTER_INITS}, "
                f"got {self.adapter_init!r}"
            )
        for name in (
            "freeze_batchnorm_stats",
            "learnable_prompt_coordinates",
            "cache_query_features",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"PointPeftConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"PointPeftConfig.{name} must be an integer >= {minimum}, got {value!r}")
