"""The point-cloud token encoder of Point-MAE / Point-BERT: patches → tokens → transformer."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from point_peft.models.blocks import PositionalBlocks, drop_path_rates
from point_peft.models.config import PointTransformerConfig
from point_peft.models.patch_encoder import PatchEncoder
from point_peft.ops import Groups, group


class PatchTokens(NamedTuple):
    """Result of :meth:`PointTransformerEncoder.embed`: one token per patch, before any block."""

    tokens: torch.Tensor  # (batch, G, embed_dim) mini-PointNet output (after reduce_dim, if any)
    pos: torch.Tensor  # (batch, G, embed_dim) positional embedding of each patch centre
    centers: torch.Tensor  # (batch, G, 3)
    neighborhoods: torch.Tensor  # (batch, G, k, 3), relative to their centre


def positional_mlp(hidden_dim: int, embed_dim: int) -> nn.Sequential:
    """Linear(3, hidden) → GELU → Linear(hidden, embed_dim): keys ``0.*`` and ``2.*`` as official."""
    return nn.Sequential(nn.Linear(3, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, embed_dim))


@torch.no_grad()
def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """timm's ``trunc_normal_(tensor, std)`` as the official code calls it: bounds at ±2, absolute.

    At std 0.02 those bounds sit 100 standard deviations out, and ``normal_`` cannot go there: it
    turns finite-precision uniforms into Gaussians, which caps its draws near 9σ. The truncated and
    the plain normal are then the same distribution. Drawing with ``normal_`` alone skips the
    rejection pass of recent ``nn.init.trunc_normal_`` (which draws the same values) and gives the
    same values on older torch too, whose ``trunc_normal_`` used the inverse CDF instead: seeded
    models are identical across the supported torch versions.
    """
    if tensor.is_meta:  # no values to draw (and meta normal_ would import torch._refs: seconds)
        return tensor
    if std > 0.2:  # bounds within 10σ: they could act, so truncate for real
        return nn.init.trunc_normal_(tensor, std=std)
    return tensor.normal_(0.0, std)


def init_point_transformer_weights(module: nn.Module) -> None:
    """The official initialisation, for ``module.apply``: Linear and Conv1d weights trunc-normal
    (std 0.02) with zero biases; LayerNorm weight 1, bias 0. BatchNorms keep PyTorch's defaults."""
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class PointTransformerEncoder(nn.Module):
    """Group → mini-PointNet tokens → [cls ;] tokens → blocks with positions before each → LayerNorm.

    Module names are those of the official checkpoints: ``encoder`` (the mini-PointNet),
    ``reduce_dim`` (Point-BERT only, when ``config.patch_dim`` is set), ``pos_embed``,
    ``blocks.blocks.{i}``, ``norm``, and, with ``cls_token=True``, the parameters ``cls_token`` and
    ``cls_pos`` (1 × 1 × embed_dim, trunc-normal 0.02). Point-MAE's pre-training encoder
    (``MAE_encoder``) has no cls token; the classifiers have one.

    Subclasses and adapters can run the pieces themselves: :meth:`group`, :meth:`embed`,
    :meth:`prepend_cls`, then ``self.blocks.blocks`` one by one (``x = block(x + pos)``), then
    ``self.norm``.

    Example:
        >>> config = PointTransformerConfig.small()
        >>> encoder = PointTransformerEncoder(config).eval()
        >>> points = torch.rand(2, 256, 3, generator=torch.Generator().manual_seed(0))
        >>> encoder.forward_tokens(points).shape  # cls token + 32 patch tokens
        torch.Size([2, 33, 96])
        >>> encoder.forward_features(points).shape  # [cls ; max over patch tokens]
        torch.Size([2, 192])
    """

    def __init__(self, config: PointTransformerConfig, *, cls_token: bool = True) -> None:
        super().__init__()
        if not isinstance(config, PointTransformerConfig):
            raise TypeError(f"config must be a PointTransformerConfig, got {type(config).__name__}")
        self.config = config
        dim = config.embed_dim
        self.encoder = PatchEncoder(config.token_input_dim, config.patch_hidden_dims)
        self.reduce_dim = None if config.patch_dim is None else nn.Linear(config.patch_dim, dim)
        if cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        else:
            self.register_parameter("cls_token", None)
            self.register_parameter("cls_pos", None)
        self.pos_embed = positional_mlp(config.pos_hidden_dim, dim)
        self.blocks = PositionalBlocks(
            dim,
            config.depth,
            config.num_heads,
            mlp_ratio=config.mlp_ratio,
            qkv_bias=config.qkv_bias,
            drop=config.drop_rate,
            attn_drop=config.attn_drop_rate,
            drop_path=drop_path_rates(config.drop_path_rate, config.depth),
            layer_norm_eps=config.layer_norm_eps,
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-initialise the encoder as the official code does when it trains from scratch."""
        for module in (self.encoder, self.reduce_dim, self.pos_embed, self.blocks, self.norm):
            if module is not None:
                module.apply(init_point_transformer_weights)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
            trunc_normal_(self.cls_pos, std=0.02)

    @property
    def has_cls_token(self) -> bool:
        return self.cls_token is not None

    def group(self, points: torch.Tensor) -> Groups:
        """FPS centres and kNN patches of ``points`` (batch, N, 3) with the config's G, k and start rule."""
        config = self.config
        return group(points, config.num_groups, config.group_size, start=config.fps_start)

    def embed_patches(self, neighborhoods: torch.Tensor) -> torch.Tensor:
        """Mini-PointNet (and ``reduce_dim``): (batch, G, k, 3) → (batch, G, embed_dim)."""
        tokens = self.encoder(neighborhoods)
        return tokens if self.reduce_dim is None else self.reduce_dim(tokens)

    def embed(self, points: torch.Tensor) -> PatchTokens:
        """Group ``points`` (batch, N, 3) and embed every patch and its centre."""
        self._check_points_dtype(points)
        centers, neighborhoods, _ = self.group(points)
        tokens = self.embed_patches(neighborhoods)
        return PatchTokens(tokens, self.pos_embed(centers), centers, neighborhoods)

    def _check_points_dtype(self, points: torch.Tensor) -> None:
        # Otherwise the first convolution fails with "Input type (double) and bias type (float)".
        weight = next(self.encoder.parameters())
        if (
            isinstance(points, torch.Tensor)
            and points.is_floating_point()
            and points.dtype != weight.dtype
            and not _autocast_enabled(points.device.type)
        ):
            raise TypeError(
                f"points are {str(points.dtype).removeprefix('torch.')} but the model's weights are "
                f"{str(weight.dtype).removeprefix('torch.')}: convert the points "
                f"(points.to({weight.dtype}); numpy's loadtxt gives float64) or the model"
            )

    def prepend_cls(
        self, tokens: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Put the cls token (and its position ``cls_pos``) in front of ``tokens`` and ``pos``."""
        if self.cls_token is None:
            raise RuntimeError(f"this {type(self).__name__} was built with cls_token=False")
        batch = tokens.shape[0]
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        pos = torch.cat([self.cls_pos.expand(batch, -1, -1), pos], dim=1)
        return tokens, pos

    def forward_tokens(self, points: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm tokens (batch, [1 +] G, embed_dim); the cls token first when there is one."""
        tokens, pos, _, _ = self.embed(points)
        if self.cls_token is not None:
            tokens, pos = self.prepend_cls(tokens, pos)
        return self.norm(self.blocks(tokens, pos))

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """The classification feature (batch, 2·embed_dim): [cls token ; max over patch tokens]."""
        if self.cls_token is None:
            raise RuntimeError(
                "forward_features needs the cls token; this encoder was built with cls_token=False"
            )
        return pool_cls_and_max(self.forward_tokens(points))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(points)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch before 2.4 asks per device kind
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def pool_cls_and_max(tokens: torch.Tensor) -> torch.Tensor:
    """(batch, 1 + G, C) normalised tokens → (batch, 2C): the cls token, then the max over the rest."""
    return torch.cat([tokens[:, 0], tokens[:, 1:].amax(dim=1)], dim=-1)
