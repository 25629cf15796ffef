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
from peft_core.config import MethodConfig
from peft_core.saved_record import (
    CONFIG_NAME,
    DIGEST_KEY,
    WEIGHTS_NAME,
    read_saved_record,
    tensors_digest,
    weights_metadata,
)

# The format save_trainable writes (see peft_core.config.NEWEST_FORMAT_VERSION): the digest, the
# embedded record and the frozen parameters' names are keys releases reading format 1 reject.
FOLDER_FORMAT_VERSION = 2


class CheckpointError(RuntimeError):
    """A saved checkpoint cannot be loaded onto this model (corrupt file, wrong shapes, wrong keys)."""


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """What :func:`load_trainable` found: keys the model expected but the file lacked, and the reverse."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _config_patterns(config: MethodConfig | None, attribute: str, own: Iterable[str]) -> list[str]:
    """The caller's patterns, then those the method config declares under ``attribute``, each
    once (a config whose field of that name was loaded from a record already holds the caller's)."""
    return list(dict.fromkeys([*own, *(getattr(config, attribute, ()) or ())]))


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def trainable_state_dict(
    model: nn.Module, include_buffers: Iterable[str] = (), include_parameters: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """Trainable parameters (tied ones once), plus frozen parameters whose names match
    ``include_parameters`` and buffers whose names match ``include_buffers`` (globs)."""
    parameter_patterns = list(include_parameters)
    # Any name of a tied tensor may match a pattern; the tensor is kept once, under its first.
    chosen = {
        id(p)
        for name, p in model.named_parameters(remove_duplicate=False)
        if p.requires_grad or _matches(name, parameter_patterns)
    }
    state = {name: p for name, p in model.named_parameters() if id(p) in chosen}
    buffer_patterns = list(include_buffers)
    if buffer_patterns:
        for name, buffer in model.named_buffers():
            if _matches(name, buffer_patterns):
                state[name] = buffer
    return state


def _refuse_unmatched_patterns(
    model: nn.Module, include_buffers: Iterable[str], include_parameters: Iterable[str]
) -> None:
    """A typo in ``include_buffers`` / ``include_parameters`` would silently leave the tensor out of
    every checkpoint.

    Only the caller's own patterns are checked: a method config's ``saved_buffers`` and
    ``saved_parameters`` name what the method may add, and a model variant without, say,
    BatchNorm legitimately matches nothing.
    """
    for argument, patterns, named in (
        ("include_buffers", include_buffers, model.named_buffers),
        ("include_parameters", include_parameters, model.named_parameters),
    ):
        names = [name for name, _ in named(remove_duplicate=False)]  # tied tensors by every name
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unmatched:
            kind = argument.removeprefix("include_")
            raise ValueError(
                f"save_trainable({argument}=...): these patterns match no {kind[:-1]} of "
                f"{type(model).__name__}: {', '.join(map(repr, unmatched))}; its {kind} are: "
                f"{', '.join(names) or 'none'}"
            )


def save_trainable(
    model: nn.Module,
    directory: str | os.PathLike,
    config: MethodConfig | None = None,
    *,
    include_buffers: Iterable[str] = (),
    include_parameters: Iterable[str] = (),
) -> Path:
    """Save the trainable tensors of ``model`` (and ``config``) into ``directory``.

    Writes ``adapter_model.safetensors`` then ``adapter_config.json``, each atomically, and the
    weights file carries a copy of the config: a crash at any point leaves a folder that loads as
    the previous save or as the new one. Buffers that are part of a method's state (running
    statistics of new BatchNorms, a memory bank) are saved when they match ``include_buffers`` or
    the config's ``saved_buffers`` patterns. Frozen parameters that a fresh base model would not
    reproduce (a randomly initialised token kept frozen) are saved when they match
    ``include_parameters`` or the config's ``saved_parameters``. A pattern of your own that
    matches nothing is an error.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    include_buffers = list(include_buffers)
    include_parameters = list(include_parameters)
    _refuse_unmatched_patterns(model, include_buffers, include_parameters)
    buffer_patterns = _config_patterns(config, "saved_buffers", include_buffers)
    parameter_patterns = _config_patterns(config, "saved_parameters", include_parameters)
    state = trainable_state_dict(model, buffer_patterns, parameter_patterns)
    if not state:
        raise CheckpointError(
            f"save_trainable: {type(model).__name__} has no trainable parameter to save; "
            "did you freeze everything?"
        )
    # safetensors refuses tensors that share memory; cloning trainable tensors is cheap.
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items()}
    frozen = sorted(
        name for name, t in state.items() if isinstance(t, nn.Parameter) and not t.requires_grad
    )
    record = _folder_record(config, buffer_patterns, parameter_patterns, frozen, tensors)
    atomic_write(
        directory / WEIGHTS_NAME,
        lambda tmp: save_file(tensors, str(tmp), metadata=weights_metadata(record)),
    )
    atomic_write_text(directory / CONFIG_NAME, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return directory


def _folder_record(
    config: MethodConfig | None,
    buffer_patterns: list[str],
    parameter_patterns: list[str],
    frozen: list[str],
    tensors: dict[str, torch.Tensor],
) -> dict[str, Any]:
    """What ``adapter_config.json`` holds: the config, the version that saved it, the patterns of
    the extra tensors, which saved parameters were frozen, and the digest that ties it to its
    weights file."""
    from peft_core import __version__

    record: dict[str, Any] = config.to_dict() if config is not None else {"method": None}
    record["format_version"] = FOLDER_FORMAT_VERSION
    record["peft_core_version"] = __version__
    record["saved_buffers"] = buffer_patterns
    record["saved_parameters"] = parameter_patterns
    record["frozen_parameters"] = frozen  # a method-less load keeps them frozen
    record[DIGEST_KEY] = tensors_digest(tensors)
    return record


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


def folder_record_or_none(directory: Path, *, stacklevel: int) -> dict[str, Any] | None:
    """:func:`read_saved_record`, or None for a folder saved without a config file."""
    try:
        return read_saved_record(directory, stacklevel=stacklevel + 1)
    except FileNotFoundError:
        return None


def load_trainable(
    model: nn.Module, directory: str | os.PathLike, *, strict: bool = True
) -> LoadResult:
    """Copy saved trainable tensors from ``directory`` into ``model``.

    Keys are compared by name: *missing* are trainable parameters of the model (and matches of
    the folder's saved-buffer and saved-parameter patterns) absent from the file, *unexpected* are file entries the model does not have. With
    ``strict`` either is an error; otherwise they are returned. A shape mismatch is always an error
    naming the tensor.
    """
    directory = Path(directory)
    saved = read_trainable_file(directory / WEIGHTS_NAME)
    record = folder_record_or_none(directory, stacklevel=2)
    return load_with_record(model, directory, saved, record, strict=strict)


def load_with_record(
    model: nn.Module,
    directory: Path,
    saved: dict[str, torch.Tensor],
    record: dict[str, Any] | None,
    *,
    strict: bool,
) -> LoadResult:
    """:func:`load_trainable` with the weights and the record already read (``peft_core.load``
    reads them first, and must not warn twice about a torn folder)."""
    # The patterns of the extra tensors saved (none for a folder saved without a config file).
    buffer_patterns = (record or {}).get("saved_buffers", [])
    parameter_patterns = (record or {}).get("saved_parameters", [])

    # Not state_dict(): it omits non-persistent buffers, which save_trainable does save when they
    # match include_buffers / saved_buffers (they are found with named_buffers() there too).
    targets = dict(model.named_parameters(remove_duplicate=False))
    targets.update(model.named_buffers(remove_duplicate=False))
    expected = set(trainable_state_dict(model, buffer_patterns, parameter_patterns))
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
