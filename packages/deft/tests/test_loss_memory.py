"""What the density loss costs in activation memory: at most one activation per layer.

s(a) = a²/(a²+ε) needs ``a`` in backward, and nothing else. Whether that is new memory depends on
the down projection: when it trains, autograd keeps its input (``a``) anyway and the loss shares
it; when it is frozen (LoRA on Q/V, prompt tuning: the paper's setups) autograd would not keep
``a``, and the loss keeps one B×T×F tensor per layer.
"""

from __future__ import annotations

import torch
import transformers

import deft
from peft_core.memory import measure_activation_memory

BATCH, TOKENS, INTERMEDIATE, LAYERS = 4, 16, 128, 2


def _bert(trainable: tuple[str, ...]) -> transformers.BertForSequenceClassification:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2,
        intermediate_size=INTERMEDIATE, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config).train()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(any(part in name for part in trainable))
    return model


def _extra_bytes(model) -> int:
    ids = torch.randint(0, 50, (BATCH, TOKENS), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    monitor = deft.DensityMonitor(model)

    def task():
        return model(input_ids=ids, attention_mask=mask).logits.sum()

    def task_and_density():
        return task() + monitor.loss(mask)

    try:
        return measure_activation_memory(task_and_density, model) - measure_activation_memory(
            task, model
        )
    finally:
        monitor.remove()


ONE_ACTIVATION = BATCH * TOKENS * INTERMEDIATE * 4  # fp32 bytes of a per layer


def test_with_the_down_projection_frozen_the_loss_keeps_one_activation_per_layer():
    extra = _extra_bytes(_bert(("query", "value", "classifier")))
    assert LAYERS * ONE_ACTIVATION <= extra <= LAYERS * ONE_ACTIVATION * 1.01


def test_with_nothing_trainable_below_the_activations_the_loss_keeps_nothing():
    assert _extra_bytes(_bert(("classifier",))) == 0  # a constant term: no graph at all


def test_with_the_down_projection_trained_the_loss_shares_what_autograd_keeps():
    extra = _extra_bytes(_bert(("query", "value", "output.dense", "classifier")))
    assert extra <= 0.01 * LAYERS * ONE_ACTIVATION
