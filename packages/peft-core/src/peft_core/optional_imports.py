"""Importing an optional dependency with an error that says what needs it and how to install it.

Every package here keeps its heavy dependencies (transformers, peft, matplotlib, datasets) in
extras, imported only inside the code path that needs them. Without the extra, a bare
``ModuleNotFoundError: No module named 'transformers'`` leaves the user to guess which extra
brings it; :func:`import_optional` names it.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(name: str, *, needed_by: str, install: str) -> ModuleType:
    """``importlib.import_module(name)``; when its package is not installed, a
    ``ModuleNotFoundError`` naming ``needed_by`` (what needs it) and ``install`` (the command).

    An import that fails *inside* an installed package (a broken install, a missing dependency
    of it) is re-raised as it is: reinstalling the extra would not be the fix.

    Example:
        >>> import_optional("json", needed_by="this example", install="nothing").dumps([1])
        '[1]'
        >>> import_optional("no_such_package", needed_by="f()", install='pip install "x[y]"')
        Traceback (most recent call last):
        ...
        ModuleNotFoundError: f() needs no_such_package, which is not installed: pip install "x[y]"
    """
    package = name.partition(".")[0]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name not in (package, name):
            raise
        raise ModuleNotFoundError(
            f"{needed_by} needs {package}, which is not installed: {install}", name=package
        ) from error
