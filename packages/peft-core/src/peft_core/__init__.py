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

from typing import TYPE_CHECKING

from peft_core.lazy_exports import lazy_exports

__version__ = "0.2.0.dev0"

if TYPE_CHECKING:  # what type checkers and editors read; at run time each name is imported on use
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
    from peft_core.trainer import Trainer, TrainerCallback, TrainingArguments

# Importing torch takes seconds; a command's --help, or a usage error, should not wait for it.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "peft_core._atomic": ["atomic_write", "atomic_write_bytes", "atomic_write_text"],
        "peft_core.activations": ["QuickGELU", "get_activation"],
        "peft_core.adapters": ["BottleneckAdapter"],
        "peft_core.config": ["ConfigError", "MethodConfig"],
        "peft_core.freezing": ["freeze", "trainable_parameter_names"],
        "peft_core.loading": ["load"],
        "peft_core.memory": ["cuda_peak_memory", "measure_activation_memory"],
        "peft_core.parameters": [
            "count_parameters", "format_trainable_parameters", "print_trainable_parameters",
        ],
        "peft_core.registry": ["get_method", "register_method", "registered_methods"],
        "peft_core.serialization": [
            "CheckpointError", "LoadResult", "load_trainable", "save_trainable",
        ],
        "peft_core.timing": ["StepTiming", "time_step"],
        "peft_core.trainer": ["Trainer", "TrainerCallback", "TrainingArguments"],
    },
)  # fmt: skip
