"""timm Vision Transformers (pre-LN): x + drop_path(ls(Attn(LN(x)))) then the same around the MLP.

timm models have no Hugging Face config: the description reads the model itself (``embed_dim``, the
MLP's activation module). Only timm's plain ``Block`` is described; other block types (post-norm,
parallel, …) compute something else and are refused.
"""

from __future__ import annotations

import sys

from torch import nn

from meft.architectures._residual import attention_residual, ffn_residual
from meft.architectures.base import Architecture, register_architecture

# timm activation classes by lower-cased class name -> peft-core activation name.
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelutanh": "gelu_tanh",
    "quickgelu": "quick_gelu",
    "silu": "silu",
    "swish": "silu",
    "relu": "relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
}


def _vision_transformer_module():
    # A model can only be a timm ViT if timm is already imported: no import cost for other models.
    return sys.modules.get("timm.models.vision_transformer")


def is_timm_vit(model: nn.Module) -> bool:
    module = _vision_transformer_module()
    return module is not None and isinstance(model, module.VisionTransformer)


def check_blocks(model: nn.Module) -> None:
    block_class = _vision_transformer_module().Block
    for index, block in enumerate(model.blocks):
        if type(block).forward is not block_class.forward:
            raise ValueError(
                f"MEFT describes timm's pre-norm Block only; block {index} of {type(model).__name__} "
                f"is a {type(block).__name__}. Describe it with meft.register_architecture."
            )


def activation_name(model: nn.Module) -> str:
    activation = model.blocks[0].mlp.act
    name = type(activation).__name__.lower()
    if name == "gelu" and getattr(activation, "approximate", "none") == "tanh":  # nn.GELU("tanh")
        name = "gelutanh"
    if name not in _ACTIVATIONS:
        raise ValueError(
            f"MEFT does not know the adapter activation matching timm's {type(activation).__name__}; "
            "pass MeftConfig(adapter_activation=...)"
        )
    return _ACTIVATIONS[name]


def hidden_dropout(model: nn.Module) -> float:
    """timm's hidden dropout (``proj_drop_rate``): the one after each block's MLP output."""
    dropout = getattr(model.blocks[0].mlp, "drop2", None)
    return float(dropout.p) if isinstance(dropout, nn.Dropout) else 0.0


def attention_half(block, x, context, adapters):
    # Only what was given: timm's Attention takes attn_mask from 1.0.16 and is_causal later still,
    # and a plain ViT forward (no mask) must run on every timm 1.0.
    options = {}
    if context.get("attn_mask") is not None:
        options["attn_mask"] = context["attn_mask"]
    if context.get("is_causal"):
        options["is_causal"] = True

    def attend(hidden):
        return block.drop_path1(block.ls1(block.attn(hidden, **options)))

    return attention_residual(x, attend, block.norm1, adapters, pre_norm=True)


def ffn_half(block, x, context, adapters):
    def ffn(hidden):
        return block.drop_path2(block.ls2(block.mlp(hidden)))

    return ffn_residual(x, ffn, block.norm2, adapters, pre_norm=True)


TIMM_VIT = register_architecture(
    Architecture(
        name="timm-vit",
        matches=is_timm_vit,
        stacks=("blocks",),
        attention=attention_half,
        ffn=ffn_half,
        hidden_size=lambda model: model.embed_dim,
        activation=activation_name,
        dropout=hidden_dropout,
        head=("head",),
        check=check_blocks,
        layer_output_methods=("forward_intermediates",),
        checkpointing_methods=("forward_features", "forward_intermediates"),
    )
)
