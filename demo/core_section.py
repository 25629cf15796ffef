"""Core section: three ways to fine-tune real MiniLM with the peft-core Trainer."""

from __future__ import annotations

from pathlib import Path

from demo_options import DemoOptions
from torch import nn

import peft_core
from peft_core import BottleneckAdapter
from peft_core.recipes import TextTask, fine_tune, load_classifier

TITLE = "peft-core: linear probe vs bottleneck adapters vs full fine-tuning"


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


def run(
    task: TextTask, output_dir: Path, options: DemoOptions, earlier: dict[str, list[dict]]
) -> list[dict]:
    epochs, seed = options.epochs, options.seed

    def train(name: str, model: nn.Module, learning_rate: float) -> dict:
        return fine_tune(model, task, output_dir / name.replace(" ", "-"), name=name,
                         learning_rate=learning_rate, epochs=epochs, seed=seed, overwrite=True)  # fmt: skip

    probe = load_classifier(task, seed)
    peft_core.freeze(probe, trainable=["classifier.*"])
    adapters = load_classifier(task, seed)
    attach_ffn_adapters(adapters)
    peft_core.freeze(adapters, trainable=["ffn_adapters.*", "classifier.*"])
    return [
        train("linear probe", probe, 1e-2),
        train("bottleneck adapters", adapters, 3e-3),
        train("full fine-tuning", load_classifier(task, seed), 1e-4),
    ]
