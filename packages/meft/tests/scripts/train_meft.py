"""Train a tiny MEFT BERT with the peft-core Trainer (one process, or several under torchrun)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from tiny_models import text_batch, tiny_bert

from meft import MeftConfig, get_meft_model
from peft_core import Trainer, TrainingArguments, save_trainable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--variant", default="meft1")
    args = parser.parse_args()

    rows = text_batch(batch=32, length=8)
    data = [{k: v[i] for k, v in rows.items()} for i in range(32)]
    torch.manual_seed(0)
    model = get_meft_model(tiny_bert(), MeftConfig(variant=args.variant, stream_dtype="float64"))
    training = TrainingArguments(
        args.output_dir, max_steps=6, per_device_batch_size=args.batch_size, learning_rate=1e-2,
        progress_bar=False, eval_strategy="no", cpu=True, seed=3,
    )  # fmt: skip
    trainer = Trainer(
        model,
        training,
        data,
        collate_fn=lambda batch: {k: torch.stack([r[k] for r in batch]) for k in batch[0]},
    )
    trainer.train()
    if trainer.is_main_process:
        save_trainable(trainer.unwrapped_model, Path(args.output_dir) / "weights")
        (Path(args.output_dir) / "world.json").write_text(
            json.dumps(trainer.accelerator.num_processes)
        )


if __name__ == "__main__":
    main()
