"""Tiny backbones, clouds and Point-PEFT configs shared by the ``test_method_*`` files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from point_peft.method import MemoryBank, PointPeftConfig, build_memory_bank, get_point_peft_model
from point_peft.models import PointMAE, PointTransformerConfig


def tiny_backbone_config(**overrides) -> PointTransformerConfig:
    """3 blocks of width 24 on 16 patches of 8 points: forward passes take milliseconds."""
    values = {
        "embed_dim": 24,
        "depth": 3,
        "num_heads": 3,
        "num_groups": 16,
        "group_size": 8,
        "patch_hidden_dims": (8, 12),
        "pos_hidden_dim": 10,
        "head_hidden_dim": 16,
        "num_classes": 5,
    }
    return PointTransformerConfig(**{**values, **overrides})


def tiny_method_config(**overrides) -> PointPeftConfig:
    """Point-PEFT sized for :func:`tiny_backbone_config`: 2 prompted layers of 6 prompts (top-4)."""
    values = {
        "num_prompts": 6,
        "top_k": 4,
        "prompt_layers": 2,
        "cp_adapter_dim": 4,
        "ga_anchors": 8,
        "ga_neighbors": 4,
        "ga_heads": 2,
        "ga_head_dim": 3,
        "residual_adapter_dim": 4,
        "ffn_adapter_dim": 4,
        "query_num_groups": 8,
        "query_group_size": 8,
    }
    return PointPeftConfig(**{**values, **overrides})


def clouds(batch: int = 4, points: int = 96, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, points, 3, generator=generator) * 2 - 1


def randomize_batchnorms(model: torch.nn.Module, seed: int = 3) -> None:
    """Non-trivial running statistics, so that eval-mode BatchNorms are checked to be used."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(
                    torch.randn(module.num_features, generator=generator) * 0.1
                )
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def tiny_backbone(seed: int = 0, **overrides) -> PointMAE:
    torch.manual_seed(seed)
    backbone = PointMAE(tiny_backbone_config(**overrides))
    randomize_batchnorms(backbone, seed + 100)
    return backbone


def tiny_bank(backbone: PointMAE, config: PointPeftConfig, size: int = 12) -> MemoryBank:
    return build_memory_bank(
        backbone,
        [clouds(size, seed=50)],
        num_groups=config.query_num_groups,
        group_size=config.query_group_size,
        progress=False,
    )


def tiny_model(seed: int = 0, config: PointPeftConfig | None = None, **backbone_overrides):
    """A seeded backbone, its memory bank over 12 clouds, and the Point-PEFT model around it."""
    config = config if config is not None else tiny_method_config()
    backbone = tiny_backbone(seed, **backbone_overrides)
    bank = tiny_bank(backbone, config) if config.uses_memory_bank else None
    torch.manual_seed(seed + 1)
    return get_point_peft_model(backbone, config, memory_bank=bank)


def logits_after_fresh_process_load(
    folder: Path, points: torch.Tensor, scratch: Path, *, imports: str = "", checks: str = ""
) -> torch.Tensor:
    """``peft_core.load(tiny_backbone(4), folder)`` in a new Python process: its logits on
    ``points``. ``imports`` run before the load, ``checks`` (statements on ``model``) after it."""
    torch.save(points, scratch / "points.pt")
    script = "\n".join(
        [
            "import sys",
            "import torch",
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})",
            "torch.set_num_threads(1)",
            "import peft_core",
            textwrap.dedent(imports),
            "from method_helpers import tiny_backbone",
            f"model = peft_core.load(tiny_backbone(4), {str(folder)!r}).eval()",
            textwrap.dedent(checks),
            "with torch.no_grad():",
            f"    logits = model(torch.load({str(scratch / 'points.pt')!r})).logits",
            f"torch.save(logits, {str(scratch / 'logits.pt')!r})",
        ]
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    return torch.load(scratch / "logits.pt")
