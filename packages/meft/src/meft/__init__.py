"""MEFT: reversible memory-efficient fine-tuning (Liao, Tan & Monz, NeurIPS 2023).

Not the unrelated "MEFT: Memory-Efficient Fine-Tuning through Sparse Adapter" (Hao et al., ACL 2024).

Example:
    >>> from meft import MeftConfig, get_meft_model
    >>> model = get_meft_model(base_model, MeftConfig(variant="meft1"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peft_core.lazy_exports import lazy_exports

__version__ = "0.1.0.dev0"

if TYPE_CHECKING:  # what type checkers and editors read; at run time each name is imported on use
    from meft.architectures import Architecture, register_architecture, supported_architectures
    from meft.config import MeftConfig
    from meft.model import MeftStack, get_meft_model, reconstruction_errors, unload

# `meft --help` and usage errors should not wait seconds for torch
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "meft.architectures": [
            "Architecture", "register_architecture", "supported_architectures",
        ],
        "meft.config": ["MeftConfig"],
        "meft.model": ["MeftStack", "get_meft_model", "reconstruction_errors", "unload"],
    },
)  # fmt: skip
