"""Tiny random-init models of each supported family, built from configs (no download).

``FAMILIES`` maps a family name to how to build its tiny model, a batch for it (labels included, so
``model(**batch).loss`` works) and how to read its final hidden state; the parametrized tests in
test_gradients.py and test_reconstruction_memory.py run over all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional

VOCAB = 100
PAD, EOS = 1, 2  # the ids every tiny text model is configured with
IMAGE_SIZE, PATCH_SIZE = 32, 8  # 16 patches (+1 class token)

# What every tiny Hugging Face model shares: hidden 32, 2 heads, FFN 64, eager attention.
_TEXT = dict(vocab_size=VOCAB, max_position_embeddings=64, attn_implementation="eager")


def _seeded(model_class, config) -> nn.Module:
    torch.manual_seed(0)
    return model_class(config)


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
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=2, **_TEXT,
    )  # fmt: skip
    return _seeded(model_class, config)


def tiny_vit(num_layers: int = 2, dropout: float = 0.0):
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2, intermediate_size=64,
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, num_labels=2, attn_implementation="eager",
    )  # fmt: skip
    return _seeded(ViTForImageClassification, config)


def timm_vit(num_layers: int = 2, dropout: float = 0.0, model_class=None):
    """A plain timm VisionTransformer (or ``model_class``, a subclass of it)."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return (model_class or VisionTransformer)(
        img_size=IMAGE_SIZE, patch_size=PATCH_SIZE, embed_dim=32, depth=num_layers, num_heads=2,
        mlp_ratio=2.0, num_classes=2, drop_rate=dropout, proj_drop_rate=dropout,
        attn_drop_rate=dropout, drop_path_rate=dropout,
    )  # fmt: skip


def timm_vit_with_loss(num_layers: int = 2, dropout: float = 0.0):
    """timm's ViT with the Hugging Face calling convention (``pixel_values``, ``labels`` → ``.loss``)
    the shared tests use; still a VisionTransformer, so MEFT describes it as timm's."""
    from timm.models.vision_transformer import VisionTransformer

    class VisionTransformerWithLoss(VisionTransformer):
        def forward(self, pixel_values, labels=None):
            logits = super().forward(pixel_values)
            loss = None if labels is None else functional.cross_entropy(logits, labels)
            return SimpleNamespace(logits=logits, loss=loss)

    return timm_vit(num_layers, dropout, model_class=VisionTransformerWithLoss)


def tiny_opt(num_layers: int = 2, dropout: float = 0.0, pre_norm: bool = True, task: str = "lm"):
    from transformers import OPTConfig, OPTForCausalLM, OPTForSequenceClassification

    config = OPTConfig(
        hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2, ffn_dim=64,
        word_embed_proj_dim=32, do_layer_norm_before=pre_norm, dropout=dropout,
        attention_dropout=dropout, layerdrop=0.0, pad_token_id=PAD, bos_token_id=EOS,
        eos_token_id=EOS, num_labels=2, **_TEXT,
    )  # fmt: skip
    return _seeded({"lm": OPTForCausalLM, "cls": OPTForSequenceClassification}[task], config)


def tiny_llama(
    num_layers: int = 2, dropout: float = 0.0, model_type: str = "llama", task: str = "lm"
):
    import transformers

    prefix = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}[model_type]
    config = getattr(transformers, f"{prefix}Config")(
        hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=64, attention_dropout=dropout,
        pad_token_id=PAD, bos_token_id=EOS, eos_token_id=EOS, tie_word_embeddings=True,
        num_labels=2, **_TEXT,
    )  # fmt: skip
    suffix = {"lm": "ForCausalLM", "cls": "ForSequenceClassification"}[task]
    return _seeded(getattr(transformers, prefix + suffix), config)


def tiny_bart(num_layers: int = 2, dropout: float = 0.0, task: str = "cls"):
    from transformers import (
        BartConfig,
        BartForCausalLM,
        BartForConditionalGeneration,
        BartForSequenceClassification,
    )

    config = BartConfig(
        d_model=32, encoder_layers=num_layers, decoder_layers=num_layers,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, dropout=dropout, attention_dropout=dropout,
        activation_dropout=dropout, encoder_layerdrop=0.0, decoder_layerdrop=0.0,
        pad_token_id=PAD, bos_token_id=0, eos_token_id=EOS, decoder_start_token_id=EOS,
        num_labels=2, **_TEXT,
    )  # fmt: skip
    model_class = {
        "cls": BartForSequenceClassification,
        "lm": BartForConditionalGeneration,
        "causal-lm": BartForCausalLM,  # the decoder alone
    }[task]
    return _seeded(model_class, config)


def text_batch(
    batch: int = 2, length: int = 7, *, labels: str = "class", pad: bool = False, eos: bool = False
) -> dict[str, torch.Tensor]:
    """Random token ids (3…VOCAB) with the first row's last two positions padded.

    ``pad`` writes the pad id at padded positions (decoder classifiers find the last real token by
    it); ``eos`` ends each row's real tokens with EOS (BART's classifier reads the EOS position);
    ``labels``: ``"class"`` (0/1 per row) or ``"tokens"`` (the ids, -100 at padding: causal LM).
    """
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, VOCAB, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[0, length - 2 :] = 0  # padding in the first row exercises the mask path
    if eos:
        last_real = attention_mask.sum(1) - 1
        input_ids[torch.arange(batch), last_real] = EOS
    if pad:
        input_ids = input_ids.masked_fill(attention_mask == 0, PAD)
    targets = (
        torch.arange(batch) % 2
        if labels == "class"
        else input_ids.masked_fill(attention_mask == 0, -100)
    )
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": targets}


def image_batch(batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return {"pixel_values": pixel_values, "labels": torch.arange(batch) % 2}


def base_hidden_states(model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    """The last hidden state of a Hugging Face model's backbone (for BART: the decoder's)."""
    return model.base_model(**inputs).last_hidden_state


def timm_hidden_states(model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    return model.forward_features(inputs["pixel_values"])


class Family(NamedTuple):
    build: Callable[..., nn.Module]  # (num_layers=2, dropout=0.0) -> a tiny model
    batch: Callable[[], dict[str, torch.Tensor]]  # inputs and labels
    hidden_states: Callable[[nn.Module, dict[str, Any]], torch.Tensor] = base_hidden_states


def _with(function, **fixed):
    return lambda *args, **kwargs: function(*args, **fixed, **kwargs)


FAMILIES = {
    "bert": Family(_with(tiny_bert, model_type="bert"), text_batch),
    "roberta": Family(_with(tiny_bert, model_type="roberta"), text_batch),
    "vit": Family(tiny_vit, image_batch),
    "timm-vit": Family(timm_vit_with_loss, image_batch, timm_hidden_states),
    "opt": Family(_with(tiny_opt, task="lm"), _with(text_batch, labels="tokens", pad=True)),
    "opt-post-ln-cls": Family(
        _with(tiny_opt, pre_norm=False, task="cls"), _with(text_batch, pad=True)
    ),
    "llama": Family(_with(tiny_llama, task="lm"), _with(text_batch, labels="tokens", pad=True)),
    "mistral-cls": Family(
        _with(tiny_llama, model_type="mistral", task="cls"), _with(text_batch, pad=True)
    ),
    "qwen2": Family(
        _with(tiny_llama, model_type="qwen2", task="lm"),
        _with(text_batch, labels="tokens", pad=True),
    ),
    "bart-cls": Family(_with(tiny_bart, task="cls"), _with(text_batch, pad=True, eos=True)),
    "bart": Family(
        _with(tiny_bart, task="lm"), _with(text_batch, labels="tokens", pad=True, eos=True)
    ),
    "bart-causal-lm": Family(
        _with(tiny_bart, task="causal-lm"), _with(text_batch, labels="tokens", pad=True)
    ),
}
