"""A package's public names, imported on first use.

Importing torch takes seconds, and every package here would import it from its ``__init__``: then
``meft --help`` or a mistyped option waits for torch before argparse answers. With
:func:`lazy_exports` a package's ``__init__`` names where each public object lives, and the module
holding it is imported when the name is first read (PEP 562). Submodules not named stay reachable
as attributes (``peft_core.data``), as they were when the ``__init__`` imported everything.

Example (a package's ``__init__``)::

    from typing import TYPE_CHECKING

    from peft_core.lazy_exports import lazy_exports

    if TYPE_CHECKING:  # what type checkers and editors read
        from meft.config import MeftConfig

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"meft.config": ["MeftConfig"]})

The mapping reads like the ``TYPE_CHECKING`` imports beside it (module, then the names taken from
it); a test of each package checks that the two agree.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of ``package``, which exports each name
    of ``exports[module]`` as that module's attribute of the same name (``package`` itself as the
    module exports submodules: ``{"deft": ["sparse"]}``). A name is imported on first read, then
    kept in the package, so later reads cost nothing."""
    namespace = sys.modules[package].__dict__
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            return _submodule(package, name)
        if module == package:
            value = importlib.import_module(f"{package}.{name}")
        else:
            value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(module_of))

    public = sorted({*module_of, *(["__version__"] if "__version__" in namespace else [])})
    return __getattr__, __dir__, public


def _submodule(package: str, name: str) -> Any:
    """``package.name`` when that is a submodule, as an eager ``__init__`` would have exposed it."""
    if not name.startswith("__"):  # dunder lookups (__path__, __wrapped__ ...) are never modules
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{package}.{name}":  # the submodule exists but failed to import
                raise
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
