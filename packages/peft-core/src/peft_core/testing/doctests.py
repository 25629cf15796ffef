"""Run a package's docstring examples, so that what a docstring prints is known to be true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil


def package_modules(package: str) -> list[str]:
    """``package`` and every module under it, by import name.

    Example:
        >>> package_modules("peft_core.testing")[:2]
        ['peft_core.testing', 'peft_core.testing.doctests']
    """
    root = importlib.import_module(package)
    found = pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
    return [package, *sorted(info.name for info in found)]


def failed_docstring_examples(module: str) -> int:
    """How many docstring examples of ``module`` fail (whitespace-normalised, ``...`` allowed)."""
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    return doctest.testmod(importlib.import_module(module), optionflags=flags).failed
