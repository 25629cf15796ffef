"""Undoing what a method did to a model in place, when what follows it fails.

``peft_core.load`` applies the saved method to the caller's model before it can check the saved
tensors against the converted model. When that check fails (a checkpoint of another model size),
the caller's model must come back as it was: a multi-gigabyte ``from_pretrained`` should not have
to be loaded again because a folder was the wrong one.

Methods change a model by changing its modules' attribute dictionaries (children, parameters,
buffers, hooks, instance attributes such as a replaced ``forward``) and each parameter's
``requires_grad``, and sometimes its ``.data`` (``module.to(dtype)``). A snapshot keeps references
to all of these, never a copy of a tensor's values, so taking one is cheap at any model size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Containers whose contents a method may change in place (``_modules``, ``_forward_hooks``, ...).
_MUTABLE_CONTAINERS = (dict, list, set)


class ModelSnapshot:
    """The structure of ``model`` now, to be put back with :meth:`restore`.

    What it restores, for every module reachable from ``model`` at snapshot time:

    - its class and its instance attributes: added ones are removed, replaced ones put back;
    - the contents of its dictionaries, lists and sets (children, parameters, buffers, hooks);
    - each parameter's and buffer's ``requires_grad`` and ``.data`` tensor.

    What it cannot undo: values written *into* existing tensors in place (``weight.mul_(2)``).
    No method in this project does that to a model it converts; a method that did would have to
    be loaded into a fresh model after a failure.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> snapshot = ModelSnapshot(model)
        >>> model.append(nn.ReLU())
        Sequential(...)
        >>> model[0].weight.requires_grad_(False)
        Parameter containing:...
        >>> snapshot.restore()
        >>> len(model), model[0].weight.requires_grad
        (1, True)
    """

    def __init__(self, model: nn.Module) -> None:
        self._modules = [(module, type(module), _attributes(module)) for module in model.modules()]
        self._tensors = [
            (tensor, tensor.data, tensor.requires_grad)
            for module, _, _ in self._modules
            for tensor in _own_tensors(module)
        ]

    def restore(self) -> None:
        """Put every module's attributes and every tensor's flag and storage back."""
        for module, module_class, attributes in self._modules:
            if type(module) is not module_class:  # a method may swap a module's class in place
                module.__class__ = module_class
            _restore_attributes(module, attributes)
        for tensor, data, requires_grad in self._tensors:
            tensor.data = data  # undoes a module.to(dtype) or device move; same storage otherwise
            if tensor.requires_grad != requires_grad:  # a non-leaf refuses even a no-op change
                tensor.requires_grad_(requires_grad)


def _attributes(module: nn.Module) -> dict[str, tuple[Any, Any]]:
    """Each instance attribute with a shallow copy of its contents when it is a container."""
    return {
        key: (value, value.copy() if isinstance(value, _MUTABLE_CONTAINERS) else None)
        for key, value in vars(module).items()
    }


def _restore_attributes(module: nn.Module, attributes: dict[str, tuple[Any, Any]]) -> None:
    state = vars(module)
    for key in [key for key in state if key not in attributes]:
        del state[key]
    for key, (value, contents) in attributes.items():
        state[key] = value
        if contents is None:
            continue
        # The container object itself is kept: hook handles and other modules may hold it.
        value.clear()
        if isinstance(value, list):
            value.extend(contents)
        else:  # a dict or a set
            value.update(contents)


def _own_tensors(module: nn.Module) -> list[torch.Tensor]:
    tensors = list(module._parameters.values()) + list(module._buffers.values())
    return [tensor for tensor in tensors if tensor is not None]


__all__ = ["ModelSnapshot"]
