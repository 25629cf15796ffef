"""peft-core's own figures: the activation-memory meter on a BERT-base-sized model, and the
Trainer's overhead over a hand-written training loop (same model, data and optimizer, one run).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.records import make_record, write_record
from peft_core import (
    Trainer,
    TrainingArguments,
    count_parameters,
    freeze,
    measure_activation_memory,
)
from peft_core.testing import TinyClassifier, TokenParityDataset, collate_token_batches

MIB = 2**20


def _bert(num_layers: int, hidden: int = 768):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
        num_labels=2,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config).train()


def activation_memory(quick: bool) -> Path:
    """Saved-tensor bytes of one training step for full fine-tuning vs frozen-encoder variants."""
    layers, batch, length = (4, 2, 64) if quick else (12, 4, 128)
    inputs = {
        "input_ids": torch.randint(
            0, 30000, (batch, length), generator=torch.Generator().manual_seed(0)
        ),
        "labels": torch.zeros(batch, dtype=torch.long),
    }
    rows = {}
    for setting, patterns in {
        "full fine-tuning": None,
        "last layer + head": [
            f"bert.encoder.layer.{layers - 1}.*",
            "bert.pooler.*",
            "classifier.*",
        ],
        "head only": ["classifier.*"],
    }.items():
        model = _bert(layers)
        if patterns is not None:
            freeze(model, trainable=patterns)
        trainable, total = count_parameters(model)
        saved = measure_activation_memory(lambda model=model: model(**inputs).loss, model)
        rows[setting] = {
            "activation_bytes": saved,
            "activation_mib": saved / MIB,
            "trainable_params": trainable,
        }
        print(
            f"   {setting:>20}: {saved / MIB:8.1f} MiB saved for backward, {trainable:,} trainable"
        )
    full = rows["full fine-tuning"]["activation_bytes"]
    for row in rows.values():
        row["ratio_to_full"] = row["activation_bytes"] / full
    record = make_record(
        "core activation memory bert-base-shape" + (" quick" if quick else ""),
        method="(none: peft-core meter)",
        model=f"BertForSequenceClassification random init, {layers}x768, eager attention",
        data=f"random tokens, batch {batch} x {length}",
        train_info={"activation_memory": rows, "total_params": total},
    )
    return write_record(record)


def _hand_loop(model, dataset, steps: int, batch_size: int) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, collate_fn=collate_token_batches
    )
    done, start = 0, time.perf_counter()
    while done < steps:
        for batch in loader:
            loss = model(**batch)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
    return (time.perf_counter() - start) / steps


def _trainer_loop(model, dataset, steps: int, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as output:
        args = TrainingArguments(
            output, max_steps=steps, per_device_batch_size=batch_size, learning_rate=1e-3, progress_bar=False,
            eval_strategy="no", log_every=10, cpu=True,
        )  # fmt: skip
        trainer = Trainer(model, args, dataset, collate_fn=collate_token_batches)
        result = trainer.train()
    return result["train_seconds"] / steps


def trainer_overhead(quick: bool) -> Path:
    """Per-step time of Trainer.train() vs a bare PyTorch loop, interleaved, median of repeats."""
    steps, repeats, batch = (20, 2, 16) if quick else (60, 5, 32)
    dataset = TokenParityDataset(1024, vocab_size=1000, max_length=64, seed=0)
    loops = {"hand-written loop": _hand_loop, "peft-core Trainer": _trainer_loop}
    timings: dict[str, list[float]] = {name: [] for name in loops}
    for repeat in range(repeats + 1):  # the first round is warm-up
        # Each round swaps which loop goes first, so neither always runs on the warmer machine.
        for name in list(loops) if repeat % 2 else list(loops)[::-1]:
            torch.manual_seed(0)
            model = TinyClassifier(vocab_size=1000, dim=256, num_layers=4)
            seconds = loops[name](model, dataset, steps, batch)
            if repeat:
                timings[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    ratio = medians["peft-core Trainer"] / medians["hand-written loop"]
    # Ratio of the two runs of one round: their spread is what the median ratio can be read to.
    trainer, hand = timings["peft-core Trainer"], timings["hand-written loop"]
    paired = [t / h for t, h in zip(trainer, hand, strict=True)]
    print(f"   step time: hand loop {medians['hand-written loop'] * 1e3:.2f} ms, Trainer "
          f"{medians['peft-core Trainer'] * 1e3:.2f} ms, ratio {ratio:.3f} "
          f"(per round {min(paired):.3f} to {max(paired):.3f})")  # fmt: skip
    record = make_record(
        "core trainer overhead" + (" quick" if quick else ""),
        method="(none: peft-core Trainer vs plain loop)",
        model="TinyClassifier dim 256, 4 blocks, vocab 1000",
        data=f"TokenParityDataset, batch {batch}, up to 64 tokens",
        train_info={
            "steps_per_run": steps,
            "step_time_s": {
                name: {"median": medians[name], "all": values} for name, values in timings.items()
            },
            "trainer_to_hand_loop_ratio": ratio,
            "trainer_to_hand_loop_ratio_per_round": paired,
            "order": "alternating: the hand-written loop first in odd rounds",
        },
    )
    return write_record(record)


def main(quick: bool = False) -> list[Path]:
    return [activation_memory(quick), trainer_overhead(quick)]
