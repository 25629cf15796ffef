"""MEFT: reversible memory-efficient fine-tuning (Liao, Tan & Monz, NeurIPS 2023).

Not the unrelated "MEFT: Memory-Efficient Fine-Tuning through Sparse Adapter" (Hao et al., ACL 2024).

Example:
    >>> from meft import MeftConfig, get_meft_model
    >>> model = get_meft_model(base_model, MeftConfig(variant="meft1"))  # doctest: +SKIP
"""

__version__ = "0.1.0.dev0"

from meft.architectures import Architecture, register_architecture, supported_architectures
from meft.config import MeftConfig
from meft.model import MeftStack, get_meft_model, reconstruction_errors, unload

__all__ = [
    "Architecture",
    "MeftConfig",
    "MeftStack",
    "__version__",
    "get_meft_model",
    "reconstruction_errors",
    "register_architecture",
    "supported_architectures",
    "unload",
]
