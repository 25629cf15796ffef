"""Saving and loading only what was trained: ``adapter_model.safetensors`` + ``adapter_config.json``."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peft_core._atomic import atomic_write, atomic_write_text
from peft_core.config import (
    CONFIG_FORMAT_VERSION,
    MethodConfig,
    check_format_version,
    read_config_dict,
)

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"


class CheckpointError(RuntimeError):
    """A saved checkpoint cannot be loaded onto this model (corrupt file, wrong shapes, wrong keys)."""


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """What :func:`load_trainable` found: keys the model expected but the file lacked, and the reverse."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _buffer_patterns(config: MethodConfig | None, include_buffers: Iterable[str]) -> list[str]:
    patterns = list(include_buffers)
    patterns += list(getattr(config, "saved_buffers", ()) or ())
    return patterns


def trainable_state_dict(
    model: nn.Module, include_buffers: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """Trainable parameters (tied ones once) plus buffers whose names match ``include_buffers`` globs."""
    state = {name: p for name, p in model.named_parameters() if p.requires_grad}
    patterns = list(include_buffers)
    if patterns:
        for name, buffer in model.named_buffers():
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                state[name] = buffer
    return state


def _refuse_unmatched_buffer_patterns(model: nn.Module, include_buffers: Iterable[str]) -> None:
    """A typo in ``include_buffers`` would silently leave the buffer out of every checkpoint.

    Only the caller's own patterns are checked: a method config's ``saved_buffers`` name what the
    method may add, and a model variant without, say, BatchNorm legitimately matches nothing.
    """
    names = [name for name, _ in model.named_buffers()]
    unmatched = [p for p in include_buffers if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        raise ValueError(
            f"save_trainable(include_buffers=...): these patterns match no buffer of "
            f"{type(model).__name__}: {', '.join(map(repr, unmatched))}; its buffers are: "
            f"{', '.join(names) or 'none'}"
        )


def save_trainable(
    model: nn.Module,
    directory: str | os.PathLike,
    config: MethodConfig | None = None,
    *,
    include_buffers: Iterable[str] = (),
) -> Path:
    """Save the trainable tensors of ``model`` (and ``config``) into ``directory``.

    Writes ``adapter_model.safetensors`` then ``adapter_config.json``, each atomically: a crash at
    any point leaves either the previous file or the complete new one. Buffers that are part of a
    method's state (running statistics of new BatchNorms, a memory bank) are saved when they match
    ``include_buffers`` or the config's ``saved_buffers`` patterns; an ``include_buffers`` pattern
    that matches no buffer is an error.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    include_buffers = list(include_buffers)
    _refuse_unmatched_buffer_patterns(model, include_buffers)
    patterns = _buffer_patterns(config, include_buffers)
    state = trainable_state_dict(model, patterns)
    if not state:
        raise CheckpointError(
            f"save_trainable: {type(model).__name__} has no trainable parameter to save; "
            "did you freeze everything?"
        )
    # safetensors refuses tensors that share memory; cloning trainable tensors is cheap.
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items()}
    atomic_write(
        directory / WEIGHTS_NAME,
        lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}),
    )

    from peft_core import __version__

    record: dict[str, Any] = (
        config.to_dict()
        if config is not None
        else {"method": None, "format_version": CONFIG_FORMAT_VERSION}
    )
    record["peft_core_version"] = __version__
    record["saved_buffers"] = patterns
    atomic_write_text(directory / CONFIG_NAME, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return directory


def read_trainable_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning a corrupt or truncated file into a clear error."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {path.name} in {path.parent}")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error type from Rust
        raise CheckpointError(
            f"{path} is corrupt or truncated and cannot be read ({type(error).__name__}: {error})"
        ) from None


def _saved_buffer_patterns(config_path: Path) -> list[str]:
    """The buffer patterns a folder was saved with; its format must be one this library reads."""
    if not config_path.exists():
        return []
    record = read_config_dict(config_path)
    check_format_version(record, str(config_path))
    return record.get("saved_buffers", [])


def load_trainable(
    model: nn.Module, directory: str | os.PathLike, *, strict: bool = True
) -> LoadResult:
    """Copy saved trainable tensors from ``directory`` into ``model``.

    Keys are compared by name: *missing* are trainable parameters of the model (and saved-buffer
    matches) absent from the file, *unexpected* are file entries the model does not have. With
    ``strict`` either is an error; otherwise they are returned. A shape mismatch is always an error
    naming the tensor.
    """
    directory = Path(directory)
    saved = read_trainable_file(directory / WEIGHTS_NAME)
    patterns = _saved_buffer_patterns(directory / CONFIG_NAME)

    # Not state_dict(): it omits non-persistent buffers, which save_trainable does save when they
    # match include_buffers / saved_buffers (they are found with named_buffers() there too).
    targets = dict(model.named_parameters(remove_duplicate=False))
    targets.update(model.named_buffers(remove_duplicate=False))
    expected = set(trainable_state_dict(model, patterns))
    # A tied tensor saved under any of its names is loaded (a file from another writer may use
    # lm_head.weight where save_trainable writes the first name, the embedding's).
    loaded = {id(targets[name]) for name in saved if name in targets}
    missing = sorted(name for name in expected - set(saved) if id(targets[name]) not in loaded)
    unexpected = sorted(set(saved) - set(targets))

    mismatched = [
        f"{name}: saved {tuple(tensor.shape)}, model {tuple(targets[name].shape)}"
        for name, tensor in saved.items()
        if name in targets and targets[name].shape != tensor.shape
    ]
    if mismatched:
        raise CheckpointError(
            f"shape mismatch loading {directory} into {type(model).__name__}: "
            + "; ".join(mismatched)
        )
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        raise CheckpointError(
            f"loading {directory} into {type(model).__name__}: " + "; ".join(parts)
        )

    with torch.no_grad():
        for name, tensor in saved.items():
            if name in targets:
                targets[name].copy_(tensor)
    return LoadResult(missing_keys=missing, unexpected_keys=unexpected)
