"""One JSON record per benchmark run, shaped like Hugging Face peft's method_comparison results.

``run_info`` says what ran where (method, config, model, data, seed, library versions, the
commit, device), ``train_info`` what training cost (step times, memory, parameter counts, loss
curve) and ``eval_info`` what it achieved (task metric, plus method-specific figures).

Records land in :func:`output_dir` (``benchmarks/results/``, or ``benchmarks/results-quick/`` for a
``--quick`` run; ``python -m benchmarks.run --output-dir DIR`` picks another). A suite resumes an
earlier record only when asked to (``--resume``, :func:`allow_resume`), and only one measured with
the same configuration on the same device; a resumed record keeps the provenance of the run that
started it and lists each invocation that resumed it under ``run_info.resumed``.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import math
import platform
import re
import statistics
import subprocess
from argparse import ArgumentParser
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

BENCHMARKS_DIR = Path(__file__).parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
QUICK_RESULTS_DIR = BENCHMARKS_DIR / "results-quick"  # ignored by git; never in the report
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
# Our own packages are installed editable: their installed metadata keeps the version of the
# install, not the one of the source that runs, so theirs is read from the imported module.
_OWN_MODULES = {
    "peft-core": "peft_core",
    "meft": "meft",
    "deft-peft": "deft",
    "point-peft": "point_peft",
}
# What a record has to share with this machine to be resumed here (cuda_device when either has it).
_DEVICE_KEYS = ("kind", "cpu", "torch_threads", "cuda_device", "python")
# Written by the report (and the records themselves): not a change to the code that measured.
_NOT_CODE = ("results", "REPORT.md", "plots")

_settings: dict[str, Any] = {"output_dir": RESULTS_DIR, "resume": False}
# record name -> (the earlier record this process resumed, this invocation's `resumed` entry)
_resumed: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}


def set_output_dir(directory: Path | str) -> None:
    """Where records are written to and resumed from from now on in this process."""
    _settings["output_dir"] = Path(directory)


def output_dir() -> Path:
    return _settings["output_dir"]


def allow_resume(allowed: bool = True) -> None:
    """Let :func:`read_matching_record` return an earlier record (``--resume``); off by default,
    so that a rerun measures afresh instead of silently reusing earlier numbers."""
    _settings["resume"] = allowed


def resume_allowed() -> bool:
    return _settings["resume"]


def add_run_arguments(parser: ArgumentParser) -> None:
    """``--quick``, ``--resume`` and ``--output-dir``, for every command that runs a suite."""
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a record an interrupted earlier run wrote with the same configuration on "
        "this device (default: measure afresh and overwrite it)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"where records are written and resumed from (default: {_shown(RESULTS_DIR)}, "
        f"or {_shown(QUICK_RESULTS_DIR)} with --quick, which the report leaves out)",
    )


def configure(*, quick: bool, resume: bool, directory: Path | str | None = None) -> Path:
    """Apply the arguments of :func:`add_run_arguments` (``directory``: ``--output-dir``); the
    folder records go to."""
    set_output_dir(directory or (QUICK_RESULTS_DIR if quick else RESULTS_DIR))
    allow_resume(resume)
    code_version()  # read now: files edited while the suites run did not measure anything
    return output_dir()


def _shown(path: Path) -> str:
    return f"{path.parent.name}/{path.name}/"


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _TRACKED:
        if name in _OWN_MODULES:
            try:
                module = importlib.import_module(_OWN_MODULES[name])
            except ImportError:
                continue
            version = getattr(module, "__version__", None)
            if version is not None:
                versions[name] = str(version)
                continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@cache
def code_version() -> dict[str, Any] | None:
    """The commit of the checkout the benchmarks run from, and whether it had uncommitted changes
    (records, the report and its plots aside); None outside a git checkout or without git.

    Read once per process: the code that measures is the code imported when it started.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=BENCHMARKS_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        here = BENCHMARKS_DIR.resolve().relative_to(top)
        excluded = [f":(exclude){(here / part).as_posix()}" for part in _NOT_CODE]
        changes = git("-C", str(top), "status", "--porcelain", "--", ".", *excluded)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    return {"sha": sha, "dirty": bool(changes)}


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
    """The record ``name``; when this process resumed an earlier record of that name
    (:func:`read_matching_record`), it keeps that record's provenance (``created_at``, ``commit``,
    ``versions``, ``device``) and adds this invocation to its ``resumed`` list."""
    run_info: dict[str, Any] = {
        "method": method,
        "config": config or {},
        "model": model,
        "data": data,
        "seed": seed,
        "versions": library_versions(),
        "commit": code_version(),
        "device": device_description(),
        "created_at": _now(),
    }
    if name in _resumed:
        earlier, invocation = _resumed[name]
        started = earlier["run_info"]
        for key in ("versions", "device", "created_at"):
            run_info[key] = started[key]
        run_info["commit"] = started.get("commit")  # None: recorded before commits were
        run_info["resumed"] = [*started.get("resumed", []), invocation]
    return {
        "name": name,
        "run_info": run_info,
        "train_info": train_info or {},
        "eval_info": eval_info or {},
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def record_path(name: str, directory: Path | None = None, device: str | None = None) -> Path:
    """Where the record called ``name`` measured on ``device`` (default: this one) is written, in
    ``directory`` (default: :func:`output_dir`)."""
    directory = output_dir() if directory is None else directory
    return directory / f"{slug(name)}-{device or device_description()['kind']}.json"


def write_record(record: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``record`` (to :func:`output_dir` by default); a resumed record that gained nothing
    since it was read is left as it was, so that a rerun with nothing left to measure changes
    nothing."""
    # atomic: a benchmark killed while writing keeps its previous record, so it can resume
    from peft_core import atomic_write_text

    directory = output_dir() if directory is None else directory
    path = record_path(record["name"], directory, record["run_info"]["device"]["kind"])
    record = _strict_json(record)
    if record["name"] in _resumed and _unchanged(record, _resumed[record["name"]][0]):
        print(f"   {path.name}: nothing new since it was resumed, left as it was", flush=True)
        return path
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return path


def _unchanged(record: dict[str, Any], earlier: dict[str, Any]) -> bool:
    def without_resumed(r: dict[str, Any]) -> dict[str, Any]:
        info = {k: v for k, v in r["run_info"].items() if k != "resumed"}
        return json.loads(json.dumps({**r, "run_info": info}))

    return without_resumed(record) == without_resumed(earlier)


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
    directory: Path | None = None,
    ignoring: tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """The record an earlier (possibly interrupted) run of ``name`` wrote on this device with
    this ``config``, or None: what a benchmark resumes from. Keys in ``ignoring`` may differ
    (a suite that records one run per seed can resume when more seeds are asked for).

    None unless resuming is allowed (``--resume``, :func:`allow_resume`), and None for a record
    measured on another device (kind, CPU, torch threads, CUDA device, Python), with one line
    saying why. A record returned here is resumed: :func:`make_record` keeps its provenance.
    """
    _resumed.pop(name, None)
    path = record_path(name, directory)
    if not path.is_file():
        return None
    if not resume_allowed():
        print(f"   {path.name} exists: measuring afresh (--resume would continue it)", flush=True)
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    recorded_config = record["run_info"]["config"]
    config = json.loads(json.dumps(_strict_json(config)))  # as written: tuples as lists, ...
    differing = sorted(
        key
        for key in {*recorded_config, *config} - set(ignoring)
        if recorded_config.get(key, _MISSING) != config.get(key, _MISSING)
    )
    if differing:
        print(f"   not resuming {path.name}: its configuration differs in {', '.join(differing)}",
              flush=True)  # fmt: skip
        return None
    recorded, here = record["run_info"]["device"], device_description()
    other = [key for key in _DEVICE_KEYS if recorded.get(key) != here.get(key)]
    if other:
        shown = "; ".join(
            f"{key} {recorded.get(key)!r} there, {here.get(key)!r} here" for key in other
        )
        print(f"   not resuming {path.name}: measured on another device ({shown})", flush=True)
        return None
    _resumed[name] = (record, {"at": _now(), "commit": code_version()})
    print(f"   resuming {path.name} (started {record['run_info']['created_at']})", flush=True)
    return record


_MISSING = object()


def read_records(directory: Path | None = None) -> list[dict[str, Any]]:
    directory = output_dir() if directory is None else directory
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]


def is_quick(record: dict[str, Any]) -> bool:
    """Whether ``record`` is a ``--quick`` smoke run: its name ends in " quick" (every suite names
    them so), or its configuration says so."""
    return record["name"].endswith(" quick") or record["run_info"]["config"].get("quick") is True


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
