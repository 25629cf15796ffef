"""DEFT on a real decoder LM: SmolLM2's gated-MLP density before and after a short fine-tune.

Real SmolLM2-135M-Instruct (Llama architecture, SwiGLU MLP 576 → 1536, SiLU gate; the offline
GGUF weights dequantised to fp32 by :func:`peft_core.assets.load_offline_causal_lm`), all 30 layers
in the full run so that the LM loss is the real model's (its bottom layers alone, under the final
norm and LM head, score ~20 nats per token: no language model to lose perplexity from). Text: the
sentences of the embedded Rotten-Tomatoes corpus as plain LM text (training sentences to train,
held-out test sentences to measure).

Three states of the same weights, side by side:

- before: the pretrained model;
- LoRA: LoRA r=8 on q_proj/v_proj (:mod:`deft.methods` defaults), trained on the LM loss alone;
- LoRA + DEFT: the same run (same LoRA initialisation, same batches) with λ = 1 · the density
  loss on the gate activation act(x W_gate), as the reference code penalises it.

For each: the LM loss (token-weighted mean NLL, and perplexity) on the held-out sentences; the same
with gate activations |a| ≤ 1e-3 zeroed in the forward pass (what that threshold costs); and the
density of the gate activation and of gate ⊙ up (the input of down_proj, whose zeros let its rows
be skipped): reference / masked / thresholded at τ ∈ {1e-6, 1e-4, 1e-3}, per layer, fp32.

SiLU is exactly zero in fp32 only where exp(−x) overflows (x ≲ −88), so exact-zero densities stay
at 100% whatever the training: the thresholded variants carry the information here.

`python -m benchmarks.run deft-smollm2` (25–30 min on 2 busy CPU cores; `--quick`: 2 layers, a few
steps, for a smoke run).
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.deft.measurements import LossCurve, on_device
from benchmarks.records import make_record, write_record

LAYERS = None  # all 30
MAX_LENGTH = 64
TRAIN_SENTENCES = 480
EVAL_SENTENCES = 128
BATCH_SIZE = 8
STEPS = 60
# LoRA on a pretrained LM: 1e-3 lowers the held-out loss within a few dozen steps without the
# overshoot 2e-3 and above show on so few steps (the density term changes only near-zero
# activations, so the same rate serves both runs).
LEARNING_RATE = 1e-3
DENSITY_WEIGHT = 1.0
THRESHOLDS = (1e-6, 1e-4, 1e-3)
ZEROED_TAU = 1e-3  # the LM loss is also measured with |gate| ≤ this set to zero
SEED = 0
IGNORE_INDEX = -100


class _LMCollate:
    """Pads token lists on the right; labels are the input ids with padding ignored."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        length = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = torch.tensor(row)
            attention_mask[index, : len(row)] = 1
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _sentences(tokenizer: Any, train: int, held_out: int) -> tuple[list, list]:
    """Token ids of Rotten-Tomatoes training and test sentences (in a seeded random order)."""
    from peft_core.data import load_text_classification

    data = load_text_classification("rotten_tomatoes", seed=SEED)
    generator = torch.Generator().manual_seed(SEED)

    def pick(split: str, count: int) -> list[list[int]]:
        examples = data[split]
        order = torch.randperm(len(examples), generator=generator)[:count].tolist()
        texts = [examples[i].text for i in order]
        return tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]

    return pick("train", train), pick("test", held_out)


@torch.no_grad()
def lm_loss(model: nn.Module, eval_batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean next-token NLL over every predicted (non-padding) token of ``eval_batches``."""
    model.eval()
    total = tokens = 0.0
    for batch in eval_batches:
        batch = on_device(batch, model)
        count = int(
            (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        )  # the first token is not predicted
        total += float(model(**batch).loss) * count
        tokens += count
    return total / tokens


def evaluate(model: nn.Module, eval_batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """LM loss (plain and with |gate| ≤ ZEROED_TAU zeroed) and gate / gate⊙up density reports."""
    from deft import DensityMonitor, apply_threshold, measure_density

    loss = lm_loss(model, eval_batches)
    with apply_threshold(model, ZEROED_TAU):
        zeroed = lm_loss(model, eval_batches)
    reports = {}
    for gated in ("gate", "product"):
        monitor = DensityMonitor(model, gated=gated)
        reports[gated] = measure_density(
            model, eval_batches, monitor=monitor, thresholds=THRESHOLDS
        )
        monitor.remove()
    return {
        "lm_loss": loss,
        "perplexity": math.exp(loss),
        "lm_loss_gate_zeroed": zeroed,
        "reports": reports,
    }


def train(
    base: nn.Module, train_rows: list, collate: _LMCollate, weight: float, steps: int
) -> tuple[nn.Module, dict[str, Any]]:
    """LoRA on a copy of ``base`` for ``steps`` steps, with ``weight`` · the density loss."""
    from deft import DensityLossCallback, DensityMonitor
    from deft.methods import apply_method
    from peft_core.trainer import Trainer, TrainingArguments

    torch.manual_seed(SEED)  # the same LoRA initialisation for both runs
    model = apply_method(copy.deepcopy(base), "lora")
    curve = LossCurve()
    callbacks: list[Any] = [curve]
    monitor = None
    if weight:
        monitor = DensityMonitor(model, gated="gate")
        callbacks.append(DensityLossCallback(monitor, weight=weight))
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir, max_steps=steps, per_device_batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
            warmup_ratio=0.06, eval_strategy="no", log_every=1, seed=SEED, resume=False,
            progress_bar=False,
        )  # fmt: skip
        started = time.perf_counter()
        summary = Trainer(model, args, train_rows, collate_fn=collate, callbacks=callbacks).train()
        seconds = time.perf_counter() - started
    if monitor is not None:
        monitor.remove()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, {
        "steps": summary["global_step"],
        "train_seconds": seconds,
        "seconds_per_step": seconds / max(1, summary["global_step"]),
        "trainable_params": trainable,
        "loss_curve": curve.points,
    }


def _reductions(after: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Relative and percentage-point density change of ``after`` vs ``reference``, per gated mode."""
    return {
        gated: after["reports"][gated].reduction_vs(reference["reports"][gated])
        for gated in after["reports"]
    }


def _jsonable(state: dict[str, Any]) -> dict[str, Any]:
    return {
        **{key: value for key, value in state.items() if key != "reports"},
        "density": {gated: report.to_dict() for gated, report in state["reports"].items()},
    }


def main(quick: bool = False) -> list[Path]:
    from peft_core.assets import load_offline_causal_lm

    layers = 2 if quick else LAYERS
    steps = 3 if quick else STEPS
    train_count, eval_count = (24, 16) if quick else (TRAIN_SENTENCES, EVAL_SENTENCES)
    base, tokenizer = load_offline_causal_lm(num_hidden_layers=layers)
    base.to("cuda" if torch.cuda.is_available() else "cpu")  # where the Trainer will train
    train_rows, eval_rows = _sentences(tokenizer, train_count, eval_count)
    collate = _LMCollate(tokenizer.pad_token_id)
    eval_batches = [collate(eval_rows[i : i + 16]) for i in range(0, len(eval_rows), 16)]

    states = {"before": evaluate(base, eval_batches)}
    runs = {}
    for name, weight in (("LoRA", 0.0), ("LoRA + DEFT", DENSITY_WEIGHT)):
        model, runs[name] = train(base, train_rows, collate, weight, steps)
        states[name] = evaluate(model, eval_batches)
        _print(name, states[name])
    _print("before", states["before"])
    reductions = {
        "LoRA + DEFT vs LoRA": _reductions(states["LoRA + DEFT"], states["LoRA"]),
        "LoRA + DEFT vs before": _reductions(states["LoRA + DEFT"], states["before"]),
        "LoRA vs before": _reductions(states["LoRA"], states["before"]),
    }
    record = make_record(
        "deft smollm2 gated-mlp density" + (" quick" if quick else ""),
        method="LoRA r=8 (q_proj, v_proj) with and without the DEFT density loss (λ=1, gate)",
        model=f"SmolLM2-135M-Instruct (real weights, GGUF Q4_1 dequantised to fp32), "
        f"{base.config.num_hidden_layers} of 30 layers",
        data=f"Rotten-Tomatoes sentences as LM text: {len(train_rows)} training sentences, "
        f"{len(eval_rows)} held-out test sentences, max length {MAX_LENGTH}",
        config={
            "steps": steps,
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE,
            "warmup_ratio": 0.06,
            "density_weight": DENSITY_WEIGHT,
            "loss_on": "gate activation act(x W_gate)",
            "thresholds": list(THRESHOLDS),
            "zeroed_tau": ZEROED_TAU,
            "layers": base.config.num_hidden_layers,
        },
        seed=SEED,
        train_info=runs,
        eval_info={
            "states": {name: _jsonable(state) for name, state in states.items()},
            "reductions": reductions,
            "metric": "LM loss: mean next-token NLL on held-out sentences (nats); density in % "
            "of non-zero activations, fp32; 'gate' = act(x W_gate), 'product' = act(x W_gate) "
            "⊙ (x W_up)",
        },
    )
    return [write_record(record)]


def _print(name: str, state: dict[str, Any]) -> None:
    gate, product = state["reports"]["gate"], state["reports"]["product"]
    print(
        f"   {name}: LM loss {state['lm_loss']:.4f} (|gate| ≤ {ZEROED_TAU:g} zeroed: "
        f"{state['lm_loss_gate_zeroed']:.4f}); gate density masked {gate.mean('masked'):.2f}%, "
        f"|a|>1e-3 {gate.mean('thresholded@0.001'):.2f}%; gate⊙up |a|>1e-3 "
        f"{product.mean('thresholded@0.001'):.2f}%",
        flush=True,
    )
