"""Point-MAE masked-autoencoder pre-training, with the official pre-train checkpoint's names.

``PointMAEPretrainer().state_dict()`` wrapped as ``{"base_model": state_dict}`` is an official
Point-MAE pre-train file: ``MAE_encoder.*`` (no cls token), ``mask_token``,
``decoder_pos_embed.*``, ``MAE_decoder.blocks.{i}.*``, ``MAE_decoder.norm.*``,
``increase_dim.0.*``. :meth:`point_peft.models.PointMAE.from_pretrained` loads it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from peft_core import ConfigError
from point_peft.models.blocks import PositionalBlocks, drop_path_rates
from point_peft.models.chamfer import chamfer_l2
from point_peft.models.config import PointTransformerConfig
from point_peft.models.encoder import PointTransformerEncoder, positional_mlp, trunc_normal_


class PretrainOutput(NamedTuple):
    """Result of :meth:`PointMAEPretrainer.forward`."""

    loss: torch.Tensor  # scalar Chamfer-L2 between predicted and true masked patches
    predicted: torch.Tensor  # (batch, M, k, 3) reconstructed masked patches, relative to centres
    target: torch.Tensor  # (batch, M, k, 3) their true points, relative to centres
    mask: torch.Tensor  # (batch, G) bool, True for the M masked patches
    centers: torch.Tensor  # (batch, G, 3)


def random_patch_mask(
    batch: int,
    num_groups: int,
    num_masked: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(batch, num_groups) bool mask with exactly ``num_masked`` True per row, uniformly at random.

    Draws from ``generator`` (on its own device, then moved to ``device``) or, without one, from
    the global RNG of ``device``, so ``torch.manual_seed`` makes it reproducible.

    Example:
        >>> mask = random_patch_mask(3, 10, 6, generator=torch.Generator().manual_seed(0))
        >>> mask.sum(dim=1).tolist()
        [6, 6, 6]
    """
    if not 0 <= num_masked <= num_groups:
        raise ValueError(f"num_masked must be in [0, {num_groups}], got {num_masked}")
    noise_device = generator.device if generator is not None else device
    noise = torch.rand(batch, num_groups, generator=generator, device=noise_device)
    ranks = noise.argsort(dim=1).argsort(dim=1)  # a uniform random permutation per row
    return (ranks < num_masked).to(device if device is not None else noise.device)


class MaskedPatchDecoder(PositionalBlocks):
    """The MAE decoder: blocks with positions before each, LayerNorm, the last ``n`` tokens only.

    Parameter names read ``blocks.{i}.…`` and ``norm.…`` (``MAE_decoder.*`` in the pre-trainer).
    """

    def __init__(self, config: PointTransformerConfig) -> None:
        super().__init__(
            config.embed_dim,
            config.decoder_depth,
            config.decoder_num_heads,
            mlp_ratio=config.mlp_ratio,
            qkv_bias=config.qkv_bias,
            drop=config.drop_rate,
            attn_drop=config.attn_drop_rate,
            drop_path=drop_path_rates(config.drop_path_rate, config.decoder_depth),
            layer_norm_eps=config.layer_norm_eps,
        )
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Xavier-uniform Linear weights, zero biases, unit LayerNorms (the official decoder init)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, num_last: int) -> torch.Tensor:  # type: ignore[override]
        return self.norm(super().forward(x, pos)[:, -num_last:])


def masked_patch_count(config: PointTransformerConfig) -> int:
    """Patches masked per cloud, ``int(mask_ratio · num_groups)`` (the official rounding).

    Raises :class:`~peft_core.ConfigError` (a ``ValueError``) unless at least one patch is masked
    and one stays visible; :func:`point_peft.pretraining_recipe.pretrain` checks it up front.

    Example:
        >>> masked_patch_count(PointTransformerConfig.point_mae())  # int(0.6 · 64)
        38
    """
    num_masked = int(config.mask_ratio * config.num_groups)
    if not 0 < num_masked < config.num_groups:
        raise ConfigError(
            f"mask_ratio={config.mask_ratio} masks {num_masked} of num_groups="
            f"{config.num_groups} patches; pre-training needs at least one masked and one "
            "visible patch"
        )
    return num_masked


class PointMAEPretrainer(nn.Module):
    """Point-MAE pre-training: mask ``int(mask_ratio · G)`` patches, reconstruct their points.

    1. Group the cloud into G patches; the mini-PointNet embeds all of them (so its BatchNorm
       statistics cover every patch, as in the official code).
    2. The encoder (``MAE_encoder``, no cls token) runs on the visible tokens only, each with the
       positional embedding of its centre added before every block.
    3. The decoder sees [encoded visible tokens ; ``mask_token`` × M] with ``decoder_pos_embed`` of
       all centres, and keeps its last M outputs.
    4. ``increase_dim`` (Conv1d(C, 3k, 1)) turns each into k points relative to the patch centre;
       the loss is :func:`~point_peft.models.chamfer.chamfer_l2` over the B·M patches.

    The mask is drawn by :func:`random_patch_mask` from ``generator`` or, without one, the global
    RNG. Initialisation follows the official code: encoder trunc-normal (0.02), decoder blocks
    xavier-uniform, ``mask_token`` trunc-normal (0.02), ``decoder_pos_embed`` and ``increase_dim``
    PyTorch defaults.

    Example:
        >>> model = PointMAEPretrainer(PointTransformerConfig.small())
        >>> points = torch.rand(2, 256, 3, generator=torch.Generator().manual_seed(0))
        >>> out = model(points, generator=torch.Generator().manual_seed(0))
        >>> out.loss.dim(), tuple(out.predicted.shape), out.mask.sum(dim=1).tolist()
        (0, (2, 19, 16, 3), [19, 19])
        >>> sorted({name.split(".")[0] for name in model.state_dict()})
        ['MAE_decoder', 'MAE_encoder', 'decoder_pos_embed', 'increase_dim', 'mask_token']
    """

    def __init__(self, config: PointTransformerConfig | None = None) -> None:
        super().__init__()
        config = PointTransformerConfig.point_mae() if config is None else config
        self.config = config
        self.num_masked = masked_patch_count(config)
        dim = config.embed_dim
        self.MAE_encoder = PointTransformerEncoder(config, cls_token=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = positional_mlp(config.pos_hidden_dim, dim)
        self.MAE_decoder = MaskedPatchDecoder(config)
        self.increase_dim = nn.Sequential(nn.Conv1d(dim, 3 * config.group_size, 1))
        trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self, points: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> PretrainOutput:
        """Reconstruction loss of a batch of clouds ``points`` (batch, N, 3)."""
        encoder = self.MAE_encoder
        centers, neighborhoods, _ = encoder.group(points)
        batch, num_groups, group_size, _ = neighborhoods.shape
        mask = random_patch_mask(
            batch, num_groups, self.num_masked, generator=generator, device=points.device
        )
        visible = ~mask
        tokens = encoder.embed_patches(neighborhoods)
        dim = tokens.shape[-1]
        # Every row has the same number of visible patches, so boolean selection keeps a
        # rectangular (batch, V, ·) layout, in increasing patch order.
        visible_tokens = tokens[visible].reshape(batch, -1, dim)
        visible_centers = centers[visible].reshape(batch, -1, 3)
        masked_centers = centers[mask].reshape(batch, -1, 3)
        encoded = encoder.norm(encoder.blocks(visible_tokens, encoder.pos_embed(visible_centers)))

        num_masked = masked_centers.shape[1]
        decoder_input = torch.cat([encoded, self.mask_token.expand(batch, num_masked, -1)], 1)
        decoder_pos = self.decoder_pos_embed(torch.cat([visible_centers, masked_centers], 1))
        decoded = self.MAE_decoder(decoder_input, decoder_pos, num_masked)  # (B, M, C)
        predicted = self.increase_dim(decoded.transpose(1, 2)).transpose(1, 2)
        predicted = predicted.reshape(batch, num_masked, group_size, 3)
        target = neighborhoods[mask].reshape(batch, num_masked, group_size, 3)
        loss = chamfer_l2(predicted.reshape(-1, group_size, 3), target.reshape(-1, group_size, 3))
        return PretrainOutput(loss, predicted, target, mask, centers)

    def to_official_checkpoint(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{"base_model": state_dict}`` on CPU: what official Point-MAE pre-training saves.

        ``torch.save`` it to get a file that :meth:`PointMAE.from_pretrained` (and the official
        code) loads.
        """
        return {"base_model": {k: v.detach().cpu() for k, v in self.state_dict().items()}}
