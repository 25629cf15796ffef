"""The configuration shared by the Point-MAE / Point-BERT backbones, classifiers and pre-training.

One dataclass describes all of them, as the official YAML files do: the classifier reads the
encoder and head fields, :class:`~point_peft.models.PointMAEPretrainer` reads the encoder, masking
and decoder fields. It round-trips through JSON and rejects unknown keys (see
:class:`peft_core.MethodConfig`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from peft_core import ConfigError, MethodConfig
from point_peft.ops import START_RULES


@dataclasses.dataclass
class PointTransformerConfig(MethodConfig):
    """Sizes and rates of a Point-MAE / Point-BERT style point-cloud transformer.

    The defaults are the official Point-MAE classifier on ModelNet40 (64 patches of 32 points);
    :meth:`point_bert` gives the Point-BERT layout and :meth:`small` a model that pre-trains in
    minutes on two CPU cores.

    Example:
        >>> config = PointTransformerConfig.small(num_classes=10)
        >>> config.embed_dim, config.depth, config.num_groups, config.group_size
        (96, 4, 32, 16)
        >>> PointTransformerConfig.from_dict(config.to_dict()) == config
        True
    """

    embed_dim: int = 384
    """Width of the transformer tokens (official ``trans_dim``)."""
    depth: int = 12
    """Number of transformer blocks of the encoder."""
    num_heads: int = 6
    """Attention heads per encoder block; must divide ``embed_dim``."""
    mlp_ratio: float = 4.0
    """Hidden width of each block's MLP, as a multiple of ``embed_dim``."""
    qkv_bias: bool = False
    """Whether the attention's fused q/k/v projection has a bias (the official models have none)."""
    drop_rate: float = 0.0
    """Dropout after the attention projection and inside the MLP."""
    attn_drop_rate: float = 0.0
    """Dropout on the attention weights."""
    drop_path_rate: float = 0.1
    """Stochastic depth of the last block; block ``i`` uses ``linspace(0, rate, depth)[i]``."""
    layer_norm_eps: float = 1e-5
    """Epsilon of every LayerNorm (``nn.LayerNorm``'s default, as in the official code)."""
    num_groups: int = 64
    """Patches per cloud (``G``): centres chosen by farthest point sampling."""
    group_size: int = 32
    """Points per patch (``k``): each centre's nearest input points."""
    fps_start: str = "first"
    """Start rule of farthest point sampling, see :func:`point_peft.ops.farthest_point_sample`."""
    patch_hidden_dims: tuple[int, int] = (128, 256)
    """Widths ``(h1, h2)`` of the mini-PointNet: Conv 3→h1→h2, then Conv 2·h2→2·h2→out."""
    patch_dim: int | None = None
    """Output width of the mini-PointNet (official ``encoder_dims``). ``None``: it emits
    ``embed_dim`` tokens directly (Point-MAE). An integer: it emits ``patch_dim`` and a
    ``reduce_dim`` Linear(patch_dim, embed_dim) follows (Point-BERT: 256)."""
    pos_hidden_dim: int = 128
    """Hidden width of the positional MLP Linear(3, h) → GELU → Linear(h, embed_dim)."""
    num_classes: int = 40
    """Classes of the classification head."""
    head_hidden_dim: int = 256
    """Hidden width of the classification head."""
    head_dropout: float = 0.5
    """Dropout inside the classification head."""
    label_smoothing: float = 0.0
    """Label smoothing of the classifier's ``loss``: the true class gets ``1 - ε`` and every other
    class ``ε / (num_classes - 1)`` (Point-BERT's formula; Point-BERT fine-tunes with 0.2)."""
    mask_ratio: float = 0.6
    """Pre-training only: fraction of patches hidden from the encoder (``int(ratio · G)``)."""
    decoder_depth: int = 4
    """Pre-training only: blocks of the masked-patch decoder."""
    decoder_num_heads: int = 6
    """Pre-training only: attention heads per decoder block; must divide ``embed_dim``."""

    @classmethod
    def point_mae(cls, **overrides: Any) -> PointTransformerConfig:
        """The official Point-MAE classifier (12 × 384, 64 × 32 patches); ``overrides`` replace fields."""
        return cls(**overrides)

    @classmethod
    def point_bert(cls, **overrides: Any) -> PointTransformerConfig:
        """The official Point-BERT classifier: a 256-wide patch encoder, then ``reduce_dim``.

        Its head has no BatchNorm and it fine-tunes with label smoothing 0.2.
        """
        return cls(**{"patch_dim": 256, "label_smoothing": 0.2, **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> PointTransformerConfig:
        """A 4 × 96 model on 32 patches of 16 points: 0.72 M parameters with its 2-block decoder,
        0.50 M as a 40-class classifier.

        Measured on the (busy) 2-core development machine: one pre-training step (forward,
        backward, AdamW) on a batch of 32 clouds of 1024 points takes about 0.35 s with one
        intra-op thread, so a few thousand clouds make an epoch of about a minute.
        """
        values: dict[str, Any] = {
            "embed_dim": 96,
            "depth": 4,
            "num_heads": 4,
            "num_groups": 32,
            "group_size": 16,
            "patch_hidden_dims": (32, 64),
            "pos_hidden_dim": 64,
            "head_hidden_dim": 64,
            "decoder_depth": 2,
            "decoder_num_heads": 4,
        }
        return cls(**{**values, **overrides})

    @property
    def token_input_dim(self) -> int:
        """Width of the mini-PointNet's output: ``patch_dim`` or, when unset, ``embed_dim``."""
        return self.embed_dim if self.patch_dim is None else self.patch_dim

    def validate(self) -> None:
        for name in (
            "embed_dim",
            "depth",
            "num_heads",
            "num_groups",
            "group_size",
            "pos_hidden_dim",
            "num_classes",
            "head_hidden_dim",
            "decoder_depth",
            "decoder_num_heads",
        ):
            _require_positive_int(name, getattr(self, name))
        if self.patch_dim is not None:
            _require_positive_int("patch_dim", self.patch_dim)
        dims = self.patch_hidden_dims
        if not (isinstance(dims, (tuple, list)) and len(dims) == 2):
            raise ConfigError(f"patch_hidden_dims must be a pair (h1, h2), got {dims!r}")
        for dim in dims:
            _require_positive_int("patch_hidden_dims", dim)
        self.patch_hidden_dims = tuple(dims)
        for heads_name in ("num_heads", "decoder_num_heads"):
            heads = getattr(self, heads_name)
            if self.embed_dim % heads:
                raise ConfigError(
                    f"{heads_name}={heads} must divide embed_dim={self.embed_dim} "
                    "(every head gets embed_dim / num_heads channels)"
                )
        if not (isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0):
            raise ConfigError(f"mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate", "head_dropout"):
            _require_probability(name, getattr(self, name))
        _require_probability("label_smoothing", self.label_smoothing)
        if self.label_smoothing > 0 and self.num_classes < 2:
            raise ConfigError("label_smoothing > 0 needs num_classes >= 2")
        _require_probability("mask_ratio", self.mask_ratio)
        if not (isinstance(self.layer_norm_eps, (int, float)) and self.layer_norm_eps > 0):
            raise ConfigError(
                f"layer_norm_eps must be a positive number, got {self.layer_norm_eps!r}"
            )
        if self.fps_start not in START_RULES:
            raise ConfigError(f"fps_start must be one of {START_RULES}, got {self.fps_start!r}")

    def replace(self, **changes: Any) -> PointTransformerConfig:
        """A copy with ``changes`` applied (and validated); unknown names are an error."""
        unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(
                f"unknown PointTransformerConfig field(s): {', '.join(unknown)}; known: "
                + ", ".join(field.name for field in dataclasses.fields(self))
            )
        return dataclasses.replace(self, **changes)


def _require_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _require_probability(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not 0.0 <= value < 1.0
    ):
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
