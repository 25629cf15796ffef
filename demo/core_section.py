"""The core section of the demo: three ways to fine-tune real MiniLM with the peft-core Trainer.

linear probe (head only) · bottleneck adapters (peft-core's BottleneckAdapter after every FFN) ·
full fine-tuning, on the embedded Rotten-Tomatoes polarity task.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

import peft_core
from peft_core import BottleneckAdapter, Trainer, TrainingArguments
from peft_core.assets import offline_model_path
from peft_core.data import DynamicPaddingCollator, load_text_classification


def attach_ffn_adapters(model: nn.Module, bottleneck: int = 32) -> nn.ModuleList:
    """Add ``out + adapter(out)`` after each BERT layer's FFN output projection (Pfeiffer position)."""
    layers = model.bert.encoder.layer
    adapters = nn.ModuleList(
        BottleneckAdapter(model.config.hidden_size, bottleneck, activation="relu", init="zero_up")
        for _ in layers
    )
    model.add_module("ffn_adapters", adapters)
    for layer, adapter in zip(layers, adapters, strict=True):
        layer.output.dense.register_forward_hook(
            lambda _m, _i, out, adapter=adapter: out + adapter(out)
        )
    return adapters


SETTINGS = {
    # name: (trainable patterns, learning rate, add adapters)
    "linear probe": (["classifier.*"], 3e-3, False),
    "bottleneck adapters": (["ffn_adapters.*", "classifier.*"], 1e-3, True),
    "full fine-tuning": (None, 5e-5, False),
}


def run(output_dir: Path, epochs: float, max_train: int | None, seed: int) -> list[dict]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = offline_model_path("all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = load_text_classification("rotten_tomatoes", seed=seed)
    print(data.summary())
    train = data.tokenize(tokenizer, split="train", max_length=64)
    if max_train:
        train = torch.utils.data.Subset(train, range(min(max_train, len(train))))
    validation = data.tokenize(tokenizer, split="validation", max_length=64)
    test = data.tokenize(tokenizer, split="test", max_length=64)
    collate = DynamicPaddingCollator.from_tokenizer(tokenizer, pad_to_multiple_of=8)

    rows = []
    for name, (patterns, learning_rate, adapters) in SETTINGS.items():
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        if adapters:
            attach_ffn_adapters(model)
        if patterns:
            peft_core.freeze(model, trainable=patterns)
        trainable, total = peft_core.count_parameters(model)
        args = TrainingArguments(
            str(output_dir / name.replace(" ", "-")),
            num_epochs=epochs, per_device_batch_size=32, learning_rate=learning_rate, warmup_ratio=0.06,
            weight_decay=0.01, eval_strategy="epoch", metric_for_best="eval_accuracy", seed=seed, resume=False,
        )  # fmt: skip
        print(f"\n[{name}] {peft_core.format_trainable_parameters(model)}")
        started = time.perf_counter()
        trainer = Trainer(model, args, train, validation, collate_fn=collate)
        trainer.train()
        seconds = time.perf_counter() - started
        metrics = trainer.evaluate(test)
        rows.append(
            {
                "setting": name,
                "test_accuracy": metrics["eval_accuracy"],
                "trainable_params": trainable,
                "trainable_percent": 100 * trainable / total,
                "train_seconds": seconds,
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'setting':<22} {'test acc':>9} {'trainable params':>17} {'trainable %':>12} {'time (s)':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['setting']:<22} {100 * row['test_accuracy']:>8.2f}% {row['trainable_params']:>17,} "
            f"{row['trainable_percent']:>11.3f}% {row['train_seconds']:>9.1f}"
        )
    return "\n".join(lines)
