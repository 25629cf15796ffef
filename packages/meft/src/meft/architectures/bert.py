"""BERT and RoBERTa (post-LN encoders): LN(x + Attn(x)) then LN(a + FFN(a)).

Also used as a causal decoder (``is_decoder=True``: the host passes the causal mask, and generation
writes the key/value cache as the original layers do). Layers with
cross-attention (``add_cross_attention=True``) are refused: the description has no cross-attention
block, and skipping it would silently ignore the encoder states.
"""

from __future__ import annotations

from meft.architectures._residual import attention_residual, ffn_residual
from meft.architectures.base import Architecture, model_type_is, register_architecture

# Layer arguments that belong to the cross-attention block, which this description refuses.
_CROSS_ATTENTION_ARGUMENTS = ("encoder_hidden_states", "encoder_attention_mask")


def attention_half(layer, x, context, adapters):
    output = layer.attention.output
    # Everything else the layer received (mask, key/value cache of a causal decoder, …) goes to
    # self-attention, as BertLayer.forward passes it.
    arguments = {k: v for k, v in context.items() if k not in _CROSS_ATTENTION_ARGUMENTS}

    def attend(hidden):
        hidden, _ = layer.attention.self(hidden, **arguments)
        return output.dropout(output.dense(hidden))

    return attention_residual(x, attend, output.LayerNorm, adapters, pre_norm=False)


def refuse_cross_attention(model) -> None:
    for name, module in model.named_modules():
        if getattr(module, "crossattention", None) is not None:
            raise ValueError(
                f"MEFT cannot make {type(model).__name__} reversible with cross-attention "
                f"({name}.crossattention, config.add_cross_attention=True): MEFT's BERT description "
                "has no cross-attention block, so the encoder states would be ignored. Use BERT "
                "without add_cross_attention, or BART (encoder-decoder, supported)."
            )


def ffn_half(layer, x, context, adapters):
    def ffn(hidden):
        return layer.output.dropout(layer.output.dense(layer.intermediate(hidden)))

    return ffn_residual(x, ffn, layer.output.LayerNorm, adapters, pre_norm=False)


BERT = register_architecture(
    Architecture(
        name="bert",
        matches=model_type_is("bert", "roberta", "xlm-roberta", "camembert", "electra"),
        stacks=("encoder.layer",),
        attention=attention_half,
        ffn=ffn_half,
        hidden_size=lambda model: model.config.hidden_size,
        activation=lambda model: model.config.hidden_act,
        dropout=lambda model: model.config.hidden_dropout_prob,
        head=("classifier", "qa_outputs"),
        check=refuse_cross_attention,
        cache_arguments=("cache",),  # a causal decoder (is_decoder=True) writes one
    )
)
