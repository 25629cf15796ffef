"""The record of a saved folder: which config and patterns go with its weights file.

``save_trainable`` writes two files, the weights and ``adapter_config.json``, each atomically, but
not both at once: a run killed between the two renames leaves the new weights beside the previous
config. So the weights file carries its own copy of the record in its safetensors metadata, with a
digest of the tensors in both copies. The weights file is the commit point: a config file whose
digest differs from it belongs to another save, and the embedded copy is used instead. A config
file edited by hand keeps its digest and is honoured.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from peft_core.config import ConfigError, check_format_version, read_config_dict

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
RECORD_METADATA_KEY = "peft_core.adapter_config"
DIGEST_KEY = "weights_sha256"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``tensors``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # uint8 views exist for every dtype, bfloat16 and float8 included (numpy lacks those);
        # they need contiguous memory, and memoryview hashes the bytes without another copy.
        data = tensor.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8)
        digest.update(memoryview(data.numpy()))
    return digest.hexdigest()


def weights_metadata(record: dict[str, Any]) -> dict[str, str]:
    """The safetensors metadata that carries ``record`` inside the weights file."""
    return {"format": "pt", RECORD_METADATA_KEY: json.dumps(record, sort_keys=True)}


def _embedded_record(weights_path: Path) -> dict[str, Any] | None:
    """The record inside the weights file's metadata, or ``None`` (an older writer, another tool)."""
    from safetensors import safe_open

    if not weights_path.is_file():
        return None
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            text = (handle.metadata() or {}).get(RECORD_METADATA_KEY)
    except Exception:  # a corrupt file is reported by whoever reads its tensors
        return None
    if text is None:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def read_saved_record(directory: str | os.PathLike, *, stacklevel: int = 1) -> dict[str, Any]:
    """The config record that belongs to ``directory``'s weights file.

    That is ``adapter_config.json`` unless it is missing or its digest differs from the copy inside
    ``adapter_model.safetensors`` (a save interrupted between its two files); then the embedded
    copy, with a warning (``stacklevel`` as ``warnings.warn``'s, counted from the caller). A folder
    with neither raises ``FileNotFoundError``; a record of a newer format than this library reads
    raises ``ConfigError``.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    embedded = _embedded_record(directory / WEIGHTS_NAME)
    if embedded is None:
        return _readable(read_config_dict(config_path), config_path)
    try:
        on_disk = read_config_dict(config_path)
    except (FileNotFoundError, ConfigError) as error:
        reason = f"{CONFIG_NAME} is unreadable ({error})"
    else:
        if on_disk.get(DIGEST_KEY) == embedded.get(DIGEST_KEY):
            return _readable(on_disk, config_path)
        reason = f"{CONFIG_NAME} was saved with other weights"
    warnings.warn(
        f"{directory}: {reason}; using the config stored inside {WEIGHTS_NAME} (a save "
        "interrupted between its two files leaves this; saving again rewrites both)",
        stacklevel=stacklevel + 1,
    )
    return _readable(embedded, directory / WEIGHTS_NAME)


def _readable(record: dict[str, Any], source: Path) -> dict[str, Any]:
    """``record``, refused when its format is newer than this library reads: before any model is
    touched, and on every load path (a method-less folder never reaches ``from_dict``'s check)."""
    check_format_version(record, str(source))
    return record
