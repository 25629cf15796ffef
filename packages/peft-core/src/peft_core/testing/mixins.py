"""A test mixin every method package reuses: save/load round trip, only-trainable saved, determinism.

Usage in a method package's tests::

    class TestMeftRoundTrip(TrainableRoundTripTests):
        def make_model(self):
            return get_meft_model(tiny_bert(), MeftConfig())

        def make_inputs(self):
            return {"input_ids": torch.randint(0, 100, (2, 8))}

        method_config = None  # or the config, to exercise peft_core.load
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from peft_core.config import MethodConfig
from peft_core.serialization import WEIGHTS_NAME, load_trainable, save_trainable


def _first_tensor(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict):
        return outputs["logits"] if "logits" in outputs else next(iter(outputs.values()))
    return outputs.logits if hasattr(outputs, "logits") else outputs[0]


class TrainableRoundTripTests:
    """Subclass and define :meth:`make_model` and :meth:`make_inputs`; pytest collects the tests."""

    method_config: MethodConfig | None = None
    seed: int = 0

    def make_model(self) -> nn.Module:
        raise NotImplementedError(
            "define make_model() returning a model with its trainable set chosen"
        )

    def make_inputs(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError("define make_inputs() returning keyword inputs for the model")

    def base_model(self) -> nn.Module | None:
        """The un-adapted model for ``peft_core.load``; only needed when ``method_config`` is set."""
        return None

    # helpers
    def _seeded_model(self) -> nn.Module:
        torch.manual_seed(self.seed)
        return self.make_model()

    def _outputs(self, model: nn.Module) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return _first_tensor(model(**self.make_inputs()))

    @staticmethod
    def _perturb_trainable(model: nn.Module) -> None:
        # Trained tensors must differ from a fresh init, or a broken loader would pass unnoticed.
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn_like(parameter) * 0.1)

    # tests
    def test_save_load_round_trip(self, tmp_path):
        trained = self._seeded_model()
        self._perturb_trainable(trained)
        save_trainable(trained, tmp_path, self.method_config)
        fresh = self._seeded_model()
        assert not torch.equal(self._outputs(trained), self._outputs(fresh))
        load_trainable(fresh, tmp_path)
        torch.testing.assert_close(self._outputs(fresh), self._outputs(trained), rtol=0, atol=0)

    def test_only_trainable_tensors_saved(self, tmp_path):
        model = self._seeded_model()
        save_trainable(model, tmp_path, self.method_config)
        saved = set(load_file(str(tmp_path / WEIGHTS_NAME)))
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        # Frozen parameters the config declares as part of the method's state are saved too.
        kept = tuple(getattr(self.method_config, "saved_parameters", ()) or ())
        frozen = {
            n
            for n, p in model.named_parameters()
            if not p.requires_grad and not any(fnmatch.fnmatchcase(n, k) for k in kept)
        }
        assert trainable <= saved
        assert not (saved & frozen), f"frozen parameters were saved: {sorted(saved & frozen)[:5]}"

    def test_seeded_construction_is_deterministic(self):
        first, second = self._seeded_model(), self._seeded_model()
        for (name, a), (_, b) in zip(
            first.state_dict().items(), second.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), f"{name} differs between two seeded constructions"
        torch.testing.assert_close(self._outputs(first), self._outputs(second), rtol=0, atol=0)

    def test_peft_core_load_rebuilds_the_model(self, tmp_path):
        import pytest

        import peft_core

        if self.method_config is None:
            pytest.skip(
                "no method_config: a plain trainable set has nothing for peft_core.load to rebuild"
            )

        trained = self._seeded_model()
        self._perturb_trainable(trained)
        save_trainable(trained, tmp_path, self.method_config)
        torch.manual_seed(self.seed)
        rebuilt = peft_core.load(self.base_model(), tmp_path)
        torch.testing.assert_close(self._outputs(rebuilt), self._outputs(trained), rtol=0, atol=0)

    def test_a_failed_peft_core_load_leaves_the_base_model_as_it_was(self, tmp_path):
        import pytest

        import peft_core
        from peft_core.serialization import CheckpointError

        if self.method_config is None:
            pytest.skip("no method_config: peft_core.load has no method to apply and undo")

        trained = self._seeded_model()
        self._perturb_trainable(trained)
        save_trainable(trained, tmp_path / "right", self.method_config)
        save_trainable(trained, tmp_path / "grown", self.method_config)
        name = _grow_one_saved_tensor(tmp_path / "grown" / WEIGHTS_NAME)  # another model's size
        torch.manual_seed(self.seed)
        base = self.base_model()
        expected = self._outputs(base)
        before = model_structure(base)

        with pytest.raises(
            CheckpointError, match=f"shape mismatch.*{re.escape(name)}.*as it was before"
        ):
            peft_core.load(base, tmp_path / "grown")

        assert model_structure(base) == before
        torch.testing.assert_close(self._outputs(base), expected, rtol=0, atol=0)
        # The same model then loads the right folder (a method refusing a converted model would not).
        rebuilt = peft_core.load(base, tmp_path / "right")
        torch.testing.assert_close(self._outputs(rebuilt), self._outputs(trained), rtol=0, atol=0)


def _grow_one_saved_tensor(path) -> str:
    """Rewrite a saved weights file with its first tensor one element longer; return its name."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = torch.cat([tensors[name].flatten(), tensors[name].flatten()[:1]])
    save_file(tensors, str(path), metadata=metadata)
    return name


def model_structure(model: nn.Module) -> dict[str, Any]:
    """What a method changes when it converts a model, comparable with ``==``: modules, each
    tensor's dtype, device, flag and storage, hooks, instance attributes and modes (not values)."""
    return {
        "modules": [(name, type(module)) for name, module in model.named_modules()],
        "tensors": [
            (name, tensor.dtype, tensor.device, tensor.requires_grad, tensor.data_ptr())
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        ],
        "hooks": [
            (len(module._forward_hooks), len(module._forward_pre_hooks))
            for module in model.modules()
        ],
        "attributes": [sorted(vars(module)) for module in model.modules()],
        "training": [module.training for module in model.modules()],
    }
