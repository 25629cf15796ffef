"""Tiny random-init models of each supported family, built from configs (no download)."""

from __future__ import annotations

import torch

VOCAB = 100


def tiny_bert(num_layers: int = 2, dropout: float = 0.0, model_type: str = "bert"):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    config_class, model_class = {
        "bert": (BertConfig, BertForSequenceClassification),
        "roberta": (RobertaConfig, RobertaForSequenceClassification),
    }[model_type]
    config = config_class(
        hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=64, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, num_labels=2, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    return model_class(config)


def text_batch(batch: int = 2, length: int = 7) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, VOCAB, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[0, length - 2 :] = 0  # padding in the first row exercises the mask path
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": torch.arange(batch) % 2,
    }


FAMILIES = {
    "bert": (lambda **kw: tiny_bert(model_type="bert", **kw), text_batch),
    "roberta": (lambda **kw: tiny_bert(model_type="roberta", **kw), text_batch),
}
