"""BERT and RoBERTa (post-LN encoders): LN(x + Attn(x)) then LN(a + FFN(a))."""

from __future__ import annotations

from meft.architectures._residual import attention_residual, ffn_residual
from meft.architectures.base import Architecture, model_type_is, register_architecture


def attention_half(layer, x, context, adapters):
    output = layer.attention.output

    def attend(hidden):
        hidden, _ = layer.attention.self(hidden, attention_mask=context.get("attention_mask"))
        return output.dropout(output.dense(hidden))

    return attention_residual(x, attend, output.LayerNorm, adapters, pre_norm=False)


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
    )
)
