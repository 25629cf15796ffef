"""Per-family descriptions; importing this package registers the built-in ones."""

from meft.architectures import bart, bert, llama, opt, timm_vit, vit  # noqa: F401  (register themselves)
from meft.architectures.base import (
    Architecture,
    find_architecture,
    find_module_list,
    register_architecture,
    supported_architectures,
)

__all__ = [
    "Architecture",
    "find_architecture",
    "find_module_list",
    "register_architecture",
    "supported_architectures",
]
