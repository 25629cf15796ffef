"""AdamW with the usual no-decay groups, and learning-rate schedules with warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from peft_core.trainer.arguments import TrainingArguments

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.RMSNorm)


def no_decay_parameter_names(model: nn.Module) -> set[str]:
    """Biases, normalisation weights, every other 1-D (or scalar) parameter, and what the model names.

    Decaying these pulls LayerNorm gains towards zero and biases towards the origin, which hurts
    and is not what weight decay is for (it regularises matrices). A model (or submodule) may list
    more in a ``no_weight_decay()`` method, timm's convention (learned tokens such as prompts and
    cls tokens); the names are relative to that module.

    Example:
        >>> class WithToken(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.token = nn.Parameter(torch.zeros(1, 4, 8))
        ...         self.proj = nn.Linear(8, 8)
        ...
        ...     def no_weight_decay(self):
        ...         return {"token"}
        >>> sorted(no_decay_parameter_names(WithToken()))
        ['proj.bias', 'token']
    """
    names = set()
    for module_name, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if callable(listed):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + name for name in listed())
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()
        for param_name, parameter in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or parameter.ndim <= 1 or param_name.endswith("bias"):
                names.add(full)
    return names


def build_optimizer(model: nn.Module, args: TrainingArguments) -> torch.optim.AdamW:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameter: call freeze(...) with some patterns"
        )
    no_decay = no_decay_parameter_names(model)
    groups = [
        {
            "params": [p for n, p in trainable if n not in no_decay],
            "weight_decay": args.weight_decay,
        },
        {"params": [p for n, p in trainable if n in no_decay], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(
        groups, lr=args.learning_rate, betas=args.adam_betas, eps=args.adam_epsilon
    )


def lr_multiplier(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The factor applied to the base learning rate at each step: linear warm-up, then decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)  # never exactly 0, so step 0 already learns
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(progress, 1.0)
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, args: TrainingArguments, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = (
        args.warmup_steps if args.warmup_steps is not None else int(args.warmup_ratio * total_steps)
    )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(args.lr_schedule, warmup, total_steps)
    )
