"""MeftConfig validation, and saving/loading a MEFT model through peft-core."""

from __future__ import annotations

import copy
import io
import json
import math
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from tiny_models import text_batch, tiny_bert

import peft_core
from meft import MeftConfig, get_meft_model, unload
from peft_core import ConfigError
from peft_core.testing import TrainableRoundTripTests


@pytest.mark.parametrize(
    ("variant", "factors"), [("meft1", (0.1, 1.0)), ("meft2", (1.0, 0.1)), ("meft3", (0.1, 0.1))]
)
def test_per_variant_default_factors(variant, factors):
    assert MeftConfig(variant=variant).factors == factors


@pytest.mark.parametrize("value", [0, -0.1, math.inf, math.nan])
@pytest.mark.parametrize("field", ["x1_factor", "x2_factor"])
def test_bad_factors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        MeftConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("variant", "meft4"), ("adapter_dim", 0), ("adapter_init", "xavier"), ("num_reversible_layers", -1),
     ("stream_dtype", "float16"), ("adapter_dropout", 1.0)],
)  # fmt: skip
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        MeftConfig(**{field: value})


def test_numpy_scalars_are_numbers_and_stored_as_pythons():
    np = pytest.importorskip("numpy")
    config = MeftConfig(
        adapter_dim=np.int64(8), x1_factor=np.float32(0.5), adapter_dropout=np.float64(0)
    )
    assert (type(config.adapter_dim), type(config.x1_factor)) == (int, float)
    assert MeftConfig.from_dict(json.loads(config.to_json_string())) == config  # Python numbers
    with pytest.raises(ConfigError, match="adapter_dim"):
        MeftConfig(adapter_dim=np.float64(8))


def test_a_field_changed_after_construction_is_checked_at_conversion():
    config = MeftConfig()
    config.variant = "meft9"
    with pytest.raises(ConfigError, match=r"MeftConfig\.variant must be one of"):
        get_meft_model(tiny_bert(), config)


def test_json_round_trip_and_unknown_keys():
    config = MeftConfig(
        variant="meft3", adapter_dim=4, trainable=("classifier.*",), save_inputs_every=3
    )
    assert MeftConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="did you mean 'adapter_dim'"):
        MeftConfig.from_dict({**config.to_dict(), "adaptor_dim": 4})


def test_only_adapters_and_head_train():
    model = get_meft_model(tiny_bert(), MeftConfig(variant="meft3"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("meft_adapters" in n or n.startswith("classifier.") for n in trainable)
    assert any(n.startswith("classifier.") for n in trainable)
    assert not any("pooler" in n or "embeddings" in n for n in trainable)


def test_more_layers_than_the_model_is_an_error():
    with pytest.raises(ValueError, match="num_reversible_layers=5 exceeds the 2 layers"):
        get_meft_model(tiny_bert(), MeftConfig(num_reversible_layers=5))


def test_unsupported_model_names_the_supported_families():
    with pytest.raises(ValueError, match=r"Supported families: .*bert.*register_architecture"):
        get_meft_model(torch.nn.Linear(2, 2), MeftConfig())


def test_converting_twice_is_refused_and_unload_restores():
    original = tiny_bert().eval()
    batch = {k: v for k, v in text_batch().items() if k != "labels"}
    with torch.no_grad():
        before = original(**batch).logits.clone()
    model = get_meft_model(original, MeftConfig())
    with pytest.raises(ValueError, match="already a MEFT model"):
        get_meft_model(model, MeftConfig())
    unload(model)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, before)


class TestMeftRoundTrip(TrainableRoundTripTests):
    method_config = MeftConfig(variant="meft1")

    def make_model(self):
        return get_meft_model(tiny_bert(), self.method_config)

    def base_model(self):
        return tiny_bert()

    def make_inputs(self):
        return {k: v for k, v in text_batch().items() if k != "labels"}


def test_save_and_load_in_a_fresh_process_gives_identical_logits(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from tiny_models import tiny_bert, text_batch
        import peft_core
        model = peft_core.load(tiny_bert(), {str(tmp_path / "saved")!r}).eval()
        batch = {{k: v for k, v in text_batch().items() if k != "labels"}}
        with torch.no_grad():
            torch.save(model(**batch).logits, {str(tmp_path / "loaded.pt")!r})
        """
    )
    torch.manual_seed(0)
    model = get_meft_model(tiny_bert(), MeftConfig(variant="meft2"))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    peft_core.save_trainable(model, tmp_path / "saved", model.meft_config)
    model.eval()
    with torch.no_grad():
        expected = model(**{k: v for k, v in text_batch().items() if k != "labels"}).logits
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert torch.equal(torch.load(tmp_path / "loaded.pt"), expected)


def _trained_copy_pair():
    torch.manual_seed(0)
    original = get_meft_model(tiny_bert(), MeftConfig(variant="meft1")).train()
    return original, copy.deepcopy(original)


def _gradients(model, batch):
    model.zero_grad()
    model(**batch).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_deepcopy_gives_an_independent_working_copy():
    # What torch.optim.swa_utils.AveragedModel and EMA teachers do: the copy must compute with its
    # own layers and adapters, not the original's.
    batch = text_batch()
    original, duplicate = _trained_copy_pair()
    reference = _gradients(original, batch)
    copied = _gradients(duplicate, batch)
    assert reference.keys() == copied.keys()
    assert any(".meft_adapters." in n for n in copied)
    for name, grad in reference.items():
        torch.testing.assert_close(copied[name], grad, rtol=0, atol=0, msg=name)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    original.eval(), duplicate.eval()
    with torch.no_grad():
        before_original = original(**inputs).logits.clone()
        before_copy = duplicate(**inputs).logits.clone()
        for name, parameter in duplicate.named_parameters():
            if ".meft_adapters." in name:
                parameter.add_(0.5)
        assert not torch.allclose(duplicate(**inputs).logits, before_copy)
        assert torch.equal(original(**inputs).logits, before_original)


def test_deepcopy_after_a_training_step_and_averaged_model():
    from torch.optim.swa_utils import AveragedModel

    original, _ = _trained_copy_pair()
    _gradients(original, text_batch())  # the stacks now remember their last run
    averaged = AveragedModel(original)
    averaged.update_parameters(original)
    inputs = {k: v for k, v in text_batch().items() if k != "labels"}
    original.eval(), averaged.eval()
    with torch.no_grad():
        expected = original(**inputs).logits
        torch.testing.assert_close(averaged(**inputs).logits, expected)
        for name, parameter in original.named_parameters():
            if ".meft_adapters." in name:
                parameter.add_(0.5)
        torch.testing.assert_close(averaged(**inputs).logits, expected)


def test_a_pickled_model_loads_and_computes_the_same():
    original, _ = _trained_copy_pair()
    buffer = io.BytesIO()
    torch.save(original, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    inputs = {k: v for k, v in text_batch().items() if k != "labels"}
    original.eval(), restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(**inputs).logits, original(**inputs).logits)
        restored.bert.encoder.layer[1].meft_adapters.stream.up.weight.add_(1.0)
        assert not torch.allclose(restored(**inputs).logits, original(**inputs).logits)
    restored.train()
    restored(**text_batch()).loss.backward()
    assert restored.bert.encoder.layer[0].meft_adapters.stream.up.weight.grad is not None


def test_a_single_trainable_string_is_one_pattern():
    config = MeftConfig(trainable="classifier.*")
    assert config.trainable == ("classifier.*",)
    model = get_meft_model(tiny_bert(), config)
    assert model.classifier.weight.requires_grad


@pytest.mark.parametrize(
    ("field", "value"),
    [("adapter_dropout", "0.1"), ("reconstruction_tolerance", "1e-3"), ("x1_factor", True),
     ("check_reconstruction", "yes"), ("adapter_dim", 8.0), ("num_reversible_layers", 2.0),
     ("stream_dtype", torch.float64), ("variant", None), ("trainable", ["classifier.*", 3]),
     ("trainable", 5), ("adapter_activation", 3), ("adapter_dropout", True),
     ("reconstruction_tolerance", math.nan)],
)  # fmt: skip
def test_bad_types_are_config_errors_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"MeftConfig.{field} must be"):
        MeftConfig(**{field: value})


@pytest.mark.parametrize(
    ("config", "message"),
    [(MeftConfig(num_reversible_layers=5), "exceeds the 2 layers"),
     (MeftConfig(trainable=("nonexistent.*",)), "nonexistent"),
     (MeftConfig(adapter_activation="bogus"), "bogus")],
)  # fmt: skip
def test_a_refused_conversion_leaves_the_model_unchanged(config, message):
    model = tiny_bert().eval()
    inputs = {k: v for k, v in text_batch().items() if k != "labels"}
    with torch.no_grad():
        before = model(**inputs).logits
    with pytest.raises(ValueError, match=message):
        get_meft_model(model, config)
    assert not any(".meft_adapters." in n for n, _ in model.named_parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert not hasattr(model, "meft_config")
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)
    get_meft_model(model, MeftConfig())  # and it can still be converted


def test_unload_removes_the_config_and_leaves_the_base_frozen():
    model = unload(get_meft_model(tiny_bert(), MeftConfig()))
    assert not hasattr(model, "meft_config")
    assert model.meft_stacks == []
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}  # as documented


def test_a_model_activation_without_an_adapter_counterpart_names_the_fix():
    model = tiny_bert()
    model.config.hidden_act = "gelu_fast"  # a transformers name peft-core does not build
    with pytest.raises(ValueError, match=r"'gelu_fast' \(from its config\).*adapter_activation"):
        get_meft_model(model, MeftConfig())
    assert not hasattr(model, "meft_config")
    converted = get_meft_model(model, MeftConfig(adapter_activation="gelu_tanh"))
    assert converted.meft_config.adapter_activation == "gelu_tanh"


def test_trainable_patterns_replace_the_head_and_a_frozen_head_is_warned_about():
    with pytest.warns(UserWarning, match=r"'classifier' stays frozen; add 'classifier\.\*'"):
        model = get_meft_model(tiny_bert(), MeftConfig(trainable=("*.LayerNorm.*",)))
    assert not model.classifier.weight.requires_grad
    assert model.bert.encoder.layer[0].output.LayerNorm.weight.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both = get_meft_model(tiny_bert(), MeftConfig(trainable=("*.LayerNorm.*", "classifier.*")))
    assert both.classifier.weight.requires_grad
