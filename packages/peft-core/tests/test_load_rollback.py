"""A failed ``peft_core.load`` leaves the caller's model as it was (``peft_core.rollback``)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import ClassVar

import pytest
import torch
from torch import nn

import peft_core
from peft_core import (
    BottleneckAdapter,
    CheckpointError,
    MethodConfig,
    freeze,
    register_method,
    save_trainable,
)
from peft_core import registry as registry_module
from peft_core.rollback import ModelSnapshot
from peft_core.testing.mixins import model_structure


@pytest.fixture
def isolated_registry(monkeypatch):
    monkeypatch.setattr(registry_module, "_METHODS", dict(registry_module._METHODS))
    monkeypatch.setattr(registry_module, "_entry_points_loaded", True)


def _base_model(width: int = 6) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))


def _fingerprint(model: nn.Module) -> dict:
    """Everything a method could change that the tests can see: the round-trip mixin's
    structure, and every tensor's values."""
    values = {
        name: tensor.detach().clone()
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
    }
    return {"structure": model_structure(model), "values": values}


def _assert_same(before: dict, after: dict) -> None:
    assert after["structure"] == before["structure"]
    assert after["values"].keys() == before["values"].keys()
    for name, value in before["values"].items():
        assert torch.equal(after["values"][name], value), name


class _Doubled(nn.Module):
    """What the toy method swaps in for the first layer: the original, wrapped."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.inner(x)


def _register_invasive_method(*, fail_after_changes: bool = False) -> type[MethodConfig]:
    """A method that changes the model in every way the snapshot claims to undo."""
    name = f"toy-{uuid.uuid4().hex}"

    @dataclasses.dataclass
    class InvasiveConfig(MethodConfig):
        method: ClassVar[str] = name
        bottleneck: int = 2

    @register_method(name, InvasiveConfig)
    def apply(model: nn.Sequential, config) -> nn.Module:
        model[0] = _Doubled(model[0])  # a child replaced
        model.append(BottleneckAdapter(4, config.bottleneck, residual=True))  # a child added
        model[2].to(torch.float64)  # a parameter's .data swapped for another tensor
        model[2].register_forward_pre_hook(lambda module, args: (args[0].double(),))
        model[2].register_forward_hook(lambda module, args, output: (output + 1).float())
        model[2].register_buffer("scale", torch.ones(1))
        model.converted_by = name  # an instance attribute added
        model.eval()
        freeze(model, ["3.*", "0.inner.bias"])  # the bias's shape is the model's width
        if fail_after_changes:
            raise RuntimeError("the method failed half-way")
        return model

    return InvasiveConfig


def test_a_checkpoint_of_another_size_leaves_the_model_as_it_was(tmp_path, isolated_registry):
    config_class = _register_invasive_method()
    apply = registry_module.get_method(config_class.method).apply
    wider = apply(_base_model(width=8), config_class())
    save_trainable(wider, tmp_path / "wider", config_class())
    model = _base_model()
    x = torch.randn(3, 6)
    expected = model(x)
    before = _fingerprint(model)

    with pytest.raises(CheckpointError, match=r"shape mismatch.*as it was before the call"):
        peft_core.load(model, tmp_path / "wider")

    _assert_same(before, _fingerprint(model))
    assert torch.equal(model(x), expected)
    # The same model object then loads the right folder.
    trained = apply(_base_model(), config_class())
    with torch.no_grad():
        trained[3].up.weight.normal_()
    save_trainable(trained, tmp_path / "right", config_class())
    loaded = peft_core.load(model, tmp_path / "right")
    assert torch.equal(loaded(x), trained(x))


def test_a_method_that_fails_half_way_is_undone(tmp_path, isolated_registry):
    working = _register_invasive_method()
    trained = registry_module.get_method(working.method).apply(_base_model(), working())
    save_trainable(trained, tmp_path, working())
    failing = _register_invasive_method(fail_after_changes=True)
    record = (tmp_path / "adapter_config.json").read_text()
    (tmp_path / "adapter_config.json").write_text(record.replace(working.method, failing.method))
    model = _base_model()
    before = _fingerprint(model)

    with pytest.raises(RuntimeError, match="half-way"):
        peft_core.load(model, tmp_path)

    _assert_same(before, _fingerprint(model))


def test_a_folder_without_method_restores_the_trainable_flags(tmp_path):
    trained = _base_model()
    freeze(trained, ["2.*"])
    save_trainable(trained, tmp_path)
    other = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 5))  # another head size
    before = _fingerprint(other)

    with pytest.raises(CheckpointError, match="shape mismatch"):
        peft_core.load(other, tmp_path)

    _assert_same(before, _fingerprint(other))


def test_snapshot_keeps_hooks_registered_before_it_and_drops_later_ones():
    model = _base_model()
    calls: list[str] = []
    early = model[0].register_forward_hook(lambda *args: calls.append("early"))
    snapshot = ModelSnapshot(model)
    model[0].register_forward_hook(lambda *args: calls.append("late"))
    snapshot.restore()

    model(torch.randn(1, 6))
    assert calls == ["early"]
    early.remove()  # the handle still finds its hook in the restored dictionary
    model(torch.randn(1, 6))
    assert calls == ["early"]


def test_snapshot_restores_a_swapped_class_and_shared_parameters():
    model = _base_model()
    model[2].weight = nn.Parameter(torch.randn(4, 6))
    tied = nn.Linear(6, 4)
    tied.weight = model[2].weight  # one parameter in two modules
    model.append(tied)
    snapshot = ModelSnapshot(model)

    class Marked(nn.Linear):
        pass

    model[0].__class__ = Marked
    model[2].weight.requires_grad_(False)
    model[2].half()
    snapshot.restore()

    assert type(model[0]) is nn.Linear
    assert model[3].weight is model[2].weight
    assert model[2].weight.requires_grad
    assert model[2].weight.dtype == torch.float32


def test_snapshot_does_not_copy_tensor_values():
    model = _base_model()
    snapshot = ModelSnapshot(model)
    storages = {tensor.untyped_storage().data_ptr() for _, tensor, _ in snapshot._tensors}
    assert storages == {p.untyped_storage().data_ptr() for p in model.parameters()}
