"""Loading the official Point-MAE / Point-BERT checkpoints, with an explicit report.

Four layouts are recognised from their keys (see ``tests/official_layouts.py`` for every name and
shape), after unwrapping ``ckpt["base_model"]`` and dropping DataParallel's ``module.`` prefixes:

=========================  =================================  ===============================
kind                       what is kept, renamed how          expected after loading
=========================  =================================  ===============================
``point_mae_pretrain``     every key; ``MAE_encoder.`` prefix  missing: ``cls_token``,
                           dropped (as the official loader)    ``cls_pos``, ``cls_head_finetune.*``;
                                                               unexpected: ``mask_token``,
                                                               ``decoder_pos_embed.*``,
                                                               ``MAE_decoder.*``, ``increase_dim.*``
``point_bert_pretrain``    ``transformer_q.*`` except          missing: ``cls_head_finetune.*``;
                           ``transformer_q.cls_head*``, prefix unexpected: ``mask_token``,
                           dropped; the rest is *ignored*      ``lm_head.*``
``point_mae_finetuned``    every key as it is                  nothing
``point_bert_finetuned``   every key as it is (has             nothing
                           ``reduce_dim``)
=========================  =================================  ===============================

Policy: a shape mismatch is always an error naming the tensor and both shapes. Missing or
unexpected keys outside the expected lists above are an error with ``strict=True`` (the default:
a model that silently keeps random weights trains to plausible but wrong numbers), and a warning
with ``strict=False`` (for deliberate changes such as loading the first blocks of a deeper model).
Parts the model does not have (no head, no cls token) are expected to come back as unexpected.
``drop_head=True`` leaves a fine-tuned file's head out (listed as ignored), so that a classifier
fine-tuned on one task can start another with a new head of another class count.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peft_core import CheckpointError

logger = logging.getLogger(__name__)

CHECKPOINT_KINDS: tuple[str, ...] = (
    "point_mae_pretrain",
    "point_bert_pretrain",
    "point_mae_finetuned",
    "point_bert_finetuned",
)
#: Model keys (fnmatch patterns) that a checkpoint of each kind does not provide.
EXPECTED_MISSING: dict[str, tuple[str, ...]] = {
    "point_mae_pretrain": ("cls_token", "cls_pos", "cls_head_finetune.*"),
    "point_bert_pretrain": ("cls_head_finetune.*",),
    "point_mae_finetuned": (),
    "point_bert_finetuned": (),
}
#: Checkpoint keys (after renaming) that have no place in the classifier.
EXPECTED_UNEXPECTED: dict[str, tuple[str, ...]] = {
    "point_mae_pretrain": ("mask_token", "decoder_pos_embed.*", "MAE_decoder.*", "increase_dim.*"),
    "point_bert_pretrain": ("mask_token", "lm_head.*"),
    "point_mae_finetuned": (),
    "point_bert_finetuned": (),
}
_HEAD_PATTERNS = ("cls_head_finetune.*",)
_CLS_PATTERNS = ("cls_token", "cls_pos")
_WRAPPER_KEYS = ("base_model", "model", "state_dict")


@dataclasses.dataclass(frozen=True)
class PretrainedLoadReport:
    """What :func:`load_pretrained` did, with the key names of ``torch``'s ``load_state_dict`` result.

    ``missing_keys``: model entries the checkpoint did not provide (they keep their initial values).
    Unlike ``torch``'s report, BatchNorm ``num_batches_tracked`` counters are listed too.
    ``unexpected_keys``: checkpoint entries, after renaming, that the model has no place for.
    ``ignored_keys``: checkpoint entries that the layout's renaming rule drops before loading (for
    a Point-BERT pre-train file: everything outside ``transformer_q.*``, and its ``cls_head``).
    """

    kind: str
    missing_keys: list[str]
    unexpected_keys: list[str]
    ignored_keys: list[str]
    loaded_keys: list[str]

    def __str__(self) -> str:
        return (
            f"{self.kind}: loaded {len(self.loaded_keys)} tensors; "
            f"missing {_preview(self.missing_keys)}; unexpected {_preview(self.unexpected_keys)}; "
            f"ignored {len(self.ignored_keys)}"
        )


def load_checkpoint_file(
    path: str | os.PathLike,
    *,
    weights_only: bool = True,
    map_location: str | torch.device = "cpu",
) -> Any:
    """What a checkpoint file holds, as ``torch.load`` returns it, with clear errors.

    Read a file once with this and hand the result to :func:`read_checkpoint` and
    :func:`~point_peft.pretrained.read_pretrained_config` instead of reading it twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as error:
        # Either a corrupt file or one that pickles objects beyond tensors and containers
        # (torch words both as unpickling errors).
        raise CheckpointError(
            f"{path} cannot be read with torch.load(weights_only={weights_only}) ({error}). "
            "If it is a checkpoint from a source you trust that pickles other Python "
            "objects, pass weights_only=False."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from None


def read_checkpoint(
    source: str | os.PathLike | Mapping[str, Any],
    *,
    weights_only: bool = True,
    map_location: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """The state dict inside an official checkpoint file (or an already loaded dict).

    Unwraps ``ckpt["base_model"]`` (or ``"model"``, ``"state_dict"``; a bare state dict is taken as
    it is), drops ``module.`` path components (DataParallel / DDP) and a leading ``base_model.``
    prefix, as the official loaders do. Files are read with ``torch.load(weights_only=True)``: the
    official files hold tensors, numbers, strings and plain containers only, which it accepts;
    a file that needs arbitrary unpickling is refused with a clear error unless you pass
    ``weights_only=False`` (only for files you trust: unpickling can run code).
    """
    if isinstance(source, Mapping):
        raw: Any = source
        where = "the given checkpoint dict"
    elif not isinstance(source, (str, os.PathLike)):
        raise CheckpointError(
            f"source must be a checkpoint path or a dict, got a {type(source).__name__}"
        )
    else:
        where = str(Path(source))
        raw = load_checkpoint_file(source, weights_only=weights_only, map_location=map_location)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{where} holds a {type(raw).__name__}, not a dict of tensors")
    state: Any = raw
    for key in _WRAPPER_KEYS:
        if isinstance(raw.get(key), Mapping):
            state = raw[key]
            break
    normalised: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{where}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                f"expected a state dict, possibly wrapped as {{'base_model': state_dict}}"
            )
        name = ".".join(part for part in str(key).split(".") if part != "module")
        name = name.removeprefix("base_model.")
        if name in normalised:
            raise CheckpointError(f"{where}: two entries both become {name!r} without 'module.'")
        normalised[name] = value
    return normalised


def detect_checkpoint_kind(state: Mapping[str, torch.Tensor]) -> str:
    """Which official layout ``state`` (from :func:`read_checkpoint`) has; one of ``CHECKPOINT_KINDS``.

    Example:
        >>> detect_checkpoint_kind({"MAE_encoder.norm.weight": torch.ones(3)})
        'point_mae_pretrain'
    """
    keys = list(state)
    if any(key.startswith("MAE_encoder.") for key in keys):
        return "point_mae_pretrain"
    if any(key.startswith("transformer_q.") for key in keys):
        return "point_bert_pretrain"
    if any(key.startswith("encoder.first_conv.") for key in keys) and any(
        key.startswith("blocks.blocks.") for key in keys
    ):
        return "point_bert_finetuned" if "reduce_dim.weight" in state else "point_mae_finetuned"
    raise CheckpointError(
        "unrecognised checkpoint layout (first keys: "
        + ", ".join(keys[:6])
        + "); expected a Point-MAE pre-train file (MAE_encoder.*), a Point-BERT pre-train file "
        "(transformer_q.*) or a fine-tuned classifier (encoder.first_conv.*, blocks.blocks.{i}.*)"
    )


def convert_checkpoint(
    state: Mapping[str, torch.Tensor], kind: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename ``state`` to the classifier's names: ``(renamed state, ignored checkpoint keys)``."""
    if kind not in CHECKPOINT_KINDS:
        raise ValueError(f"kind must be one of {CHECKPOINT_KINDS}, got {kind!r}")
    renamed: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in state.items():
        if kind == "point_mae_pretrain":
            # The official loader renames the encoder and keeps the rest (as unexpected keys).
            renamed[key.removeprefix("MAE_encoder.")] = value
        elif kind == "point_bert_pretrain":
            if key.startswith("transformer_q.") and not key.startswith("transformer_q.cls_head"):
                renamed[key.removeprefix("transformer_q.")] = value
            else:  # momentum encoder, dVAE, contrastive head, queues: not part of the classifier
                ignored.append(key)
        else:
            renamed[key] = value
    return renamed, ignored


def checkpoint_family(kind: str) -> str:
    """``"point_mae"`` or ``"point_bert"``: which model a checkpoint kind belongs to."""
    return kind.rsplit("_", 1)[0]


def model_family(model: nn.Module) -> str:
    """The family of ``model``: its ``checkpoint_family`` attribute, or Point-BERT if it has ``reduce_dim``."""
    family = getattr(model, "checkpoint_family", None)
    if family is not None:
        return family
    return "point_mae" if getattr(model, "reduce_dim", None) is None else "point_bert"


def load_pretrained(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    *,
    strict: bool = True,
    weights_only: bool = True,
    drop_head: bool = False,
) -> PretrainedLoadReport:
    """Load an official checkpoint (file or dict) into ``model`` and report what happened.

    ``model`` is a :class:`~point_peft.models.PointMAE` / :class:`~point_peft.models.PointBERT`
    classifier or a :class:`~point_peft.models.PointTransformerEncoder`. See the module docstring
    for the layouts, the renaming and the strictness policy. Nothing is copied unless every check
    passes. ``drop_head``: leave the file's classification head out (``model``'s keeps its
    initial values), to fine-tune a fine-tuned classifier on a task of another class count.

    Example:
        >>> from point_peft.models import PointMAE, PointTransformerConfig
        >>> source = PointMAE(PointTransformerConfig.small(num_classes=5))
        >>> target = PointMAE(PointTransformerConfig.small(num_classes=5))
        >>> report = load_pretrained(target, {"base_model": source.state_dict()})
        >>> report.kind, report.missing_keys, report.unexpected_keys
        ('point_mae_finetuned', [], [])
        >>> torch.equal(target.cls_token, source.cls_token)
        True
    """
    state = read_checkpoint(source, weights_only=weights_only)
    kind = detect_checkpoint_kind(state)
    family, expected_family = checkpoint_family(kind), model_family(model)
    if family != expected_family:
        names = {"point_mae": "Point-MAE (PointMAE)", "point_bert": "Point-BERT (PointBERT)"}
        raise CheckpointError(
            f"this is a {names[family]} checkpoint ({kind}) but {type(model).__name__} is a "
            f"{names[expected_family]} model; load it with the {names[family]} class"
        )
    renamed, ignored = convert_checkpoint(state, kind)
    if drop_head:
        ignored += [name for name in renamed if _matches(name, _HEAD_PATTERNS)]
        renamed = {n: t for n, t in renamed.items() if not _matches(n, _HEAD_PATTERNS)}
    targets = model.state_dict()
    _refuse_shape_mismatches(model, kind, renamed, targets)
    missing = [name for name in targets if name not in renamed]
    unexpected = [name for name in renamed if name not in targets]
    allowed_missing, allowed_unexpected = _expectations(model, kind)
    if drop_head:
        allowed_missing += _HEAD_PATTERNS
    surprises = []
    extra_missing = [name for name in missing if not _matches(name, allowed_missing)]
    extra_unexpected = [name for name in unexpected if not _matches(name, allowed_unexpected)]
    if extra_missing:
        surprises.append(f"missing keys not expected for {kind}: {', '.join(extra_missing)}")
    if extra_unexpected:
        surprises.append(f"unexpected keys not expected for {kind}: {', '.join(extra_unexpected)}")
    if surprises:
        message = f"loading into {type(model).__name__}: " + "; ".join(surprises)
        if strict:
            raise CheckpointError(message + " (pass strict=False to load anyway)")
        warnings.warn(message, stacklevel=2)
    model.load_state_dict(renamed, strict=False)
    report = PretrainedLoadReport(
        kind=kind,
        missing_keys=missing,
        unexpected_keys=unexpected,
        ignored_keys=ignored,
        loaded_keys=[name for name in renamed if name in targets],
    )
    logger.info("loaded %s", report)
    return report


def _refuse_shape_mismatches(
    model: nn.Module, kind: str, renamed: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> None:
    mismatched = [
        name for name, t in renamed.items() if name in targets and targets[name].shape != t.shape
    ]
    if not mismatched:
        return
    listed = "; ".join(
        f"{name}: checkpoint {tuple(renamed[name].shape)}, model {tuple(targets[name].shape)}"
        for name in mismatched
    )
    hint = ""
    if all(_matches(name, _HEAD_PATTERNS) for name in mismatched):
        hint = (
            " (only the classification head differs: the file was fine-tuned for another number "
            "of classes; pass drop_head=True to load the rest and start a new head)"
        )
    raise CheckpointError(
        f"shape mismatch loading a {kind} checkpoint into {type(model).__name__}: {listed}{hint}"
    )


def _expectations(model: nn.Module, kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    allowed_missing = EXPECTED_MISSING[kind]
    allowed_unexpected = EXPECTED_UNEXPECTED[kind]
    # What the model lacks cannot be loaded: a bare encoder has no head, the pre-training encoder
    # no cls token. Those checkpoint entries are then expected to be unexpected.
    if not hasattr(model, "cls_head_finetune"):
        allowed_unexpected += _HEAD_PATTERNS
    if getattr(model, "cls_token", None) is None:
        allowed_unexpected += _CLS_PATTERNS
    return allowed_missing, allowed_unexpected


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _preview(names: list[str], limit: int = 4) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return f"{len(names)} ({shown}{', …' if len(names) > limit else ''})"
