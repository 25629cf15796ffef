"""Per-family descriptions; importing this package registers the built-in ones."""

from meft.architectures import bert  # noqa: F401  (registers itself)
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
