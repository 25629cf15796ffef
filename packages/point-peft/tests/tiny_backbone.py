"""A tiny architecture and pre-training recipe that stand in for the default backbone's, which
take minutes to pre-train (shared with the cross-package demo test)."""

from __future__ import annotations

from point_peft.models import PointTransformerConfig
from point_peft.pretraining_recipe import PretrainingRecipe

TINY_CONFIG = PointTransformerConfig.small(
    embed_dim=32, depth=1, num_heads=2, num_groups=8, group_size=8, decoder_depth=1,
    decoder_num_heads=2, patch_hidden_dims=(8, 16), pos_hidden_dim=16,
)  # fmt: skip
TINY_RECIPE = PretrainingRecipe(
    data=("procedural-clean",), num_points=64, procedural_samples_per_class=1, max_steps=2,
    batch_size=5, eval_samples_per_class=0,
)  # fmt: skip


def use_tiny_default_backbone(monkeypatch) -> None:
    """Make ``point_peft.pretrained`` build (and cache) the tiny backbone as the default one."""
    from point_peft import pretrained

    monkeypatch.setattr(pretrained, "default_backbone_config", lambda: TINY_CONFIG)
    monkeypatch.setattr(pretrained, "default_backbone_recipe", lambda: TINY_RECIPE)
