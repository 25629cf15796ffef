"""peft-core: what MEFT, DEFT and Point-PEFT share.

Freezing and counting parameters, the bottleneck adapter, method configs and their registry,
saving/loading only trained tensors, activation-memory measurement, and an accelerate-based
trainer.

Example:
    >>> import peft_core
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> peft_core.freeze(model, trainable=["2.*"])
    ['2.weight', '2.bias']
    >>> peft_core.print_trainable_parameters(model)
    trainable params: 18 || all params: 90 || trainable%: 20.0000
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0.dev0"

from peft_core._atomic import atomic_write, atomic_write_bytes, atomic_write_text
from peft_core.activations import QuickGELU, get_activation
from peft_core.adapters import BottleneckAdapter
from peft_core.config import ConfigError, MethodConfig
from peft_core.freezing import freeze, trainable_parameter_names
from peft_core.loading import load
from peft_core.memory import cuda_peak_memory, measure_activation_memory
from peft_core.parameters import (
    count_parameters,
    format_trainable_parameters,
    print_trainable_parameters,
)
from peft_core.registry import get_method, register_method, registered_methods
from peft_core.serialization import CheckpointError, LoadResult, load_trainable, save_trainable
from peft_core.timing import StepTiming, time_step

if TYPE_CHECKING:
    from peft_core.trainer import Trainer, TrainerCallback, TrainingArguments

# The trainer pulls in accelerate; import it only when asked for.
_LAZY = {"Trainer", "TrainingArguments", "TrainerCallback"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from peft_core import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'peft_core' has no attribute {name!r}")


__all__ = [
    "BottleneckAdapter",
    "CheckpointError",
    "ConfigError",
    "LoadResult",
    "MethodConfig",
    "QuickGELU",
    "StepTiming",
    "Trainer",
    "TrainerCallback",
    "TrainingArguments",
    "__version__",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "count_parameters",
    "cuda_peak_memory",
    "format_trainable_parameters",
    "freeze",
    "get_activation",
    "get_method",
    "load",
    "load_trainable",
    "measure_activation_memory",
    "print_trainable_parameters",
    "register_method",
    "registered_methods",
    "save_trainable",
    "time_step",
    "trainable_parameter_names",
]
