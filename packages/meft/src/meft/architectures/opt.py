"""OPT (decoder-only): pre-LN (``do_layer_norm_before``, 125m and 1.3b up) or post-LN (350m).

Attention: ``x + dropout(Attn(LN(x)))`` (or ``LN(x + dropout(Attn(x)))``); FFN:
``x + dropout(fc2(act(fc1(LN(x)))))`` (or post-LN likewise). Dropout is functional, p=config.dropout.
"""

from __future__ import annotations

from torch.nn import functional

from meft.architectures._checks import refuse_layerdrop
from meft.architectures._residual import attention_residual, except_keys, ffn_residual
from meft.architectures.base import Architecture, model_type_is, register_architecture


def _dropout(layer, hidden):
    return functional.dropout(hidden, p=layer.dropout, training=layer.training)


def attention_half(layer, x, context, adapters):
    def attend(hidden):
        # The layer forwards everything it received to its attention, except use_cache.
        hidden, _ = layer.self_attn(hidden_states=hidden, **except_keys(context, "use_cache"))
        return _dropout(layer, hidden)

    return attention_residual(
        x, attend, layer.self_attn_layer_norm, adapters, pre_norm=layer.do_layer_norm_before
    )


def ffn_half(layer, x, context, adapters):
    def ffn(hidden):
        return _dropout(layer, layer.fc2(layer.activation_fn(layer.fc1(hidden))))

    return ffn_residual(
        x, ffn, layer.final_layer_norm, adapters, pre_norm=layer.do_layer_norm_before
    )


OPT = register_architecture(
    Architecture(
        name="opt",
        matches=model_type_is("opt"),
        stacks=("decoder.layers",),
        attention=attention_half,
        ffn=ffn_half,
        hidden_size=lambda model: model.config.hidden_size,
        activation=lambda model: model.config.activation_function,
        dropout=lambda model: model.config.dropout,
        # The causal LM head is tied to the input embeddings and stays frozen.
        head=("score", "qa_outputs"),
        check=refuse_layerdrop,
        cache_arguments=("cache",),
    )
)
