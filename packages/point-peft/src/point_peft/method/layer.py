"""One Point-PEFT layer: a frozen backbone block with prompts, FFN adapter and GA-Adapter around it.

Order inside layer ``l`` (input ``x`` = [cls ; point tokens], positions already added)::

    prompted layers:  x = [cls ; P_l ; point tokens]          P_l from the point-prior prompt
    x = x + DropPath(Attn(LN1(x)))                            frozen
    h = DropPath(MLP(LN2(x)));  x = x + h + 0.7 · A_ffn(h)    frozen FFN, FFN adapter
    prompted layers:  keep the prompt outputs for the GA-Adapter, then drop them
    x = GA-Adapter(x) + residual adapter                      every layer
"""

from __future__ import annotations

import torch
from torch import nn

from point_peft.method.config import PointPeftConfig
from point_peft.method.ffn_adapter import FfnAdapter
from point_peft.method.geometry_adapter import GeometryAwareAdapter, Grouping, SharedGroupAttention
from point_peft.method.prompt import PointPriorPrompt


class PointPeftLayer(nn.Module):
    """The trainable modules of one layer, and the layer's forward around the frozen ``block``."""

    def __init__(self, dim: int, config: PointPeftConfig, *, prompted: bool) -> None:
        super().__init__()
        self.prompt = None
        if prompted:
            self.prompt = PointPriorPrompt(
                dim, config.num_prompts, config.cp_adapter_dim,
                dropout=config.prompt_dropout, adapter_dropout=config.adapter_dropout,
                adapter_init=config.adapter_init,
            )  # fmt: skip
        self.ffn_adapter = FfnAdapter(
            dim, config.ffn_adapter_dim, scale=config.ffn_adapter_scale,
            dropout=config.adapter_dropout, init=config.adapter_init,
        )  # fmt: skip
        self.geometry = GeometryAwareAdapter(
            dim, config.residual_adapter_dim, ga_scale=config.ga_scale,
            propagate_scale=config.propagate_scale, adapter_dropout=config.adapter_dropout,
            adapter_init=config.adapter_init,
        )  # fmt: skip

    @property
    def prompted(self) -> bool:
        return self.prompt is not None

    def forward(
        self,
        block: nn.Module,
        x: torch.Tensor,
        context: torch.Tensor | None,
        grouping: Grouping,
        shared: SharedGroupAttention,
    ) -> torch.Tensor:
        """``x`` (batch, 1 + G, dim) → (batch, 1 + G, dim); ``context`` (batch, P, dim) in
        prompted layers."""
        prompt_outputs = None
        if self.prompt is not None:
            if context is None:
                raise ValueError("a prompted layer needs the memory-bank context tokens")
            prompts = self.prompt(context)
            num_prompts = prompts.shape[1]
            x = torch.cat([x[:, :1], prompts, x[:, 1:]], dim=1)
            x = self.ffn_adapter.run_block(block, x)
            prompt_outputs = x[:, 1 : 1 + num_prompts]
            x = torch.cat([x[:, :1], x[:, 1 + num_prompts :]], dim=1)
        else:
            x = self.ffn_adapter.run_block(block, x)
        return self.geometry(x, prompt_outputs, grouping, shared, block.drop_path)
