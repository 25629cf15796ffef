"""A small, open registry of fine-tuning methods.

Hugging Face ``peft`` keeps its methods in a closed enum. Here a method package registers itself
with a decorator, and advertises the module that does so in the ``peft_core.methods`` entry-point
group of its packaging metadata, so :func:`peft_core.load` can rebuild a model saved by any
installed method without the caller importing that method first::

    # in the method package
    @register_method("meft", MeftConfig)
    def apply_meft(model, config):
        ...
        return model

    # pyproject.toml
    [project.entry-points."peft_core.methods"]
    meft = "meft.model"
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import TypeVar

from torch import nn

from peft_core.config import MethodConfig

ENTRY_POINT_GROUP = "peft_core.methods"

ApplyFn = Callable[[nn.Module, MethodConfig], nn.Module]
F = TypeVar("F", bound=ApplyFn)


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str
    config_class: type[MethodConfig]
    apply: ApplyFn


_METHODS: dict[str, MethodSpec] = {}
_entry_points_loaded = False
# Entry points whose module failed to import: name -> "module (ErrorType: message)".
_PLUGIN_FAILURES: dict[str, str] = {}


def register_method(name: str, config_class: type[MethodConfig]) -> Callable[[F], F]:
    """Register ``apply(model, config) -> model`` under ``name`` (must equal ``config_class.method``)."""
    if not (isinstance(config_class, type) and issubclass(config_class, MethodConfig)):
        raise TypeError(f"register_method({name!r}): config_class must subclass MethodConfig")
    if config_class.method != name:
        raise ValueError(
            f"register_method({name!r}): {config_class.__name__}.method is {config_class.method!r}; "
            "they must agree so that saved configs find their method"
        )

    def decorator(apply: F) -> F:
        existing = _METHODS.get(name)
        if existing is not None and existing.apply is not apply:
            same_place = (existing.apply.__module__, existing.apply.__qualname__) == (
                apply.__module__,
                apply.__qualname__,
            )
            if not same_place:  # a module re-imported under importlib reloads is fine
                raise ValueError(
                    f"a method named {name!r} is already registered by {existing.apply.__module__}"
                )
        _METHODS[name] = MethodSpec(name, config_class, apply)
        return apply

    return decorator


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        _import_plugin(entry_point)


def _import_plugin(entry_point: metadata.EntryPoint) -> None:
    """Import one plugin; a broken one is reported, not fatal, so that the others still load."""
    module = entry_point.value.split(":")[0].strip()
    try:
        importlib.import_module(module)
    except Exception as error:
        failure = f"{module} ({type(error).__name__}: {error})"
        _PLUGIN_FAILURES[entry_point.name] = failure
        warnings.warn(
            f"the {ENTRY_POINT_GROUP!r} plugin {entry_point.name!r} failed to import: {failure}; "
            "its method is unavailable, the other installed methods still load",
            RuntimeWarning,
            stacklevel=3,
        )


def _failed_plugins_note(name: str) -> str:
    if name in _PLUGIN_FAILURES:
        return (
            f" The plugin that provides {name!r} is installed but failed to import: "
            f"{_PLUGIN_FAILURES[name]}."
        )
    if _PLUGIN_FAILURES:
        failures = "; ".join(f"{key}: {value}" for key, value in sorted(_PLUGIN_FAILURES.items()))
        return f" These installed plugins failed to import: {failures}."
    return ""


def registered_methods() -> list[str]:
    _load_entry_points()
    return sorted(_METHODS)


def get_method(name: str) -> MethodSpec:
    """Find a registered method, importing installed method packages on first use."""
    if name not in _METHODS:
        _load_entry_points()
    try:
        return _METHODS[name]
    except KeyError:
        known = ", ".join(sorted(_METHODS)) or "none"
        raise KeyError(
            f"no fine-tuning method named {name!r} is installed (registered: {known}). "
            "Install the package that provides it, e.g. `pip install meft`, `pip install deft-peft` "
            "or `pip install point-peft`." + _failed_plugins_note(name)
        ) from None
