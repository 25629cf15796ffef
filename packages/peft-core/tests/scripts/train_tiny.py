"""Train TinyClassifier with the peft-core Trainer; used by the resume and distributed tests.

Run directly (one process), under ``torchrun`` (several), or with --kill-at-step to die by SIGKILL
in the middle of training, the way an out-of-memory killer or a pre-empted job does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal

import numpy as np
import torch
from torch.utils.data import Dataset

from peft_core import Trainer, TrainerCallback, TrainingArguments, freeze
from peft_core.testing import TinyClassifier, TokenParityDataset, collate_token_batches


class KillAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, logs) -> None:
        if trainer.state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class AugmentedTokens(Dataset):
    """TokenParityDataset with augmentation drawn from Python's, numpy's and torch's global RNGs,
    as ordinary augmentation code draws: what exact resume with data workers must reproduce."""

    def __init__(self, size: int) -> None:
        self.examples = TokenParityDataset(size, seed=3)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = dict(self.examples[index])
        tokens = list(example["input_ids"])
        position = int(torch.randint(len(tokens), (1,)))
        tokens[position] = int(np.random.randint(1, 32))  # noqa: NPY002
        if random.random() < 0.5:
            tokens = tokens[:-1]
        return {**example, "input_ids": tokens}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--save-every", type=int, default=None)
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--dataset-size", type=int, default=48)
    parser.add_argument("--result-json", default=None)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument("--evaluate", action="store_true", help="evaluate at every epoch's end")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = TinyClassifier(dropout=args.dropout)
    freeze(model, trainable=["blocks.1.*", "norm.*", "classifier.*"])
    training = TrainingArguments(
        args.output_dir,
        num_epochs=args.epochs,
        per_device_batch_size=args.batch_size,
        gradient_accumulation_steps=args.accumulation,
        learning_rate=5e-3,
        weight_decay=0.01,
        warmup_steps=2,
        save_every=args.save_every,
        log_every=args.log_every,
        progress_bar=False,
        cpu=True,
        seed=7,
        num_workers=args.num_workers,
    )
    callbacks = [KillAtStep(args.kill_at_step)] if args.kill_at_step else []
    trainer = Trainer(
        model,
        training,
        AugmentedTokens(args.dataset_size)
        if args.augment
        else TokenParityDataset(args.dataset_size, seed=3),
        TokenParityDataset(16, seed=4) if args.evaluate else None,
        collate_fn=collate_token_batches,
        callbacks=callbacks,
    )
    result = trainer.train()
    if args.result_json and trainer.is_main_process:
        result["world_size"] = trainer.accelerator.num_processes
        with open(args.result_json, "w", encoding="utf-8") as handle:
            json.dump(result, handle)


if __name__ == "__main__":
    main()
