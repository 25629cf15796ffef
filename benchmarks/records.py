"""One JSON record per benchmark run, shaped like Hugging Face peft's method_comparison results.

``run_info`` says what ran where (method, config, model, data, seed, library versions, device),
``train_info`` what training cost (step times, memory, parameter counts, loss curve) and
``eval_info`` what it achieved (task metric, plus method-specific figures).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import re
import statistics
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).parent / "results"
_TRACKED = (
    "peft-core",
    "meft",
    "deft-peft",
    "point-peft",
    "torch",
    "transformers",
    "accelerate",
    "peft",
    "timm",
    "bitsandbytes",
)


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _TRACKED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_description() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    info["kind"] = "cuda" if torch.cuda.is_available() else "cpu"
    return info


def make_record(
    name: str,
    *,
    method: str,
    model: str,
    data: str,
    config: dict[str, Any] | None = None,
    seed: int | None = None,
    train_info: dict[str, Any] | None = None,
    eval_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "run_info": {
            "method": method,
            "config": config or {},
            "model": model,
            "data": data,
            "seed": seed,
            "versions": library_versions(),
            "device": device_description(),
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "train_info": train_info or {},
        "eval_info": eval_info or {},
    }


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def record_path(name: str, directory: Path = RESULTS_DIR, device: str | None = None) -> Path:
    """Where the record called ``name`` measured on ``device`` (default: this one) is written."""
    return directory / f"{slug(name)}-{device or device_description()['kind']}.json"


def write_record(record: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    # atomic: a benchmark killed while writing keeps its previous record, so it can resume
    from peft_core import atomic_write_text

    directory.mkdir(parents=True, exist_ok=True)
    path = record_path(record["name"], directory, record["run_info"]["device"]["kind"])
    text = json.dumps(_strict_json(record), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return path


def _strict_json(value: Any) -> Any:
    """``value`` with non-finite floats as the strings "nan", "inf", "-inf": Python writes them as
    bare NaN / Infinity, which strict JSON readers (jq, browsers) refuse."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value


def read_matching_record(
    name: str,
    config: dict[str, Any],
    directory: Path = RESULTS_DIR,
    ignoring: tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """The record an earlier (possibly interrupted) run of ``name`` wrote on this device with
    this ``config``, or None: what a benchmark resumes from. Keys in ``ignoring`` may differ
    (a suite that records one run per seed can resume when more seeds are asked for)."""
    path = record_path(name, directory)
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return (
        record
        if _without(record["run_info"]["config"], ignoring) == _without(config, ignoring)
        else None
    )


def _without(config: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in keys}


def read_records(directory: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max of runs over seeds.

    Example:
        >>> summary([1.0, 2.0, 3.0])
        {'mean': 2.0, 'std': 1.0, 'min': 1.0, 'max': 3.0}
    """
    values = [float(v) for v in values]
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }
