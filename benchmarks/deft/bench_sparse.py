"""DEFT sparse inference: dense MLPs vs deft.sparse at matched activation densities, fp32.

Settings (random init; speed does not depend on trained values, only on the density):

- MLP only: a SmolLM2-135M-shaped gated MLP (hidden 576, FFN 1536, SiLU gate) and a BERT-base
  MLP (768 → 3072 → 768, GELU; intermediate + output, LayerNorm included as in BertOutput).
- End to end: a random Llama backbone of SmolLM2 shape (a few layers, no LM head: with a few
  layers its 49,152-row head would hide the MLPs; the real 30-layer model spends ~60 % of its
  per-token FLOPs in MLPs), decoding after a 32-token prompt held in the KV cache.

Tokens per forward: 1 (single-sequence decoding), 8 and 64 (a chunk of a sequence, as in
speculative decoding or prefill). Densities are made the way users get them: per-layer thresholds
calibrated (deft.thresholding, sequential) on separate random inputs of the same distribution;
the density actually reached on the timed input is recorded. Rows, timed interleaved round by
round so that load from other processes hits every row alike: the dense module; deft.sparse with
strategy "auto" (what sparsify uses by default), "gather" (union of active neurons) and "rows"
(per-token embedding_bag). Median of the samples after a warm-up. The crossover density is the
highest density at and below which a row beats dense. Outputs are checked against the dense model with the
same thresholds applied by hooks (max |difference| recorded).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.records import make_record, write_record
from benchmarks.timing import time_interleaved
from deft import DensityMonitor
from deft.sparse import DEFAULT_DENSE_ABOVE, sparsify
from deft.thresholding import apply_threshold, calibrate_threshold

DENSITIES = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02)
TOKENS = (1, 8, 64)
SPARSE_ROWS = ("auto", "gather", "rows")
PROMPT = 32  # tokens already in the KV cache for end-to-end decoding
SMOLLM2 = dict(
    hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
    vocab_size=49152, hidden_act="silu", max_position_embeddings=2048,
)  # fmt: skip


class _Block(nn.Module):
    """Holds a Llama MLP at ``mlp`` so discovery sees a container, as inside a decoder layer."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlp(hidden)


class _BertFeedForward(nn.Module):
    """BertLayer's feed-forward half: intermediate (dense + GELU), output (dense, residual, LN)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        from transformers.models.bert.modeling_bert import BertIntermediate, BertOutput

        self.intermediate, self.output = BertIntermediate(config), BertOutput(config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(hidden), hidden)


def _mlps() -> dict[str, tuple[Callable[[], nn.Module], int]]:
    from transformers import BertConfig, LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    return {
        "SmolLM2 gated MLP 576/1536": (lambda: _Block(LlamaMLP(LlamaConfig(**SMOLLM2))), 576),
        "BERT-base MLP 768/3072": (lambda: _BertFeedForward(BertConfig()), 768),
    }


def _llama_backbone(num_layers: int) -> nn.Module:
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(**SMOLLM2, num_hidden_layers=num_layers, attn_implementation="sdpa")
    return LlamaModel(config)


def _realized_density(model: nn.Module, call: Callable[[], Any]) -> float:
    """Fraction of non-zero MLP activations (gate for gated MLPs) over every layer of one call."""
    with DensityMonitor(model) as monitor:
        call()
        activations = list(monitor.activations.values())
    nonzero = sum(int(a.count_nonzero()) for a in activations)
    return nonzero / sum(a.numel() for a in activations)


def _measure(
    dense: nn.Module,
    call: Callable[[nn.Module], torch.Tensor],
    taus: dict[str, float],
    rounds: int,
    repeats: int,
) -> dict[str, Any]:
    """Time dense and every sparse row on ``call``; check sparse against thresholded dense."""
    models = {"dense": dense}
    for strategy in SPARSE_ROWS:
        models[f"sparse {strategy}"] = sparsify(copy.deepcopy(dense), taus, strategy=strategy)
    with apply_threshold(dense, taus):
        reference = call(dense)
        density = _realized_density(dense, lambda: call(dense))
    errors = {
        name: float((call(model) - reference).abs().max())
        for name, model in models.items()
        if name != "dense"
    }
    timings = time_interleaved(
        {name: (lambda m=model: call(m)) for name, model in models.items()},
        rounds,
        warmup=2,  # allocator growth, lazy kernel selection
        repeats=repeats,
    )
    return {"realized_density": density, "max_abs_difference": errors, "time_ms": timings}


def _mlp_cases(device: torch.device, densities, tokens, rounds, repeats) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for setting, (build, hidden) in _mlps().items():
        torch.manual_seed(0)
        dense = build().eval().to(device)
        generator = torch.Generator().manual_seed(1)
        calibration = [torch.randn(256, hidden, generator=generator).to(device)]
        results[setting] = {}
        for count in tokens:
            x = torch.randn(count, hidden, generator=generator).to(device)
            results[setting][str(count)] = {}
            for density in densities:
                taus = calibrate_threshold(dense, calibration, density)
                results[setting][str(count)][f"{density:g}"] = _measure(
                    dense, lambda m, x=x: m(x), taus, rounds, repeats
                )
                _print(device, setting, count, density, results[setting][str(count)])
    return results


def _end_to_end(device: torch.device, layers, densities, tokens, rounds, repeats) -> dict[str, Any]:
    from transformers import DynamicCache

    torch.manual_seed(0)
    dense = _llama_backbone(layers).eval().to(device)
    generator = torch.Generator().manual_seed(2)
    vocab = SMOLLM2["vocab_size"]
    calibration = [
        {"input_ids": torch.randint(0, vocab, (4, 64), generator=generator).to(device)}
        for _ in range(2)
    ]
    prompt = torch.randint(0, vocab, (1, PROMPT), generator=generator).to(device)
    # transformers 5.x renames past_key_values to cache (the old name warns)
    parameters = inspect.signature(dense.forward).parameters
    cache_argument = "cache" if "cache" in parameters else "past_key_values"
    setting = f"Llama backbone, SmolLM2 shape, {layers} layers, after a {PROMPT}-token prompt"
    results: dict[str, Any] = {setting: {}}
    for count in tokens:
        new = torch.randint(0, vocab, (1, count), generator=generator).to(device)
        caches: dict[int, Any] = {}

        def step(model: nn.Module, new=new, caches=caches, count=count) -> torch.Tensor:
            # One cache per model, prefilled once; each step appends ``count`` tokens, then the
            # cache is cut back to the prompt so every repeat decodes the same positions.
            cache = caches.get(id(model))
            if cache is None:
                cache = caches[id(model)] = DynamicCache()
                model(prompt, **{cache_argument: cache}, use_cache=True)
            out = model(new, **{cache_argument: cache}, use_cache=True).last_hidden_state
            cache.crop(-count)  # negative: remove that many tokens (every transformers version)
            return out

        results[setting][str(count)] = {}
        for density in densities:
            taus = calibrate_threshold(dense, calibration, density)
            caches.clear()
            results[setting][str(count)][f"{density:g}"] = _measure(
                dense, step, taus, rounds, repeats
            )
            _print(device, setting, count, density, results[setting][str(count)])
    return results


def _print(
    device: torch.device, setting: str, count: int, density: float, by_density: dict
) -> None:
    row = by_density[f"{density:g}"]
    times = ", ".join(f"{name} {t['median_ms']:.3f}" for name, t in row["time_ms"].items())
    print(
        f"   {device.type} x{torch.get_num_threads()} | {setting} | {count} tok | target {density:.0%} "
        f"(got {row['realized_density']:.1%}): {times} ms",
        flush=True,
    )


def crossovers(results: dict[str, Any]) -> dict[str, Any]:
    """Per setting and token count, each sparse row's crossover density (None: never faster).

    The crossover is the highest density d such that the row beats dense at d and at every
    measured density below d: one lucky win at a high density on a noisy machine does not count.
    """
    found: dict[str, Any] = {}
    for setting, by_tokens in results.items():
        for count, by_density in by_tokens.items():
            ascending = sorted(by_density.items(), key=lambda item: float(item[0]))
            crossover = {}
            for name in (f"sparse {strategy}" for strategy in SPARSE_ROWS):
                best = None
                for density, row in ascending:
                    if row["time_ms"][name]["median_ms"] >= row["time_ms"]["dense"]["median_ms"]:
                        break
                    best = float(density)
                crossover[name] = best
            found.setdefault(setting, {})[count] = crossover
    return found


def speedups(results: dict[str, Any]) -> dict[str, Any]:
    """dense median / sparse median per setting, token count, density and row (> 1: faster)."""
    return {
        setting: {
            count: {
                density: {
                    name: row["time_ms"]["dense"]["median_ms"] / timing["median_ms"]
                    for name, timing in row["time_ms"].items()
                    if name != "dense"
                }
                for density, row in by_density.items()
            }
            for count, by_density in by_tokens.items()
        }
        for setting, by_tokens in results.items()
    }


def main(quick: bool = False) -> list[Path]:
    if quick:
        densities, tokens, layers, rounds, repeats = (1.0, 0.3, 0.1, 0.02), (1, 8, 64), 2, 2, 3
    else:
        densities, tokens, layers, rounds, repeats = DENSITIES, TOKENS, 4, 5, 5
    # CPU: one thread (the per-core picture, and robust on a shared machine) and, in the full
    # run, every thread torch would use. Sparse paths are several small ops, each of which waits
    # for every OpenMP thread: on a loaded machine multi-threaded timings of them are erratic.
    all_threads = torch.get_num_threads()
    runs = [("cpu", 1)] if quick else [("cpu", n) for n in sorted({1, all_threads})]
    if torch.cuda.is_available():
        runs.append(("cuda", all_threads))
    results: dict[str, Any] = {}
    try:
        with torch.inference_mode():
            for kind, threads in runs:
                torch.set_num_threads(threads)
                device = torch.device(kind)
                key = f"cpu, {threads} threads" if kind == "cpu" else "cuda"
                results[key] = {
                    **_mlp_cases(device, densities, tokens, rounds, repeats),
                    **_end_to_end(device, layers, densities, tokens, rounds, repeats),
                }
    finally:
        torch.set_num_threads(all_threads)
    record = make_record(
        "deft sparse inference" + (" quick" if quick else ""),
        method="deft.sparse (strategies auto / gather / rows) vs the dense modules, fp32",
        model="SmolLM2-135M-shaped gated MLP (576/1536) and BERT-base MLP (768/3072); "
        f"{layers}-layer random Llama backbone of SmolLM2 shape (no LM head)",
        data="random N(0,1) hidden states / random token ids; densities made by per-layer "
        "thresholds calibrated on separate random inputs (deft.thresholding, sequential)",
        config={
            "densities": list(densities),
            "tokens": list(tokens),
            "end_to_end_layers": layers,
            "prompt_tokens": PROMPT,
            "rounds": rounds,
            "repeats_per_round": repeats,
            "samples_per_row": rounds * repeats,
            "dense_above": DEFAULT_DENSE_ABOVE,
            "runs": list(results),
            "dtype": "float32",
        },
        seed=0,
        train_info={"time_ms": results},
        eval_info={
            "crossover_density": {device: crossovers(r) for device, r in results.items()},
            "speedup_dense_over_sparse": {device: speedups(r) for device, r in results.items()},
            "notes": [
                "timings on a shared machine are noisy; rows are interleaved per round, read ratios",
                "crossover: highest density d at which the row's median beats dense at d and at "
                "every lower density measured (None: never)",
                "realized_density: non-zero fraction of the MLP activations (gate for gated MLPs) "
                "over every layer on the timed input, after thresholding",
                "max_abs_difference: sparse output vs the dense model with the same thresholds "
                "applied by hooks",
            ],
        },
    )
    return [write_record(record)]


def render_section(record: dict[str, Any]) -> list[str]:
    """Markdown for benchmarks/report.py: dense/sparse-auto speed-up per density, and crossovers."""
    lines = []
    for device, by_setting in record["eval_info"]["speedup_dense_over_sparse"].items():
        crossover = record["eval_info"]["crossover_density"][device]
        for setting, by_tokens in by_setting.items():
            # JSON keys come back sorted as strings: order tokens and densities by value
            counts = sorted(by_tokens, key=int)
            densities = sorted(by_tokens[counts[0]], key=float, reverse=True)
            lines += [
                f"**{setting}** ({device}): dense time / sparse time (auto; > 1 = sparse faster)",
                "",
                "| tokens | " + " | ".join(f"{float(d):.0%}" for d in densities) + " | crossover |",
                "|---|" + "---:|" * (len(densities) + 1),
            ]
            for count in counts:
                cells = [f"{by_tokens[count][d]['sparse auto']:.2f}" for d in densities]
                best = crossover[setting][count]["sparse auto"]
                shown = "never" if best is None else f"{best:.0%}"
                lines.append(f"| {count} | " + " | ".join(cells) + f" | {shown} |")
            lines.append("")
    return lines
