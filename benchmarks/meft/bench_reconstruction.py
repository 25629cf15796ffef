"""How exact is the reversible backward on real weights? Reconstruction, gradients, starting point.

MEFT's backward does not keep layer inputs: it rebuilds them from the outputs, dividing by λ and β
at every layer, so float rounding grows ~1/(λβ) per layer on the way down. Tiny random models hide
this; real pre-trained layers, whose residual stream grows from a small embedding, show it. This
suite measures, on the real weights available offline:

- all-MiniLM-L6-v2 (6 post-LN encoder layers), every variant × stream dtype, adapter-init seeds
  0–4: the relative error of each layer's reconstructed inputs (``check_reconstruction=True``)
  in one training step on real Rotten-Tomatoes sentences;
- SmolLM2-135M-Instruct (pre-LN Llama decoder): the same errors on its bottom
  :data:`SMOLLM2_LAYERS` layers; the largest relative difference between the adapters'
  gradients from the reversible backward and from vanilla backprop of the same converted model
  (float64 streams); on all 30 layers, the same gradient difference without and with
  ``save_inputs_every`` (10, 6, 3), and MEFT3's on the bottom layers with every second layer's
  inputs saved; and, on all 30 layers, how far the converted model's logits start from the
  original model's (relative norm of the difference, top-1 next-token agreement) with
  ``adapter_init="zero_up"``.

The bounds in ``tests/test_real_minilm.py`` and ``tests/test_real_smollm2.py`` pin a few of these
figures; this record holds them all. `python -m benchmarks.run meft-reconstruction` (about a
few minutes; ``--quick``: MiniLM, seed 0 only).
"""

from __future__ import annotations

import copy
import random
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from benchmarks.records import make_record, write_record

VARIANTS = ("meft1", "meft2", "meft3")
STREAM_DTYPES = ("float32", "float64")
SEEDS = (0, 1, 2, 3, 4)  # adapter initialisations: the error depends on them
SENTENCES = 16  # real Rotten-Tomatoes test sentences in the batch
SMOLLM2_LAYERS = 4  # bottom decoder layers for the reconstruction and gradient figures
SAVE_INPUTS_EVERY = (None, 10, 6, 3)  # MeftConfig.save_inputs_every on all 30 SmolLM2 layers
SMOLLM2_TEXT = [
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "Water boils at one hundred degrees Celsius at sea level.",
]
RECORD_NAME = "meft reconstruction real weights"


def _meft(model: torch.nn.Module, variant: str, seed: int, **options: Any) -> torch.nn.Module:
    from meft import MeftConfig, get_meft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32-stream precision warnings are what we measure
        torch.manual_seed(seed)  # the adapters' initialisation
        return get_meft_model(model, MeftConfig(variant=variant, **options))


def _errors_after_one_backward(converted: torch.nn.Module, loss_of) -> list[float]:
    from meft import reconstruction_errors

    converted.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the past-tolerance warning: the error is what we record
        loss_of(converted).backward()
    (errors,) = reconstruction_errors(converted).values()
    return errors


def _minilm_batch(quick: bool) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from peft_core.assets import offline_model_path
    from peft_core.data import load_text_classification

    path = offline_model_path("all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)  # the classification head
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    # a seeded sample: the corpus is sorted by rating, so its head is one class
    examples = random.Random(0).sample(
        load_text_classification("rotten_tomatoes", seed=0)["test"], 4 if quick else SENTENCES
    )
    batch = tokenizer(
        [example.text for example in examples],
        padding=True,
        truncation=True,
        max_length=64,
        return_tensors="pt",
    )
    batch["labels"] = torch.tensor([example.label for example in examples])
    return model, batch


def minilm_reconstruction(quick: bool) -> dict[str, Any]:
    """variant -> stream dtype -> per-seed per-layer errors, and layer 0's range over seeds."""
    model, batch = _minilm_batch(quick)
    results: dict[str, Any] = {}
    for variant in VARIANTS:
        for stream_dtype in STREAM_DTYPES:
            per_seed = {}
            for seed in SEEDS[:1] if quick else SEEDS:
                converted = _meft(
                    copy.deepcopy(model), variant, seed,
                    stream_dtype=stream_dtype, check_reconstruction=True,
                )  # fmt: skip
                per_seed[str(seed)] = _errors_after_one_backward(
                    converted, lambda m: m(**batch).loss
                )
            bottom = [errors[0] for errors in per_seed.values()]
            results.setdefault(variant, {})[stream_dtype] = {
                "per_seed": per_seed,
                "layer0_min": min(bottom),
                "layer0_max": max(bottom),
            }
    return results


def _lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return model(**batch, labels=labels).loss


def _bottom_layers(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    small = copy.deepcopy(model)
    small.model.layers = small.model.layers[:layers]
    small.config.num_hidden_layers = layers
    return small


def _worst_gradient_difference(
    model, batch, variant: str, layers: int | None = SMOLLM2_LAYERS, **options: Any
) -> float:
    """Largest relative difference of an adapter gradient, reversible vs vanilla backprop, on the
    bottom ``layers`` layers (None: all of them), float64 streams."""
    grads = {}
    for reversible in (None, 0):
        base = _bottom_layers(model, layers) if layers else copy.deepcopy(model)
        converted = _meft(
            base, variant, 0, stream_dtype="float64", num_reversible_layers=reversible, **options
        )
        converted.train()
        _lm_loss(converted, batch).backward()
        grads[reversible] = {
            name: p.grad.clone() for name, p in converted.named_parameters() if p.requires_grad
        }
        del converted
    return max(
        ((grads[None][name] - grad).norm() / grad.norm().clamp_min(1e-30)).item()
        for name, grad in grads[0].items()
    )


def _saved_inputs_figures(model, batch) -> dict[str, Any]:
    """The worst gradient difference with ``save_inputs_every`` = none, 10, 6, 3 on all layers,
    and MEFT3's on the bottom layers with every second layer's inputs saved."""
    all_layers = {
        variant: {
            str(every): _worst_gradient_difference(
                model, batch, variant, None, save_inputs_every=every
            )
            for every in SAVE_INPUTS_EVERY
        }
        for variant in VARIANTS
    }
    bottom_meft3 = {
        str(every): _worst_gradient_difference(model, batch, "meft3", save_inputs_every=every)
        for every in (None, 2)
    }
    return {"all_layers": all_layers, f"bottom_{SMOLLM2_LAYERS}_layers_meft3": bottom_meft3}


@torch.no_grad()
def _starting_point(model, batch, variant: str) -> dict[str, float]:
    reference = model(**batch).logits
    converted = _meft(copy.deepcopy(model), variant, 0, adapter_init="zero_up").eval()
    logits = converted(**batch).logits
    real = batch["attention_mask"].bool()
    return {
        "relative_logit_deviation": ((logits - reference).norm() / reference.norm()).item(),
        "top1_agreement": (logits.argmax(-1) == reference.argmax(-1))[real].float().mean().item(),
    }


def smollm2_figures() -> dict[str, Any]:
    from peft_core.assets import load_offline_causal_lm

    model, tokenizer = load_offline_causal_lm()
    batch = tokenizer(SMOLLM2_TEXT, padding=True, return_tensors="pt")
    reconstruction: dict[str, Any] = {}
    for variant in VARIANTS:
        for stream_dtype in STREAM_DTYPES:
            converted = _meft(
                _bottom_layers(model, SMOLLM2_LAYERS), variant, 0,
                stream_dtype=stream_dtype, check_reconstruction=True,
            )  # fmt: skip
            reconstruction.setdefault(variant, {})[stream_dtype] = _errors_after_one_backward(
                converted, lambda m: _lm_loss(m, batch)
            )
    return {
        "reconstruction_bottom_layers": reconstruction,
        "worst_gradient_difference_float64_streams": {
            variant: _worst_gradient_difference(model, batch, variant) for variant in VARIANTS
        },
        "worst_gradient_difference_float64_streams_saved_inputs": _saved_inputs_figures(
            model, batch
        ),
        "starting_point_all_layers_zero_up": {
            variant: _starting_point(model, batch, variant) for variant in VARIANTS
        },
        "num_layers": model.config.num_hidden_layers,
    }


def main(quick: bool = False) -> list[Path]:
    start = time.perf_counter()
    eval_info: dict[str, Any] = {"minilm_reconstruction": minilm_reconstruction(quick)}
    if not quick:
        eval_info["smollm2"] = smollm2_figures()
    eval_info["metric"] = (
        "relative error ‖x̂ − x‖ / ‖x‖ of each reversible layer's reconstructed inputs (layer 0 "
        "first) after one training step; gradients: max over adapter tensors of ‖g_rev − g_vanilla‖ "
        "/ ‖g_vanilla‖; starting point: ‖logits − original‖ / ‖original‖ and top-1 agreement "
        "over real tokens"
    )
    name = RECORD_NAME + (" quick" if quick else "")
    record = make_record(
        name,
        method="MEFT1/2/3 reversible backward with check_reconstruction, float32 and float64 streams",
        model="all-MiniLM-L6-v2 (real weights, fp32) and SmolLM2-135M-Instruct (real weights, GGUF "
        "Q4_1 dequantised to fp32)",
        data=f"{4 if quick else SENTENCES} Rotten-Tomatoes test sentences (MiniLM); two English "
        "sentences (SmolLM2)",
        config={
            "variants": list(VARIANTS),
            "stream_dtypes": list(STREAM_DTYPES),
            "seeds": list(SEEDS[:1] if quick else SEEDS),
            "smollm2_layers": SMOLLM2_LAYERS,
            "quick": quick,
        },
        train_info={"seconds": time.perf_counter() - start},
        eval_info=eval_info,
    )
    return [write_record(record)]
