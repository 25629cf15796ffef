"""Point-MAE classifier cost: forward and training step, split into grouping / patch encoder /
transformer, with activation memory, at the official sizes and at the small pre-training size.

Configurations (batch 32; ``--quick``: batch 4, the 1,024-point ones only):

- official 12 x 384, 6 heads, 1,024 points in 64 patches of 32 (ModelNet40 fine-tuning);
- official 12 x 384, 6 heads, 2,048 points in 128 patches of 32 (ScanObjectNN fine-tuning);
- small 4 x 96, 1,024 points in 32 patches of 16 (``PointTransformerConfig.small``).

Rows, timed side by side and interleaved round by round (load from other processes on a shared
machine then hits every row alike): ``forward`` (eval mode, no autograd) and its stages
``grouping`` (FPS + kNN), ``patch encoder`` (mini-PointNet) and ``transformer`` (positions, cls,
blocks, norm, head); ``train step`` (train mode: forward, cross-entropy, backward, AdamW step)
and its stages, each forward+backward on its own: ``patch encoder fwd+bwd``, ``transformer
fwd+bwd``, plus ``AdamW step``. Activation memory is what autograd saves for backward
(``peft_core.measure_activation_memory``: exact, deterministic, CPU too); on CUDA the peak
allocated during a training step is added.

    python -m benchmarks.point.bench_backbone --quick            # CPU (+ CUDA when present)
    python -m benchmarks.point.bench_backbone --devices cuda     # full sizes, GPU rows only
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.records import add_run_arguments, configure, make_record, write_record
from benchmarks.timing import time_interleaved
from peft_core import count_parameters, cuda_peak_memory, measure_activation_memory
from point_peft.models import PointMAE, PointTransformerConfig, pool_cls_and_max

MIB = 2**20


def configurations(quick: bool) -> dict[str, tuple[PointTransformerConfig, int]]:
    """Name -> (architecture, points per cloud)."""
    configs = {
        "official 12x384 N1024 G64 k32": (PointTransformerConfig.point_mae(num_classes=40), 1024),
        "official 12x384 N2048 G128 k32": (
            PointTransformerConfig.point_mae(num_groups=128, num_classes=15),
            2048,
        ),
        "small 4x96 N1024 G32 k16": (PointTransformerConfig.small(num_classes=40), 1024),
    }
    if quick:
        del configs["official 12x384 N2048 G128 k32"]
    return configs


def transformer_and_head(model: PointMAE, tokens: torch.Tensor, centers: torch.Tensor):
    """Everything after the patch encoder: positions, cls token, blocks, final norm, head."""
    tokens, pos = model.prepend_cls(tokens, model.pos_embed(centers))
    return model.cls_head_finetune(pool_cls_and_max(model.norm(model.blocks(tokens, pos))))


def _rows(
    model: PointMAE, points: torch.Tensor, labels: torch.Tensor
) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]:
    """(eval rows, train rows): callables that each run one measured piece of work."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    with torch.no_grad():
        centers, neighborhoods, _ = model.group(points)
        tokens = model.embed_patches(neighborhoods)

    def no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run():
            with torch.no_grad():
                return fn()

        return run

    def backward(loss: torch.Tensor) -> None:
        loss.backward()
        model.zero_grad(set_to_none=True)

    def train_step() -> None:
        loss = model.loss(model(points), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Gradients of the right shapes, kept aside: the AdamW row then times the update alone
    # (values do not change its cost), without allocating them each time.
    gradients = [(p, torch.zeros_like(p)) for p in model.parameters() if p.requires_grad]

    def adamw_step() -> None:
        for parameter, gradient in gradients:
            parameter.grad = gradient
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    eval_rows = {
        "forward": no_grad(lambda: model(points)),
        "grouping": no_grad(lambda: model.group(points)),
        "patch encoder": no_grad(lambda: model.embed_patches(neighborhoods)),
        "transformer": no_grad(lambda: transformer_and_head(model, tokens, centers)),
    }
    train_rows = {
        "train step": train_step,
        "grouping": no_grad(lambda: model.group(points)),
        "patch encoder fwd+bwd": lambda: backward(model.embed_patches(neighborhoods).sum()),
        "transformer fwd+bwd": lambda: backward(
            model.loss(transformer_and_head(model, tokens, centers), labels)
        ),
        "AdamW step": adamw_step,
    }
    return eval_rows, train_rows


def _shares(times: dict[str, dict[str, float]], total: str, parts: list[str]) -> dict[str, float]:
    whole = times[total]["median_ms"]
    shares = {f"{part} / {total}": times[part]["median_ms"] / whole for part in parts}
    shares[f"sum of parts / {total}"] = sum(times[p]["median_ms"] for p in parts) / whole
    return shares


def _activation_mib(model: PointMAE, points: torch.Tensor, labels: torch.Tensor) -> dict:
    model.train()
    with torch.no_grad():
        centers, neighborhoods, _ = model.group(points)
        tokens = model.embed_patches(neighborhoods)
    measured = {
        "train step": lambda: model.loss(model(points), labels),
        "patch encoder": lambda: model.embed_patches(neighborhoods).sum(),
        "transformer": lambda: model.loss(transformer_and_head(model, tokens, centers), labels),
    }
    return {name: measure_activation_memory(fn, model) / MIB for name, fn in measured.items()}


def measure(
    config: PointTransformerConfig, num_points: int, batch: int, device: str, rounds: int
) -> dict[str, Any]:
    torch.manual_seed(0)
    model = PointMAE(config).to(device)
    generator = torch.Generator().manual_seed(0)
    points = (torch.rand(batch, num_points, 3, generator=generator) * 2 - 1).to(device)
    labels = torch.randint(config.num_classes, (batch,), generator=generator).to(device)
    eval_rows, train_rows = _rows(model, points, labels)
    model.eval()
    forward = time_interleaved(eval_rows, rounds, warmup=2, keep_max=True)
    model.train()
    train = time_interleaved(train_rows, rounds, warmup=2, keep_max=True)
    result: dict[str, Any] = {
        "forward_ms": forward,
        "train_ms": train,
        "forward_shares": _shares(forward, "forward", ["grouping", "patch encoder", "transformer"]),
        "train_shares": _shares(
            train,
            "train step",
            ["grouping", "patch encoder fwd+bwd", "transformer fwd+bwd", "AdamW step"],
        ),
        "activation_mib": _activation_mib(model, points, labels),
        "params": count_parameters(model)[1],
        "clouds_per_second_train": batch / (train["train step"]["median_ms"] / 1e3),
    }
    if device == "cuda":  # after the timings: AdamW's state already exists, as in training
        result["cuda_peak_train_step_mib"] = cuda_peak_memory(train_rows["train step"]) / MIB
    return result


def main(quick: bool = False, devices: list[str] | None = None) -> list[Path]:
    batch, rounds = (4, 5) if quick else (32, 7)
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    paths = []
    for device in devices:
        results = {}
        for key, (config, num_points) in configurations(quick).items():
            results[key] = measured = measure(config, num_points, batch, device, rounds)
            step, fwd = measured["train_ms"]["train step"], measured["forward_ms"]["forward"]
            print(
                f"   {device} {key} B{batch}: forward {fwd['median_ms']:.1f} ms, train step "
                f"{step['median_ms']:.1f} ms, activations "
                f"{measured['activation_mib']['train step']:.1f} MiB"
            )
            shares = measured["train_shares"]
            print("      train shares: " + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()))
        record = make_record(
            "point backbone" + (" quick" if quick else ""),
            method="Point-MAE classifier (point_peft.models.PointMAE), full fine-tuning step",
            model="Point-MAE official 12x384 and small 4x96, random init",
            data=f"uniform random clouds in [-1, 1]^3, float32, batch {batch}, seed 0",
            config={
                "batch": batch,
                "rounds": rounds,
                "warmup": 2,
                "device": device,
                "configs": {
                    key: {"num_points": n, **config.to_dict()}
                    for key, (config, n) in configurations(quick).items()
                },
            },
            seed=0,
            train_info={key: _train_part(value) for key, value in results.items()},
            eval_info={
                "shares": {
                    key: {"forward": v["forward_shares"], "train": v["train_shares"]}
                    for key, v in results.items()
                },
                "notes": [
                    "stages are timed on their own; their sum is close to the whole when the "
                    "split is faithful (see 'sum of parts')",
                    "activation memory excludes parameters and buffers",
                    "timings on a shared machine are noisy: rows are interleaved per round",
                ],
            },
        )
        # The record is named after the device it measured, which on a GPU machine is not
        # always the machine's own kind (its CPU rows).
        record["run_info"]["device"]["kind"] = device
        paths.append(write_record(record))
    return paths


def _train_part(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in ("forward_shares", "train_shares")}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=None)
    arguments = parser.parse_args()
    configure(quick=arguments.quick, resume=arguments.resume, directory=arguments.output_dir)
    for written in main(arguments.quick, arguments.devices):
        print(f"   wrote {written}")
