"""Hugging Face ViT (pre-LN encoder): x + Attn(LN(x)) then a + MLP(LN(a)), each branch with dropout."""

from __future__ import annotations

from meft.architectures._residual import attention_residual, ffn_residual
from meft.architectures.base import Architecture, model_type_is, register_architecture


def attention_half(layer, x, context, adapters):
    def attend(hidden):
        hidden, _ = layer.attention(hidden, **context)  # the mask and kwargs the layer forwards
        return layer.dropout(hidden)

    return attention_residual(x, attend, layer.layernorm_before, adapters, pre_norm=True)


def ffn_half(layer, x, context, adapters):
    def ffn(hidden):
        return layer.dropout(layer.mlp(hidden))

    return ffn_residual(x, ffn, layer.layernorm_after, adapters, pre_norm=True)


VIT = register_architecture(
    Architecture(
        name="vit",
        matches=model_type_is("vit"),
        stacks=("layers",),
        attention=attention_half,
        ffn=ffn_half,
        hidden_size=lambda model: model.config.hidden_size,
        activation=lambda model: model.config.hidden_act,
        dropout=lambda model: model.config.hidden_dropout_prob,
        head=("classifier",),
    )
)
