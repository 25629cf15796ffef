"""Llama-family decoders (Llama, Mistral, Qwen2; pre-RMSNorm, rotary positions, gated MLP):
``x + Attn(RMSNorm(x))`` then ``a + MLP(RMSNorm(a))``, no hidden dropout.

The rotary ``position_embeddings`` and the causal mask are computed once by the host model and
reach every layer unchanged, so the first layer's arguments serve the whole stack. Qwen2 models
that mix sliding-window and full attention layers (each with its own mask) are refused.
"""

from __future__ import annotations

from meft.architectures._checks import refuse_mixed_layer_types
from meft.architectures._residual import attention_residual, ffn_residual
from meft.architectures.base import Architecture, model_type_is, register_architecture


def attention_half(layer, x, context, adapters):
    def attend(hidden):
        # The layer forwards every argument it received (mask, positions, cache, …) to attention.
        hidden, _ = layer.self_attn(hidden_states=hidden, **context)
        return hidden

    return attention_residual(x, attend, layer.input_layernorm, adapters, pre_norm=True)


def ffn_half(layer, x, context, adapters):
    return ffn_residual(x, layer.mlp, layer.post_attention_layernorm, adapters, pre_norm=True)


LLAMA = register_architecture(
    Architecture(
        name="llama",
        matches=model_type_is("llama", "mistral", "qwen2"),
        stacks=("layers",),
        attention=attention_half,
        ffn=ffn_half,
        hidden_size=lambda model: model.config.hidden_size,
        activation=lambda model: model.config.hidden_act,
        # No hidden dropout in the family (attention_dropout acts on attention probabilities).
        dropout=lambda model: 0.0,
        # The causal LM head (often tied to the input embeddings) stays frozen.
        head=("score", "qa_outputs"),
        check=refuse_mixed_layer_types,
        cache_arguments=("cache",),
    )
)
