"""save_trainable / load_trainable: what is written, what is restored, and how failures read."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from typing import ClassVar

import pytest
import torch
from safetensors import safe_open
from torch import nn

import peft_core
from peft_core import (
    CheckpointError,
    ConfigError,
    LoadResult,
    MethodConfig,
    freeze,
    load_trainable,
    save_trainable,
)
from peft_core.saved_record import RECORD_METADATA_KEY
from peft_core.serialization import CONFIG_NAME, WEIGHTS_NAME
from peft_core.testing.threads import one_torch_thread


class Net(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.body = nn.Linear(4, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.head = nn.Linear(hidden, 10, bias=False)
        self.register_buffer("bank", torch.zeros(3), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(torch.relu(self.body(self.embed(tokens)))))


class TiedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.embed.weight
        self.body = nn.Linear(4, 4)


@dataclasses.dataclass
class BufferConfig(MethodConfig):
    method: ClassVar[str] = "serialization-tests"
    saved_buffers: ClassVar[tuple[str, ...]] = ("bn.running_*",)

    rank: int = 2


def _model(seed: int = 0, **kwargs) -> Net:
    torch.manual_seed(seed)
    model = Net(**kwargs)
    freeze(model, ["body.*", "bn.weight", "bn.bias"])
    return model


def _perturb_trainable(model: nn.Module, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator))


def _saved_keys(directory) -> list[str]:
    with safe_open(str(directory / WEIGHTS_NAME), framework="pt") as handle:
        return sorted(handle.keys())


def test_only_trainable_tensors_are_saved(tmp_path):
    model = _model()
    save_trainable(model, tmp_path)
    assert _saved_keys(tmp_path) == ["bn.bias", "bn.weight", "body.bias", "body.weight"]
    record = json.loads((tmp_path / CONFIG_NAME).read_text())
    with safe_open(str(tmp_path / WEIGHTS_NAME), framework="pt") as handle:
        metadata = handle.metadata()
        assert torch.equal(handle.get_tensor("body.weight"), model.body.weight)
    # The weights file carries the same record, so that the pair cannot be torn apart.
    assert metadata.pop("format") == "pt"
    assert json.loads(metadata.pop(RECORD_METADATA_KEY)) == record
    assert metadata == {}
    assert sorted(os.listdir(tmp_path)) == [CONFIG_NAME, WEIGHTS_NAME]
    assert record["method"] is None
    assert record["saved_buffers"] == []
    assert record["saved_parameters"] == record["frozen_parameters"] == []
    # Format 2: releases that read format 1 alone refuse it by name instead of by unknown key.
    assert record["format_version"] == 2
    assert "peft_core_version" in record


def test_tied_trainable_parameter_is_saved_once(tmp_path):
    model = TiedNet()
    freeze(model, ["lm_head.weight"])
    save_trainable(model, tmp_path)
    assert _saved_keys(tmp_path) == ["embed.weight"]
    fresh = TiedNet()
    freeze(fresh, ["lm_head.weight"])
    assert load_trainable(fresh, tmp_path) == LoadResult([], [])
    assert torch.equal(fresh.lm_head.weight, model.embed.weight)
    assert fresh.lm_head.weight is fresh.embed.weight


def test_tied_tensor_saved_under_its_other_name_loads_without_missing_keys(tmp_path):
    # A file from another writer may key the tied tensor by its second name.
    from safetensors.torch import save_file

    model = TiedNet()
    save_file({"lm_head.weight": model.embed.weight.detach().clone()}, tmp_path / WEIGHTS_NAME)
    fresh = TiedNet()
    freeze(fresh, ["lm_head.weight"])
    assert load_trainable(fresh, tmp_path) == LoadResult([], [])
    assert torch.equal(fresh.embed.weight, model.embed.weight)


def test_include_buffers_saves_matching_buffers(tmp_path):
    model = _model()
    model.train()
    model(torch.randint(0, 10, (16,)))  # update the running statistics
    save_trainable(model, tmp_path, include_buffers=["bn.running_*", "bank"])
    keys = _saved_keys(tmp_path)
    assert "bn.running_mean" in keys
    assert "bn.running_var" in keys
    assert "bank" in keys
    assert "bn.num_batches_tracked" not in keys
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["saved_buffers"] == [
        "bn.running_*",
        "bank",
    ]


def test_include_buffers_pattern_matching_nothing_is_an_error(tmp_path):
    # A misspelt buffer used to be left out of the checkpoint without a word.
    with pytest.raises(ValueError, match=r"'bn\.runing_mean'.*bn\.running_mean") as info:
        save_trainable(_model(), tmp_path, include_buffers=["bank", "bn.runing_mean"])
    assert "'bank'" not in str(info.value).split("buffers are")[0]
    assert not (tmp_path / WEIGHTS_NAME).exists()


def test_folder_of_a_newer_format_is_refused_before_the_model_changes(tmp_path):
    # A method-less folder never reaches MethodConfig.from_dict, whose check was the only one:
    # a folder in a format this version cannot read loaded as if it could.
    save_trainable(_model(), tmp_path)
    record = json.loads((tmp_path / CONFIG_NAME).read_text())
    record["format_version"] = 99
    (tmp_path / CONFIG_NAME).write_text(json.dumps(record))
    for load in (load_trainable, peft_core.load):
        model = Net()
        with pytest.raises(ConfigError, match="format_version 99 is newer"):
            load(model, tmp_path)
        assert all(p.requires_grad for p in model.parameters())


def test_config_saved_buffers_are_saved_and_restored(tmp_path):
    model = _model()
    with torch.no_grad():
        model.bn.running_mean.uniform_()
        model.bn.running_var.uniform_(1, 2)
    config = BufferConfig(rank=5)
    save_trainable(model, tmp_path, config)
    assert _saved_keys(tmp_path) == [
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.weight",
        "body.bias",
        "body.weight",
    ]
    record = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert record["method"] == "serialization-tests"
    assert record["rank"] == 5
    assert record["saved_buffers"] == ["bn.running_*"]

    fresh = _model(seed=3)
    assert load_trainable(fresh, tmp_path) == LoadResult([], [])
    assert torch.equal(fresh.bn.running_mean, model.bn.running_mean)
    assert torch.equal(fresh.bn.running_var, model.bn.running_var)


@dataclasses.dataclass
class FrozenTokenConfig(MethodConfig):
    method: ClassVar[str] = "serialization-frozen-token-tests"
    saved_parameters: ClassVar[tuple[str, ...]] = ("embed.*",)


def test_include_parameters_saves_frozen_parameters_and_load_restores_them(tmp_path):
    # A frozen tensor a fresh base model would draw anew (here the embedding, frozen at a random
    # init) must travel with the trained ones, or a reload restores another model.
    model = _model(seed=0)
    assert not model.embed.weight.requires_grad
    save_trainable(model, tmp_path, include_parameters=["embed.weight", "head.*"])
    assert {"embed.weight", "head.weight"} <= set(_saved_keys(tmp_path))
    record = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert record["saved_parameters"] == ["embed.weight", "head.*"]
    assert record["frozen_parameters"] == ["embed.weight", "head.weight"]

    fresh = _model(seed=5)
    assert not torch.equal(fresh.embed.weight, model.embed.weight)
    assert load_trainable(fresh, tmp_path) == LoadResult([], [])
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert not fresh.embed.weight.requires_grad  # loading copies values, it does not unfreeze
    tokens = torch.tensor([1, 2, 3])
    model.eval(), fresh.eval()
    assert torch.equal(fresh(tokens), model(tokens))


def test_config_saved_parameters_are_saved_and_a_file_without_them_is_refused(tmp_path):
    model = _model()
    save_trainable(model, tmp_path / "with", FrozenTokenConfig())
    assert "embed.weight" in _saved_keys(tmp_path / "with")
    # A file that lacks a tensor its record promises is incomplete: strict loading names it.
    save_trainable(model, tmp_path / "without")
    record = json.loads((tmp_path / "with" / CONFIG_NAME).read_text())
    (tmp_path / "without" / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="saved with other weights"):
        assert load_trainable(_model(), tmp_path / "without") == LoadResult([], [])
    _rewrite_without_embedded_record(tmp_path / "without" / WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match=r"missing keys: embed\.weight"):
        load_trainable(_model(), tmp_path / "without")


def test_a_frozen_tied_parameter_is_matched_by_either_name(tmp_path):
    model = TiedNet()
    freeze(model, ["body.*"])  # the tied embedding / lm_head stays frozen
    save_trainable(model, tmp_path, include_parameters=["lm_head.weight"])
    assert _saved_keys(tmp_path) == ["body.bias", "body.weight", "embed.weight"]
    fresh = TiedNet()
    freeze(fresh, ["body.*"])
    assert load_trainable(fresh, tmp_path) == LoadResult([], [])
    assert torch.equal(fresh.lm_head.weight, model.embed.weight)


def test_a_methodless_load_keeps_the_saved_frozen_parameters_frozen(tmp_path):
    model = _model()  # body and bn affine trainable; embed and head frozen
    save_trainable(model, tmp_path, include_parameters=["embed.weight"])
    loaded = peft_core.load(Net(), tmp_path)
    trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in model.named_parameters() if p.requires_grad}
    assert torch.equal(loaded.embed.weight, model.embed.weight)


def _rewrite_without_embedded_record(path) -> None:
    """Rewrite a weights file as a writer that embeds no record would have (an older release)."""
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(path), metadata={"format": "pt"})


def test_include_parameters_pattern_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"include_parameters.*'embd\.weight'.*embed\.weight"):
        save_trainable(_model(), tmp_path, include_parameters=["embd.weight"])
    assert not (tmp_path / WEIGHTS_NAME).exists()


def test_non_persistent_buffer_round_trips(tmp_path):
    # A non-persistent buffer is absent from state_dict() but named_buffers() has it.
    model = _model()
    model.bank.fill_(7)
    save_trainable(model, tmp_path, include_buffers=["bank"])
    fresh = _model()
    assert load_trainable(fresh, tmp_path) == LoadResult([], [])
    assert torch.equal(fresh.bank, torch.full((3,), 7.0))


def test_load_into_fresh_model_restores_bitwise_and_leaves_frozen_alone(tmp_path):
    model = _model()
    _perturb_trainable(model)
    save_trainable(model, tmp_path)
    fresh = _model(seed=0)
    frozen_before = {n: p.clone() for n, p in fresh.named_parameters() if not p.requires_grad}
    with torch.no_grad():
        fresh.embed.weight.add_(1.0)  # a frozen tensor the checkpoint must not touch
        frozen_before["embed.weight"] = fresh.embed.weight.clone()
    result = load_trainable(fresh, tmp_path)
    assert result == LoadResult(missing_keys=[], unexpected_keys=[])
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert torch.equal(dict(fresh.named_parameters())[name], p), name
    for name, value in frozen_before.items():
        assert torch.equal(dict(fresh.named_parameters())[name], value), name


def test_load_keeps_dtype_of_model(tmp_path):
    model = _model()
    save_trainable(model, tmp_path)
    fresh = _model().double()
    load_trainable(fresh, tmp_path)
    assert fresh.body.weight.dtype == torch.float64
    assert torch.equal(fresh.body.weight, model.body.weight.double())


def test_missing_keys_named_when_strict_and_returned_otherwise(tmp_path):
    model = _model()
    save_trainable(model, tmp_path)
    bigger = _model()
    freeze(bigger, ["body.*", "bn.weight", "bn.bias", "head.weight"])
    with pytest.raises(CheckpointError, match=r"missing keys: head\.weight") as info:
        load_trainable(bigger, tmp_path)
    assert "unexpected" not in str(info.value)

    _perturb_trainable(model)
    save_trainable(model, tmp_path)
    result = load_trainable(bigger, tmp_path, strict=False)
    assert result == LoadResult(missing_keys=["head.weight"], unexpected_keys=[])
    assert torch.equal(bigger.body.weight, model.body.weight)  # the rest still loaded


def test_unexpected_keys_named_when_strict_and_returned_otherwise(tmp_path):
    model = _model()
    model.extra = nn.Linear(2, 2)
    _perturb_trainable(model)
    save_trainable(model, tmp_path)
    plain = _model(seed=5)
    with pytest.raises(
        CheckpointError, match=r"unexpected keys: extra\.bias, extra\.weight"
    ) as info:
        load_trainable(plain, tmp_path)
    assert "missing" not in str(info.value)
    assert not torch.equal(plain.body.weight, model.body.weight)  # strict failure loads nothing

    result = load_trainable(plain, tmp_path, strict=False)
    assert result == LoadResult(missing_keys=[], unexpected_keys=["extra.bias", "extra.weight"])
    assert torch.equal(plain.body.weight, model.body.weight)


def test_missing_and_unexpected_together(tmp_path):
    model = _model()
    save_trainable(model, tmp_path)
    other = _model()
    freeze(other, ["head.weight"])
    with pytest.raises(CheckpointError) as info:
        load_trainable(other, tmp_path)
    message = str(info.value)
    assert "missing keys: head.weight" in message
    assert "unexpected keys" not in message  # body/bn exist in the model, only frozen there
    result = load_trainable(other, tmp_path, strict=False)
    assert result.missing_keys == ["head.weight"]


@pytest.mark.parametrize("strict", [True, False])
def test_wrong_shape_names_the_tensor(tmp_path, strict):
    save_trainable(_model(hidden=8), tmp_path)
    wrong = _model(hidden=6)
    with pytest.raises(CheckpointError, match="shape mismatch") as info:
        load_trainable(wrong, tmp_path, strict=strict)
    message = str(info.value)
    assert "body.weight: saved (8, 4), model (6, 4)" in message
    assert "bn.weight" in message
    assert "Net" in message


def test_corrupt_file_is_a_checkpoint_error(tmp_path):
    save_trainable(_model(), tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(
        torch.randint(
            0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        )
        .numpy()
        .tobytes()
    )
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_trainable(_model(), tmp_path)
    assert WEIGHTS_NAME in str(info.value)


@pytest.mark.parametrize("cut", ["half", "data_only", "empty"])
def test_truncated_file_is_a_checkpoint_error(tmp_path, cut):
    save_trainable(_model(hidden=256), tmp_path)
    path = tmp_path / WEIGHTS_NAME
    data = path.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    assert len(data) > 2 * header  # the first half holds the whole header and some tensor data
    keep = {"half": len(data) // 2, "data_only": len(data) - 4, "empty": 0}[cut]
    path.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_trainable(_model(hidden=256), tmp_path)


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        load_trainable(_model(), tmp_path)


def test_saving_with_nothing_trainable_errors(tmp_path):
    model = _model()
    freeze(model, [])
    with pytest.raises(CheckpointError, match="no trainable parameter"):
        save_trainable(model, tmp_path / "out")
    assert not (tmp_path / "out" / WEIGHTS_NAME).exists()


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    import safetensors.torch

    model = _model()
    save_trainable(model, tmp_path)
    before = (tmp_path / WEIGHTS_NAME).read_bytes()

    def broken_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 10)
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save_file)
    _perturb_trainable(model)
    with pytest.raises(OSError, match="disk full"):
        save_trainable(model, tmp_path)
    assert (tmp_path / WEIGHTS_NAME).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [CONFIG_NAME, WEIGHTS_NAME]


_CROSS_PROCESS_SCRIPT = textwrap.dedent(
    """
    import sys

    import torch
    from torch import nn

    from peft_core import BottleneckAdapter, freeze, load_trainable, save_trainable


    def build():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(8, 16), nn.GELU(), BottleneckAdapter(16, 4, residual=True), nn.Linear(16, 3)
        )
        freeze(model, ["2.*", "3.bias"])
        return model


    def inputs():
        return torch.randn(5, 8, generator=torch.Generator().manual_seed(42))


    def save(directory):
        model = build()
        torch.manual_seed(7)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p))
        save_trainable(model, directory)
        return model(inputs()).detach()


    def load(directory):
        model = build()
        before = model(inputs())
        load_trainable(model, directory)
        logits = model(inputs()).detach()
        assert not torch.equal(before, logits), "loading changed nothing"
        return logits


    if __name__ == "__main__":
        torch.set_num_threads(1)
        torch.save(load(sys.argv[1]), sys.argv[2])
    """
)


def test_save_then_load_in_a_fresh_process_gives_identical_outputs(tmp_path):
    # Save here, load in a brand-new interpreter: nothing but the files on disk carries over.
    script = tmp_path / "roundtrip.py"
    script.write_text(_CROSS_PROCESS_SCRIPT)
    namespace: dict = {"__name__": "roundtrip"}
    exec(compile(_CROSS_PROCESS_SCRIPT, str(script), "exec"), namespace)
    checkpoint = tmp_path / "ckpt"
    with one_torch_thread():  # same kernels as the child, so outputs can be compared bitwise
        expected = namespace["save"](checkpoint)

    completed = subprocess.run(
        [sys.executable, str(script), str(checkpoint), str(tmp_path / "loaded.pt")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert completed.returncode == 0, completed.stderr
    loaded = torch.load(tmp_path / "loaded.pt")
    assert expected.shape == (5, 3)
    assert torch.equal(expected, loaded)


def test_load_without_a_method_rebuilds_the_trainable_set_of_a_model_frozen_by_hand(tmp_path):
    import peft_core

    model = _model()  # body and head trainable, frozen by hand: no method config is saved
    _perturb_trainable(model)
    save_trainable(model, tmp_path)
    fresh = Net()  # a fresh base model: everything trainable
    loaded = peft_core.load(fresh, tmp_path)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == trained
    for name, parameter in model.named_parameters():
        if name in trained:
            assert torch.equal(dict(loaded.named_parameters())[name], parameter), name
