"""MEFT vs the usual ways to fine-tune, side by side on a BERT-base-shaped model.

Rows: full fine-tuning, LoRA (Hugging Face peft, r=8 on Q/V), LoRA + activation checkpointing,
bottleneck adapters with vanilla backprop, MEFT1/2/3 with vanilla backprop of the same architecture
(num_reversible_layers=0), MEFT1/2/3 reversible, and MEFT1 with its top layer run by vanilla
backprop (num_reversible_layers = layers - 1). Per row: activation memory (bytes autograd saves,
exact), peak memory (GPU: torch.cuda peak; CPU: the rise of the process's RSS high-water mark
during the first training step, above its RSS once the model is built and freed memory trimmed,
each row in a fresh process), step time (forward + backward + AdamW,
median of 5 steps after 1 warm-up on a CPU, of 20 after 3 on a GPU) and forward time without
autograd, each with its calls' kernel CPU time and page faults. Ratios are to full fine-tuning in
the same run. On a CPU the rows are timed after the peak is measured with freed memory kept
(:func:`benchmarks.allocator.keep_freed_memory`), as PyTorch's caching allocator keeps it on a
GPU: under glibc's default allocator a step that saves gigabytes of activations gets them from the
kernel afresh every step, which at 8 x 512 tokens cost a vanilla step about 7 s of kernel CPU time
that a reversible step does not pay (the `meft-allocator` suite).

The estimate for reversible rows: counting operations, a reversible step is a vanilla step plus
one more forward (the graph-free forward; the backward then recomputes each layer with autograd
on, which replaces the vanilla forward), so its time ratio to vanilla backprop of the same
architecture is about 1 + forward / vanilla step. With a frozen backbone the backward computes
input gradients only (no weight-gradient matmuls), forward is about half of a vanilla step, and
the estimate is about 1.5: the record states it per row (`floor_ratio_to_vanilla`, named when it
was taken for a floor) next to the measured ratio. It counts arithmetic only. The rows run one
after another, each in a fresh process, so load that comes and goes falls on some rows and not
others: `meft-step-time` times the reversible rows and vanilla backprop side by side, round by
round, for the step-time verdict. Leaving the top k layers to vanilla backprop skips their
recompute (estimate 1 + (L - k)/L · forward / step) for k layers' activations, still independent
of depth.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.allocator import keep_freed_memory, kernel_usage, usage_fields
from benchmarks.process_memory import peak_rss_above_current
from benchmarks.records import add_run_arguments, configure, make_record, write_record

MIB = 2**20
ROWS = [
    "full fine-tuning",
    "LoRA r=8 (q,v)",
    "LoRA + checkpointing",
    "adapters (vanilla backprop)",
    "MEFT1 vanilla backprop",
    "MEFT1",
    "MEFT2 vanilla backprop",
    "MEFT2",
    "MEFT3 vanilla backprop",
    "MEFT3",
    "MEFT1 top layer vanilla",
]


def _bert(num_layers: int):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(num_hidden_layers=num_layers, num_labels=2, attn_implementation="sdpa")
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


def _attach_adapters(model):
    """Parallel FFN adapters (r=8) on every layer via forward hooks: plain PEFT adapters."""
    from peft_core import BottleneckAdapter, freeze

    adapters = torch.nn.ModuleList(BottleneckAdapter(768, 8) for _ in model.bert.encoder.layer)
    model.add_module("adapters", adapters)
    for layer, adapter in zip(model.bert.encoder.layer, adapters, strict=True):
        layer.output.register_forward_hook(
            lambda module, inputs, out, a=adapter: out + a(inputs[1])
        )
    freeze(model, trainable=["adapters.*", "classifier.*"])
    return model


def build(row: str, num_layers: int):
    model = _bert(num_layers)
    if row == "full fine-tuning":
        return model
    if row.startswith("LoRA"):
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=8, lora_alpha=16, target_modules=["query", "value"], modules_to_save=["classifier"]
        )
        model = get_peft_model(model, config)
        if "checkpointing" in row:
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        return model
    if row.startswith("adapters"):
        return _attach_adapters(model)
    from meft import MeftConfig, get_meft_model

    variant, _, how = row.partition(" ")
    # None: every layer reversible (the config's default)
    reversible = {"vanilla backprop": 0, "top layer vanilla": num_layers - 1}.get(how)
    every = int(how.partition("=")[2]) if how.startswith("save_inputs_every=") else None
    # float32 is MeftConfig's default (the paper's arithmetic); float64 is what `meft train` uses
    stream_dtype = "float64" if how == "float64 streams" else "float32"
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # the float32 reconstruction warning is the point of another table
        return get_meft_model(
            model,
            MeftConfig(
                variant=variant.lower(),
                num_reversible_layers=reversible,
                save_inputs_every=every,
                stream_dtype=stream_dtype,
            ),
        )


def random_inputs(batch: int, length: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The same seeded batch of random tokens for every row (label 0: a step's cost does not
    depend on it)."""
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(1000, 30000, (batch, length), generator=generator),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "labels": torch.zeros(batch, dtype=torch.long),
    }
    return {name: tensor.to(device) for name, tensor in inputs.items()}


def training_step(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Callable[[], None]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def forward_without_autograd(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor]
) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            model(**inputs)

    return forward


def measure_row(
    row: str, num_layers: int, batch: int, length: int, repeats: int, time_it: bool
) -> dict[str, Any]:
    """Runs in a fresh process: build, measure saved-tensor bytes, then time training steps."""
    from peft_core import count_parameters, cuda_peak_memory, measure_activation_memory

    torch.set_num_threads(torch.get_num_threads())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build(row, num_layers).to(device).train()
    inputs = random_inputs(batch, length, device)
    trainable, total = count_parameters(model)
    step = training_step(model, inputs)
    result: dict[str, Any] = {"row": row, "trainable_params": trainable, "total_params": total}
    # The activation forward first: it also pays the libraries' one-time set-up, which is not
    # training memory. Then the first step, which allocates the optimizer state and reaches the
    # backward peak, measured above an RSS from which the forward's freed memory has been
    # trimmed (before trimming, that memory, reused by the step, hid about a tenth of full
    # fine-tuning's peak).
    result["activation_bytes"] = measure_activation_memory(lambda: model(**inputs).loss, model)
    result["peak_bytes_above_model"] = peak_rss_above_current(step)
    if device == "cuda":
        # the second step: above the model, its optimizer state and the inputs
        result["cuda_peak_bytes"] = cuda_peak_memory(step)
    if time_it:
        if device == "cuda":
            # A GPU step takes milliseconds and its first ones pay for kernel selection and the
            # caching allocator: more warm-up and repeats cost nothing there.
            warmup, repeats = 3, max(repeats, 20)
        else:
            # The peak is measured; from here on freed memory stays in the process, as PyTorch's
            # caching allocator keeps it on a GPU, so that the times compare the rows' arithmetic
            # rather than the page faults of activations fetched from the kernel afresh every
            # step (benchmarks.allocator). The warm-up step grows the heap to the step's size.
            result["allocator"] = keep_freed_memory()
            warmup = 1
        result["step_time_s"] = _timed(step, warmup, repeats)
        forward = forward_without_autograd(model, inputs)
        result["forward_time_s"] = _timed(forward, warmup, repeats)
    return result


def _timed(fn: Callable[[], None], warmup: int, repeats: int) -> dict[str, Any]:
    """peft-core's ``time_step`` summary, with each timed call's kernel CPU time and minor page
    faults (which show whether the step still gets its memory from the kernel)."""
    from peft_core import time_step

    wrapped, usage = kernel_usage({"call": fn})
    timing = time_step(wrapped["call"], warmup=warmup, repeats=repeats).to_dict()
    return {**timing, **usage_fields(usage["call"][warmup:])}


def _in_fresh_process(*args) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(measure_row, args)


def table(
    num_layers: int, batch: int, length: int, repeats: int, rows: list[str]
) -> dict[str, Any]:
    measured = {}
    for row in rows:
        print(f"   {num_layers} layers, {batch}x{length}: {row} ...", flush=True)
        measured[row] = _in_fresh_process(row, num_layers, batch, length, repeats, True)
    full = measured["full fine-tuning"]
    for row, values in measured.items():
        values["activation_ratio_to_full"] = values["activation_bytes"] / full["activation_bytes"]
        values["peak_ratio_to_full"] = (
            values["peak_bytes_above_model"] / full["peak_bytes_above_model"]
            if values["peak_bytes_above_model"] and full["peak_bytes_above_model"]
            else None
        )
        if "cuda_peak_bytes" in values:
            values["cuda_peak_ratio_to_full"] = values["cuda_peak_bytes"] / full["cuda_peak_bytes"]
        values["time_ratio_to_full"] = (
            values["step_time_s"]["median_s"] / full["step_time_s"]["median_s"]
        )
        vanilla = measured.get(f"{row.split()[0]} vanilla backprop")
        if vanilla is not None and vanilla is not values:
            _add_vanilla_ratios(values, vanilla, row, num_layers)
        versus_vanilla = (
            f", {values['time_ratio_to_vanilla_same_architecture']:.2f}x vanilla "
            f"(estimate {values['floor_ratio_to_vanilla']:.2f}x)"
            if "floor_ratio_to_vanilla" in values
            else ""
        )
        print(
            f"   {row:>28}: activations {values['activation_bytes'] / MIB:8.1f} MiB "
            f"({values['activation_ratio_to_full']:.3f}x), step "
            f"{values['step_time_s']['median_s']:.2f} s{versus_vanilla}",
            flush=True,
        )
    return measured


def _add_vanilla_ratios(
    values: dict[str, Any], vanilla: dict[str, Any], row: str, num_layers: int
) -> None:
    """Measured step-time ratio to vanilla backprop of the same architecture, and the estimate
    1 + forward / vanilla step (see the module docstring)."""
    step = vanilla["step_time_s"]["median_s"]
    values["time_ratio_to_vanilla_same_architecture"] = values["step_time_s"]["median_s"] / step
    recomputed = (num_layers - 1) / num_layers if "top layer vanilla" in row else 1.0
    extra_forward = recomputed * vanilla["forward_time_s"]["median_s"]
    values["floor_ratio_to_vanilla"] = 1 + extra_forward / step


def depth_sweep(depths: list[int], batch: int, length: int) -> dict[str, dict[int, int]]:
    sweep: dict[str, dict[int, int]] = {}
    rows = ("full fine-tuning", "LoRA r=8 (q,v)", "MEFT1", "MEFT2", "MEFT3")
    # What deep stacks need (see MeftConfig.save_inputs_every): memory grows with depth again.
    rows += ("MEFT1 save_inputs_every=6",)
    for row in rows:
        sweep[row] = {}
        for depth in depths:
            sweep[row][depth] = _in_fresh_process(row, depth, batch, length, 1, False)[
                "activation_bytes"
            ]
    return sweep


def main(
    quick: bool = False,
    lengths: list[int] | None = None,
    depth_sweep_too: bool = True,
    tables: bool = True,
) -> list[Path]:
    repeats = 2 if quick else 5
    batch = 2 if quick else 8
    lengths = lengths or ([32] if quick else [128, 512])
    layers = 2 if quick else 12
    depths = [2, 4] if quick else [6, 12, 24]
    rows = (
        ROWS
        if not quick
        else ["full fine-tuning", "MEFT1 vanilla backprop", "MEFT1", "MEFT1 top layer vanilla"]
    )
    paths = []
    for length in lengths if tables else []:
        load_before = os.getloadavg()[0]
        measured = table(layers, batch, length, repeats, rows)
        # Set in each row's process (CPU only); the same everywhere unless mallopt failed in one.
        allocators = sorted({row["allocator"] for row in measured.values() if "allocator" in row})
        record = make_record(
            f"meft memory and speed bert-base {layers}L {batch}x{length}"
            + (" quick" if quick else ""),
            method="MEFT vs full FT, LoRA, checkpointing, adapters",
            model=f"BertForSequenceClassification, random init, {layers}x768, 12 heads, sdpa attention",
            data=f"random tokens, batch {batch} x {length}, fp32",
            config={"allocator": "; ".join(allocators)} if allocators else None,
            seed=0,
            train_info={
                "rows": measured,
                "step": "forward + backward + AdamW",
                # Step times are only comparable on a quiet machine: the load says how quiet.
                "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
            },
        )
        paths.append(write_record(record))
    if not depth_sweep_too:
        return paths
    sweep = depth_sweep(depths, batch, lengths[0])
    ratios = {row: values[depths[-1]] / values[depths[-2]] for row, values in sweep.items()}
    record = make_record(
        "meft activation memory depth sweep" + (" quick" if quick else ""),
        method="MEFT vs full FT and LoRA",
        model="BertForSequenceClassification, random init, hidden 768",
        data=f"random tokens, batch {batch} x {lengths[0]}, fp32",
        seed=0,
        train_info={
            "activation_bytes_by_depth": sweep,
            f"ratio_{depths[-1]}_to_{depths[-2]}_layers": ratios,
        },
    )
    paths.append(write_record(record))
    return paths


if __name__ == "__main__":
    # One table at a time on a slow machine (or within a device machine's limit per command):
    # python -m benchmarks.meft.bench_memory_speed --lengths 512 --no-depth-sweep
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser)
    parser.add_argument("--lengths", type=int, nargs="+", default=None)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--no-depth-sweep", action="store_true", help="the tables only")
    what.add_argument(
        "--depth-sweep-only", action="store_true", help="the sweep only (at the first length)"
    )
    args = parser.parse_args()
    configure(quick=args.quick, resume=args.resume, directory=args.output_dir)
    for path in main(
        args.quick, args.lengths, not args.no_depth_sweep, tables=not args.depth_sweep_only
    ):
        print(f"   wrote {path}")
