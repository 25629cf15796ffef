"""BART (post-LN encoder-decoder): two stacks, the encoder's then the decoder's; ``BartForCausalLM``
(the decoder alone, no cross-attention input): one stack, described as ``bart-decoder``.

Encoder layer: ``LN(x + dropout(SelfAttn(x)))`` then ``LN(a + dropout(fc2(dropout'(act(fc1(a))))))``.
Decoder layer: the same with a cross-attention block, ``LN(h + dropout(CrossAttn(h, encoder)))``,
between the two. MEFT3's attention half is the self-attention block followed by the cross-attention
block; its sequential adapter sits on the self-attention output, as in the encoder.

The decoder reads the encoder output (``encoder_hidden_states``), which requires grad: the decoder's
reversible backward accumulates its gradient over all decoder layers and returns it, which then
seeds the encoder's reversible backward.
"""

from __future__ import annotations

from torch.nn import functional

from meft.architectures._checks import refuse_layerdrop
from meft.architectures._residual import attention_residual, except_keys, ffn_residual
from meft.architectures.base import Architecture, model_type_is, register_architecture

# Decoder-layer arguments it does not forward to its attention modules as extra keywords.
_DECODER_ARGUMENTS = (
    "attention_mask", "encoder_hidden_states", "encoder_attention_mask", "cache", "use_cache",
)  # fmt: skip


def _dropout(layer, hidden, p=None):
    return functional.dropout(hidden, p=layer.dropout if p is None else p, training=layer.training)


def _is_decoder_layer(layer) -> bool:
    return hasattr(layer, "encoder_attn")


def attention_half(layer, x, context, adapters):
    hidden = attention_residual(
        x, lambda h: _self_attend(layer, h, context), layer.self_attn_layer_norm, adapters,
        pre_norm=False,
    )  # fmt: skip
    if not _is_decoder_layer(layer) or context.get("encoder_hidden_states") is None:
        return hidden  # an encoder layer, or the decoder used alone (BartForCausalLM)
    # Post-LN cross-attention block, without an adapter of its own.
    return layer.encoder_attn_layer_norm(hidden + _cross_attend(layer, hidden, context))


def _has_encoder(model) -> bool:
    return any(name == "encoder" or name.endswith(".encoder") for name, _ in model.named_modules())


def _self_attend(layer, hidden, context):
    if _is_decoder_layer(layer):
        hidden, _ = layer.self_attn(
            hidden, cache=context.get("cache"), attention_mask=context.get("attention_mask"),
            **except_keys(context, *_DECODER_ARGUMENTS),
        )  # fmt: skip
    else:  # the encoder layer forwards its mask and extra keywords as it received them
        hidden, _ = layer.self_attn(hidden, **context)
    return _dropout(layer, hidden)


def _cross_attend(layer, hidden, context):
    hidden, _ = layer.encoder_attn(
        hidden,
        key_value_states=context["encoder_hidden_states"],
        attention_mask=context.get("encoder_attention_mask"),
        cache=context.get("cache"),
        **except_keys(context, *_DECODER_ARGUMENTS),
    )
    return _dropout(layer, hidden)


def ffn_half(layer, x, context, adapters):
    def ffn(hidden):
        hidden = layer.activation_fn(layer.fc1(hidden))
        hidden = layer.fc2(_dropout(layer, hidden, p=layer.activation_dropout))
        return _dropout(layer, hidden)

    return ffn_residual(x, ffn, layer.final_layer_norm, adapters, pre_norm=False)


_COMMON = dict(
    attention=attention_half,
    ffn=ffn_half,
    hidden_size=lambda model: model.config.d_model,
    activation=lambda model: model.config.activation_function,
    dropout=lambda model: model.config.dropout,
    check=refuse_layerdrop,
    cache_arguments=("cache",),
)

BART = register_architecture(
    Architecture(
        name="bart",
        matches=lambda model: model_type_is("bart")(model) and _has_encoder(model),
        stacks=("encoder.layers", "decoder.layers"),
        # The generation head is tied to the shared embeddings and stays frozen, as does its
        # final_logits_bias (a buffer).
        head=("classification_head", "qa_outputs"),
        **_COMMON,
    )
)

BART_DECODER = register_architecture(
    Architecture(
        name="bart-decoder",
        matches=lambda model: model_type_is("bart")(model) and not _has_encoder(model),
        stacks=("decoder.layers",),
        head=(),  # BartForCausalLM's LM head is tied to the embeddings and stays frozen
        **_COMMON,
    )
)
