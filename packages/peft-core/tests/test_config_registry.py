"""MethodConfig JSON round trips, the method registry, entry-point discovery and peft_core.load."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
import uuid
from importlib import metadata
from typing import ClassVar

import pytest
import torch
from torch import nn

import peft_core
from peft_core import (
    BottleneckAdapter,
    ConfigError,
    MethodConfig,
    freeze,
    get_method,
    register_method,
    registered_methods,
    save_trainable,
)
from peft_core import registry as registry_module
from peft_core.config import CONFIG_FORMAT_VERSION, NEWEST_FORMAT_VERSION


@dataclasses.dataclass
class ToyConfig(MethodConfig):
    method: ClassVar[str] = "toy-config-tests"

    bottleneck: int = 2
    targets: tuple[str, ...] = ("query", "value")
    dropout: float = 0.0
    init: str = "normal"
    layers: list[int] = dataclasses.field(default_factory=lambda: [0, 1])
    note: str | None = None

    validate_calls: ClassVar[int] = 0

    def validate(self) -> None:
        type(self).validate_calls += 1
        if self.bottleneck < 1:
            raise ConfigError(f"bottleneck must be >= 1, got {self.bottleneck}")


@dataclasses.dataclass
class OtherConfig(MethodConfig):
    method: ClassVar[str] = "other-config-tests"

    rank: int = 8


@pytest.fixture
def isolated_registry(monkeypatch):
    """A private copy of the method table, with installed entry points treated as already loaded.

    Other method packages of the monorepo may register real entry points; these tests must neither
    import them nor leave toy methods behind.
    """
    monkeypatch.setattr(registry_module, "_METHODS", dict(registry_module._METHODS))
    monkeypatch.setattr(registry_module, "_entry_points_loaded", True)
    return registry_module._METHODS


# -- config -------------------------------------------------------------------------------------


def test_to_dict_has_stamp_and_fields():
    config = ToyConfig(bottleneck=4, targets=("a",), note="x")
    data = config.to_dict()
    assert data["method"] == "toy-config-tests"
    assert data["format_version"] == CONFIG_FORMAT_VERSION
    assert data["library"] == ToyConfig.__module__.split(".")[0]
    assert "library_version" in data
    assert {k: data[k] for k in ("bottleneck", "targets", "dropout", "init", "layers", "note")} == {
        "bottleneck": 4,
        "targets": ("a",),
        "dropout": 0.0,
        "init": "normal",
        "layers": [0, 1],
        "note": "x",
    }
    assert set(data) == {
        "method",
        "library",
        "library_version",
        "format_version",
        "bottleneck",
        "targets",
        "dropout",
        "init",
        "layers",
        "note",
    }
    assert "validate_calls" not in data  # ClassVars are not fields


def test_library_stamp_names_the_defining_package_and_its_version():
    @dataclasses.dataclass
    class CoreConfig(MethodConfig):
        method: ClassVar[str] = "core-stamped"

    CoreConfig.__module__ = "peft_core.somewhere"
    data = CoreConfig().to_dict()
    assert data["library"] == "peft_core"
    assert data["library_version"] == peft_core.__version__

    CoreConfig.__module__ = "package_that_is_not_imported_xyz.config"
    assert CoreConfig.library() == ("package_that_is_not_imported_xyz", "unknown")


def test_json_round_trip_restores_tuples():
    config = ToyConfig(bottleneck=7, targets=("q", "k", "v"), dropout=0.25, layers=[3], note="n")
    text = config.to_json_string()
    data = json.loads(text)
    assert data["targets"] == ["q", "k", "v"]  # JSON has no tuples
    restored = ToyConfig.from_dict(data)
    assert restored == config
    assert isinstance(restored.targets, tuple)
    assert isinstance(restored.layers, list)  # a list field stays a list
    assert text.endswith("\n")
    assert list(data) == sorted(data)  # stable, diff-friendly output


def test_save_and_from_json_file_round_trip(tmp_path):
    config = ToyConfig(bottleneck=3, targets=("x",))
    path = config.save(tmp_path / "sub" / "config.json")
    assert path == tmp_path / "sub" / "config.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]  # no temporary left
    restored = ToyConfig.from_json_file(path)
    assert restored == config
    assert restored.targets == ("x",)
    assert json.loads(path.read_text())["method"] == "toy-config-tests"


def test_from_dict_without_stamp_uses_defaults():
    assert ToyConfig.from_dict({}) == ToyConfig()
    assert ToyConfig.from_dict({"bottleneck": 5}).bottleneck == 5


def test_unknown_key_rejected_with_did_you_mean():
    data = ToyConfig().to_dict()
    data["botleneck"] = 3
    with pytest.raises(ConfigError, match="did you mean 'bottleneck'") as info:
        ToyConfig.from_dict(data)
    message = str(info.value)
    assert "'botleneck'" in message
    assert "Known keys" in message


def test_unknown_key_without_close_match_is_still_rejected():
    with pytest.raises(ConfigError, match="unknown key") as info:
        ToyConfig.from_dict({"zzzzqqq": 1})
    assert "did you mean" not in str(info.value)


def test_classvar_is_not_a_loadable_key():
    with pytest.raises(ConfigError, match="validate_calls"):
        ToyConfig.from_dict({"validate_calls": 3})


def test_wrong_method_rejected():
    data = OtherConfig().to_dict()
    with pytest.raises(ConfigError, match="other-config-tests") as info:
        ToyConfig.from_dict(data)
    assert "toy-config-tests" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("version", [NEWEST_FORMAT_VERSION + 1, 99, "1", 1.0, None])
def test_newer_or_malformed_format_version_rejected(version):
    data = ToyConfig().to_dict()
    data["format_version"] = version
    with pytest.raises(ConfigError, match="format_version"):
        ToyConfig.from_dict(data)


def test_current_format_version_accepted():
    data = ToyConfig().to_dict()
    for version in range(1, NEWEST_FORMAT_VERSION + 1):
        data["format_version"] = version
        assert ToyConfig.from_dict(data) == ToyConfig()


def test_validate_runs_on_construction_and_on_load(tmp_path, monkeypatch):
    monkeypatch.setattr(ToyConfig, "validate_calls", 0)
    ToyConfig()
    assert ToyConfig.validate_calls == 1
    with pytest.raises(ConfigError, match="bottleneck must be >= 1"):
        ToyConfig(bottleneck=0)
    good = ToyConfig(bottleneck=2)
    data = good.to_dict()
    calls = ToyConfig.validate_calls
    ToyConfig.from_dict(data)
    assert ToyConfig.validate_calls == calls + 1
    data["bottleneck"] = 0
    with pytest.raises(ConfigError, match="bottleneck must be >= 1"):
        ToyConfig.from_dict(data)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="bottleneck must be >= 1"):
        ToyConfig.from_json_file(path)


def test_truncated_json_file_is_a_config_error(tmp_path):
    path = ToyConfig(note="some text").save(tmp_path / "config.json")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ConfigError, match="truncated") as info:
        ToyConfig.from_json_file(path)
    assert str(path) in str(info.value)


def test_missing_and_non_object_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config file"):
        ToyConfig.from_json_file(tmp_path / "absent.json")
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        ToyConfig.from_json_file(path)
    with pytest.raises(ConfigError, match="expects a dict"):
        ToyConfig.from_dict([("bottleneck", 2)])


# -- registry -----------------------------------------------------------------------------------


def _toy_config_class(name: str) -> type[MethodConfig]:
    @dataclasses.dataclass
    class ToyMethodConfig(MethodConfig):
        method: ClassVar[str] = name

        bottleneck: int = 2
        targets: tuple[str, ...] = ("2",)
        init: str = "normal"

    return ToyMethodConfig


def _base_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 4))


def test_register_and_get_method(isolated_registry):
    name = f"toy-{uuid.uuid4().hex}"
    config_class = _toy_config_class(name)

    @register_method(name, config_class)
    def apply(model, config):
        return model

    spec = get_method(name)
    assert spec.name == name
    assert spec.config_class is config_class
    assert spec.apply is apply
    assert name in registered_methods()
    assert registered_methods() == sorted(registered_methods())


def test_register_rejects_mismatched_name_and_non_config(isolated_registry):
    config_class = _toy_config_class("toy-a")
    with pytest.raises(ValueError, match="must agree") as info:
        register_method("toy-b", config_class)
    assert "toy-a" in str(info.value)
    assert "toy-b" in str(info.value)

    class NotAConfig:
        method = "toy-c"

    with pytest.raises(TypeError, match="MethodConfig"):
        register_method("toy-c", NotAConfig)
    assert "toy-b" not in isolated_registry
    assert "toy-c" not in isolated_registry


def test_duplicate_registration_from_elsewhere_is_rejected(isolated_registry):
    name = f"toy-{uuid.uuid4().hex}"
    config_class = _toy_config_class(name)

    def first(model, config):
        return model

    def second(model, config):
        return model

    register_method(name, config_class)(first)
    register_method(name, config_class)(first)  # the same function again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_method(name, config_class)(second)
    assert get_method(name).apply is first

    # A module re-imported (importlib.reload) defines a new function with the same qualified name.
    def reloaded(model, config):
        return model

    reloaded.__qualname__ = first.__qualname__
    register_method(name, config_class)(reloaded)
    assert get_method(name).apply is reloaded


def test_unknown_method_raises_key_error_with_install_hints(isolated_registry):
    name = f"missing-{uuid.uuid4().hex}"
    with pytest.raises(KeyError, match=name) as info:
        get_method(name)
    message = str(info.value)
    assert "pip install" in message
    for package in ("meft", "deft-peft", "point-peft"):
        assert package in message


def _write_plugin_module(tmp_path, module_name: str, method_name: str, monkeypatch) -> None:
    """An importable plugin module registering ``method_name`` (its ``IMPORTS`` counts imports)."""
    (tmp_path / f"{module_name}.py").write_text(
        textwrap.dedent(
            f"""
            import dataclasses
            from typing import ClassVar

            from peft_core import MethodConfig, register_method

            IMPORTS = []


            @dataclasses.dataclass
            class PluginConfig(MethodConfig):
                method: ClassVar[str] = {method_name!r}
                size: int = 1


            @register_method({method_name!r}, PluginConfig)
            def apply(model, config):
                return model


            IMPORTS.append(1)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_entry_points_are_discovered_lazily_and_once(tmp_path, monkeypatch, isolated_registry):
    unique = uuid.uuid4().hex
    method_name = f"toy-ep-{unique}"
    module_name = f"toy_plugin_{unique}"
    _write_plugin_module(tmp_path, module_name, method_name, monkeypatch)
    monkeypatch.delitem(sys.modules, module_name, raising=False)

    groups: list[str | None] = []

    def fake_entry_points(**kwargs):
        groups.append(kwargs.get("group"))
        if kwargs.get("group") != "peft_core.methods":
            return []
        return [
            metadata.EntryPoint(
                name="toyplug", value=f"{module_name}:apply", group="peft_core.methods"
            )
        ]

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry_module, "_entry_points_loaded", False)
    try:
        assert module_name not in sys.modules
        spec = get_method(method_name)
        assert spec.name == method_name
        assert spec.config_class.__name__ == "PluginConfig"
        assert spec.apply.__module__ == module_name
        assert groups == ["peft_core.methods"]
        assert sys.modules[module_name].IMPORTS == [1]

        # Later lookups (found or not) do not scan entry points again.
        assert get_method(method_name) is spec
        with pytest.raises(KeyError):
            get_method(f"other-{unique}")
        assert method_name in registered_methods()
        assert groups == ["peft_core.methods"]
    finally:
        sys.modules.pop(module_name, None)


def test_a_broken_plugin_does_not_hide_the_other_methods(tmp_path, monkeypatch, isolated_registry):
    # One plugin whose import fails (a missing dependency) used to abort the scan: the error
    # escaped get_method, and every later lookup said the working methods were not installed.
    unique = uuid.uuid4().hex
    method_name = f"toy-ok-{unique}"
    module_name = f"toy_ok_plugin_{unique}"
    _write_plugin_module(tmp_path, module_name, method_name, monkeypatch)
    broken = metadata.EntryPoint(
        name="broken", value=f"missing_module_{unique}", group="peft_core.methods"
    )
    working = metadata.EntryPoint(
        name=method_name, value=f"{module_name}:apply", group="peft_core.methods"
    )
    monkeypatch.setattr(metadata, "entry_points", lambda **kwargs: [broken, working])
    monkeypatch.setattr(registry_module, "_entry_points_loaded", False)
    monkeypatch.setattr(registry_module, "_PLUGIN_FAILURES", {})
    try:
        with pytest.warns(
            RuntimeWarning, match=f"'broken' failed to import.*missing_module_{unique}"
        ):
            assert get_method(method_name).name == method_name
        with pytest.raises(KeyError, match="'broken' is installed but failed to import") as info:
            get_method("broken")
        assert f"missing_module_{unique}" in str(info.value)
        with pytest.raises(KeyError, match="These installed plugins failed to import: broken"):
            get_method(f"other-{unique}")
    finally:
        sys.modules.pop(module_name, None)


# -- peft_core.load -----------------------------------------------------------------------------


def test_load_rebuilds_a_registered_method(tmp_path, isolated_registry):
    name = f"toy-{uuid.uuid4().hex}"
    config_class = _toy_config_class(name)
    applied: list[MethodConfig] = []

    @register_method(name, config_class)
    def apply_toy(model: nn.Sequential, config) -> nn.Module:
        applied.append(config)
        model.append(BottleneckAdapter(4, config.bottleneck, init=config.init, residual=True))
        freeze(model, ["3.*", *(f"{t}.bias" for t in config.targets)])
        return model

    config = config_class(bottleneck=3, targets=("0", "2"), init="xavier")
    trained = apply_toy(_base_model(), config)
    with torch.no_grad():  # "training": move the trainable tensors away from their init
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    save_trainable(trained, tmp_path, config)

    fresh = _base_model()
    torch.manual_seed(1234)  # the adapter of the rebuilt model starts from different values
    loaded = peft_core.load(fresh, tmp_path)

    assert isinstance(loaded[3], BottleneckAdapter)
    assert loaded[3].bottleneck == 3
    assert applied[-1] == config
    assert isinstance(applied[-1].targets, tuple)
    trained_state = {n: p for n, p in trained.named_parameters() if p.requires_grad}
    loaded_state = {n: p for n, p in loaded.named_parameters() if p.requires_grad}
    assert sorted(loaded_state) == sorted(trained_state)
    assert sorted(trained_state) == [
        "0.bias",
        "2.bias",
        "3.down.bias",
        "3.down.weight",
        "3.up.bias",
        "3.up.weight",
    ]
    for key, value in trained_state.items():
        assert torch.equal(loaded_state[key], value), key
    # Frozen base weights come from the base model and agree too.
    for (key, a), b in zip(trained.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    x = torch.randn(5, 6)
    assert torch.equal(loaded(x), trained(x))


def test_load_without_method_only_loads_tensors(tmp_path, isolated_registry):
    trained = _base_model()
    freeze(trained, ["2.*"])
    with torch.no_grad():
        trained[2].weight.mul_(3)
    save_trainable(trained, tmp_path)
    fresh = _base_model()
    freeze(fresh, ["2.*"])
    loaded = peft_core.load(fresh, tmp_path)
    assert loaded is fresh
    assert torch.equal(loaded[2].weight, trained[2].weight)


def test_load_of_unknown_method_names_it(tmp_path, isolated_registry):
    name = f"toy-{uuid.uuid4().hex}"
    config_class = _toy_config_class(name)
    model = _base_model()
    freeze(model, ["2.*"])
    save_trainable(model, tmp_path, config_class())
    with pytest.raises(KeyError, match=name):
        peft_core.load(_base_model(), tmp_path)


def test_load_keeps_a_saved_buffers_config_field(tmp_path, isolated_registry):
    # save_trainable honours a config's ``saved_buffers``; a config may declare it as a field, and
    # peft_core.load must then hand the method the saved value, not the field's default.
    name = f"toy-{uuid.uuid4().hex}"

    @dataclasses.dataclass
    class BufferFieldConfig(MethodConfig):
        method: ClassVar[str] = name

        saved_buffers: tuple[str, ...] = ()
        rank: int = 1

    applied: list[MethodConfig] = []

    @register_method(name, BufferFieldConfig)
    def apply_with_norm(model: nn.Sequential, config) -> nn.Module:
        applied.append(config)
        model.append(nn.BatchNorm1d(4))
        freeze(model, ["3.*"])
        return model

    config = BufferFieldConfig(saved_buffers=("3.running_*",), rank=3)
    trained = apply_with_norm(_base_model(), config)
    with torch.no_grad():
        trained[3].running_mean.uniform_()
    save_trainable(trained, tmp_path, config)

    loaded = peft_core.load(_base_model(), tmp_path)
    assert applied[-1] == config
    assert torch.equal(loaded[3].running_mean, trained[3].running_mean)
