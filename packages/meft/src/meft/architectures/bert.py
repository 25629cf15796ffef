"""BERT and RoBERTa (post-LN encoders): LN(x + Attn(x)) then LN(a + FFN(a))."""

from __future__ import annotations

from meft.architectures.base import Architecture, model_type_is, register_architecture


def attention_half(layer, x, context, adapters):
    attention = layer.attention
    hidden, _ = attention.self(x, attention_mask=context.get("attention_mask"))
    hidden = attention.output.dropout(attention.output.dense(hidden))
    if adapters.attention is not None:  # MEFT3: sequential adapter on the attention output
        hidden = hidden + adapters.attention(hidden)
    return attention.output.LayerNorm(hidden + x)


def ffn_half(layer, x, context, adapters):
    hidden = layer.output.dropout(layer.output.dense(layer.intermediate(x)))
    # Parallel adapter: LN(dropout(FFN(a)) + A(a) + a).
    return layer.output.LayerNorm(hidden + adapters.ffn(x) + x)


BERT = register_architecture(
    Architecture(
        name="bert",
        matches=model_type_is("bert", "roberta", "xlm-roberta", "camembert", "electra"),
        stacks=("encoder.layer",),
        attention=attention_half,
        ffn=ffn_half,
        hidden_size=lambda config: config.hidden_size,
        activation=lambda config: config.hidden_act,
        dropout=lambda config: config.hidden_dropout_prob,
        head=("classifier", "qa_outputs"),
    )
)
