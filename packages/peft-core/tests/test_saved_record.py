"""A saved folder's two files cannot be torn apart: the weights file carries its own record."""

from __future__ import annotations

import dataclasses
import json
import warnings
from typing import ClassVar

import pytest
import torch
from torch import nn

import peft_core
from peft_core import LoadResult, MethodConfig, freeze, load_trainable, save_trainable
from peft_core.config import SAVED_FOLDER_KEYS
from peft_core.saved_record import (
    CONFIG_NAME,
    DIGEST_KEY,
    WEIGHTS_NAME,
    read_saved_record,
    tensors_digest,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 2)


@dataclasses.dataclass
class RankConfig(MethodConfig):
    method: ClassVar[str] = "saved-record-tests"
    saved_buffers: ClassVar[tuple[str, ...]] = ("bn.running_*",)

    rank: int = 2


@peft_core.register_method("saved-record-tests", RankConfig)
def _apply(model: nn.Module, config: RankConfig) -> nn.Module:
    freeze(model, ["head.*"] if config.rank < 4 else ["head.*", "body.*"])
    return model


def _trained(seed: int) -> Net:
    torch.manual_seed(seed)
    model = Net()
    with torch.no_grad():
        model.bn.running_mean.uniform_()
    return model


def _interrupted_save(monkeypatch, model, directory, config) -> None:
    """A save killed after its weights file was renamed into place, before its config file."""
    import peft_core.serialization as serialization

    def killed(path, text):
        raise KeyboardInterrupt("killed between the two files")

    monkeypatch.setattr(serialization, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        save_trainable(model, directory, config)
    monkeypatch.undo()


def test_interrupted_save_loads_as_the_new_save(tmp_path, monkeypatch):
    old, new = _trained(0), _trained(1)
    save_trainable(_apply(old, RankConfig(rank=2)), tmp_path, RankConfig(rank=2))
    # The new save trains more (rank 4 unfreezes body): its weights hold body.* as well.
    _interrupted_save(monkeypatch, _apply(new, RankConfig(rank=4)), tmp_path, RankConfig(rank=4))
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["rank"] == 2  # the stale config

    with pytest.warns(UserWarning, match="saved with other weights.*inside adapter_model"):
        loaded = peft_core.load(Net(), tmp_path)
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == {
        "head.weight",
        "head.bias",
        "body.weight",
        "body.bias",
    }
    for name, tensor in new.state_dict().items():
        if not name.startswith("bn.") or name.startswith("bn.running_"):
            assert torch.equal(loaded.state_dict()[name], tensor), name


def test_interrupted_first_save_loads_without_its_config_file(tmp_path, monkeypatch):
    model = _apply(_trained(0), RankConfig())
    _interrupted_save(monkeypatch, model, tmp_path, RankConfig())
    assert not (tmp_path / CONFIG_NAME).exists()
    with pytest.warns(UserWarning, match="adapter_config.json is unreadable") as caught:
        assert load_trainable(_apply(Net(), RankConfig()), tmp_path) == LoadResult([], [])
    assert [w.filename for w in caught] == [__file__]  # once, and pointing at the caller
    with pytest.warns(UserWarning, match="adapter_config.json is unreadable") as caught:
        peft_core.load(Net(), tmp_path)
    assert [w.filename for w in caught] == [__file__]


def test_config_edited_by_hand_is_honoured(tmp_path):
    save_trainable(_apply(_trained(0), RankConfig(rank=2)), tmp_path, RankConfig(rank=2))
    record = json.loads((tmp_path / CONFIG_NAME).read_text())
    record["rank"] = 3  # the digest is untouched: the file still belongs to these weights
    (tmp_path / CONFIG_NAME).write_text(json.dumps(record))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_saved_record(tmp_path)["rank"] == 3


def test_folder_of_an_older_writer_reads_its_config_file(tmp_path):
    from safetensors.torch import load_file, save_file

    save_trainable(_apply(_trained(0), RankConfig()), tmp_path, RankConfig())
    weights = tmp_path / WEIGHTS_NAME
    save_file(load_file(str(weights)), str(weights), metadata={"format": "pt"})
    record = json.loads((tmp_path / CONFIG_NAME).read_text())
    del record[DIGEST_KEY]
    (tmp_path / CONFIG_NAME).write_text(json.dumps(record))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_saved_record(tmp_path) == record
        peft_core.load(Net(), tmp_path)


def test_folder_with_neither_record_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config file"):
        read_saved_record(tmp_path)


def test_digest_changes_with_any_byte_name_dtype_or_shape():
    base = {"a": torch.arange(6, dtype=torch.float32), "b": torch.ones(2, dtype=torch.bfloat16)}
    digest = tensors_digest(base)
    assert tensors_digest({k: v.clone() for k, v in base.items()}) == digest
    flipped = base["a"].clone()
    flipped.view(torch.int32)[3] ^= 1  # one bit of one element
    variants = [
        {**base, "a": flipped},
        {"c": base["a"], "b": base["b"]},
        {**base, "a": base["a"].to(torch.float64)},
        {**base, "a": base["a"].reshape(2, 3)},
    ]
    assert len({digest, *(tensors_digest(v) for v in variants)}) == 1 + len(variants)
    # Strided and non-contiguous tensors hash as their values.
    strided = torch.arange(10.0)[2:8:2]
    assert tensors_digest({"a": strided}) == tensors_digest({"a": strided.clone()})
    matrix = torch.arange(6.0).reshape(2, 3)
    assert tensors_digest({"a": matrix.t()}) == tensors_digest({"a": matrix.t().contiguous()})


@dataclasses.dataclass
class FieldNamedLikeAFolderKey(MethodConfig):
    method: ClassVar[str] = "saved-record-field-tests"

    saved_buffers: tuple[str, ...] = ("bn.running_mean",)


def test_a_folder_record_reads_back_as_its_config(tmp_path):
    assert DIGEST_KEY in SAVED_FOLDER_KEYS
    save_trainable(_apply(_trained(0), RankConfig(rank=3)), tmp_path, RankConfig(rank=3))
    assert RankConfig.from_json_file(tmp_path / CONFIG_NAME) == RankConfig(rank=3)
    # A config that declares a field of the same name keeps it.
    config = FieldNamedLikeAFolderKey(saved_buffers=("bn.running_var",))
    save_trainable(_trained(0), tmp_path / "field", config)
    assert FieldNamedLikeAFolderKey.from_json_file(tmp_path / "field" / CONFIG_NAME) == config
