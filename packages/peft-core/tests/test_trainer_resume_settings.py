"""A resume must have the settings of the run it continues; a differing one is refused, by name."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from peft_core import MethodConfig, Trainer, TrainingArguments
from peft_core.testing import TinyClassifier, TokenParityDataset, collate_token_batches
from peft_core.trainer.checkpointing import checkpoint_directories
from peft_core.trainer.run_settings import (
    RUN_SETTINGS_FILE,
    ResumeMismatchError,
    setting_differences,
)


@dataclasses.dataclass
class ScaleConfig(MethodConfig):
    method = "resume-settings-test"
    scale: float = 1.0


def _args(tmp_path, **overrides) -> TrainingArguments:
    defaults = dict(
        max_steps=8, save_every=4, per_device_batch_size=8, learning_rate=5e-3,
        progress_bar=False, cpu=True, log_every=1,
    )  # fmt: skip
    return TrainingArguments(str(tmp_path), **{**defaults, **overrides})


def _trainer(args, examples: int = 64, **kwargs) -> Trainer:
    torch.manual_seed(0)
    dataset = TokenParityDataset(examples, seed=1)
    return Trainer(TinyClassifier(), args, dataset, collate_fn=collate_token_batches, **kwargs)


def _interrupted_run(tmp_path, **kwargs) -> None:
    """A run whose newest checkpoint is at step 4 of 8, as if it had been killed after it."""
    _trainer(_args(tmp_path, max_steps=4), **kwargs).train()
    # The killed run was an 8-step run: rewrite what its checkpoint records accordingly.
    recorded = checkpoint_directories(tmp_path)[-1] / RUN_SETTINGS_FILE
    settings = json.loads(recorded.read_text())
    settings["training_arguments"]["max_steps"] = 8
    recorded.write_text(json.dumps(settings))


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("per_device_batch_size", 4, "training_arguments.per_device_batch_size: checkpoint 8"),
        ("learning_rate", 1e-2, "training_arguments.learning_rate"),
        ("max_steps", 12, "training_arguments.max_steps: checkpoint 8, this run 12"),
        ("seed", 3, "training_arguments.seed"),
        ("gradient_accumulation_steps", 2, "training_arguments.gradient_accumulation_steps"),
        ("adam_betas", (0.8, 0.9), "training_arguments.adam_betas"),
    ],
)
def test_a_resume_with_other_hyperparameters_is_refused_by_name(tmp_path, field, value, named):
    _interrupted_run(tmp_path)
    with pytest.raises(ResumeMismatchError, match="cannot resume") as refused:
        _trainer(_args(tmp_path, **{field: value})).train()
    assert named in str(refused.value)
    assert [p.name for p in checkpoint_directories(tmp_path)] == ["step-00000004"]  # kept


def test_bookkeeping_may_change_between_segments(tmp_path):
    _interrupted_run(tmp_path)
    changed = dict(
        progress_bar=True, log_every=2, save_every=2, save_total_limit=3, num_workers=1,
        eval_batch_size=16,
    )  # fmt: skip
    result = _trainer(_args(tmp_path, **changed)).train()
    assert result["resumed_from_step"] == 4
    assert result["global_step"] == 8


def test_a_constant_schedule_run_may_be_extended_but_a_decaying_one_may_not(tmp_path):
    # Under a constant rate the steps taken so far are those of any longer run, so a resume with
    # more steps is exactly the longer run; under a decaying one they are not.
    constant = dict(lr_schedule="constant", warmup_steps=2)
    _trainer(_args(tmp_path / "constant", max_steps=4, **constant)).train()
    extended = _trainer(_args(tmp_path / "constant", max_steps=8, **constant)).train()
    assert (extended["resumed_from_step"], extended["global_step"]) == (4, 8)

    _trainer(_args(tmp_path / "linear", max_steps=4)).train()
    with pytest.raises(ResumeMismatchError, match="max_steps: checkpoint 4, this run 8"):
        _trainer(_args(tmp_path / "linear", max_steps=8)).train()


def test_another_method_config_training_set_or_run_setting_is_refused(tmp_path):
    _interrupted_run(tmp_path, method_config=ScaleConfig(1.0), run_settings={"model": "a"})
    same = dict(method_config=ScaleConfig(1.0), run_settings={"model": "a"})
    cases = [
        ({**same, "method_config": ScaleConfig(2.0)}, 64, "method_config.scale: checkpoint 1.0"),
        ({**same, "method_config": None}, 64, "method_config"),
        (same, 48, "train_examples: checkpoint 64, this run 48"),
        ({**same, "run_settings": {"model": "b"}}, 64, "run_settings.model: checkpoint 'a'"),
    ]
    for kwargs, examples, named in cases:
        with pytest.raises(ResumeMismatchError) as refused:
            _trainer(_args(tmp_path), examples, **kwargs).train()
        assert named in str(refused.value)
    assert _trainer(_args(tmp_path), **same).train()["resumed_from_step"] == 4


def test_a_library_upgrade_between_segments_is_not_a_difference(tmp_path, monkeypatch):
    _interrupted_run(tmp_path, method_config=ScaleConfig(1.0))
    package, version = ScaleConfig.library()
    monkeypatch.setattr(ScaleConfig, "library", classmethod(lambda cls: (package, version + ".1")))
    result = _trainer(_args(tmp_path), method_config=ScaleConfig(1.0)).train()
    assert result["resumed_from_step"] == 4


def test_a_checkpoint_from_before_settings_were_recorded_still_resumes(tmp_path):
    _interrupted_run(tmp_path)
    (checkpoint_directories(tmp_path)[-1] / RUN_SETTINGS_FILE).unlink()
    result = _trainer(_args(tmp_path, per_device_batch_size=4)).train()
    assert result["resumed_from_step"] == 4


def test_differences_are_listed_leaf_by_leaf():
    saved = {"a": {"b": 1, "c": [1, 2]}, "d": None}
    current = {"a": {"b": 2, "c": [1, 2]}, "d": {"e": 1}}
    assert setting_differences(saved, current) == [
        "a.b: checkpoint 1, this run 2",
        "d: checkpoint None, this run {'e': 1}",
    ]


def _frozen_embedding_model(seed: int) -> TinyClassifier:
    torch.manual_seed(seed)
    model = TinyClassifier()
    model.embed.weight.requires_grad_(False)
    return model


def _run_on(model, tmp_path, **overrides):
    """Train ``model``; a 4-step run extends to 8 (constant rate), as a killed run resumes."""
    dataset = TokenParityDataset(64, seed=1)
    args = _args(tmp_path, lr_schedule="constant", warmup_steps=0, **overrides)
    return Trainer(model, args, dataset, collate_fn=collate_token_batches).train()


def test_a_resume_onto_other_frozen_weights_is_refused_by_tensor_name(tmp_path):
    # Checkpoints hold only trained tensors: a resumed process that builds its frozen model from
    # other weights (here another seed) would otherwise train on as a mix of two models.
    _run_on(_frozen_embedding_model(seed=0), tmp_path, max_steps=4)
    with pytest.raises(ResumeMismatchError) as refused:
        _run_on(_frozen_embedding_model(seed=1), tmp_path)
    assert "frozen_weights: 1 of 1 frozen tensors hold other values (embed.weight)" in str(
        refused.value
    )
    assert [p.name for p in checkpoint_directories(tmp_path)] == ["step-00000004"]  # kept
    assert _run_on(_frozen_embedding_model(seed=0), tmp_path)["resumed_from_step"] == 4


def test_frozen_tensors_added_removed_or_reshaped_are_named(tmp_path):
    _run_on(_frozen_embedding_model(seed=0), tmp_path, max_steps=4)
    more_frozen = _frozen_embedding_model(seed=0)
    more_frozen.norm.requires_grad_(False)
    with pytest.raises(ResumeMismatchError, match=r"this model adds norm\.weight, norm\.bias"):
        _run_on(more_frozen, tmp_path)
    with pytest.raises(ResumeMismatchError, match=r"this model lacks embed\.weight"):
        _run_on(TinyClassifier(), tmp_path)
    torch.manual_seed(0)
    wider = TinyClassifier(vocab_size=40)
    wider.embed.weight.requires_grad_(False)
    with pytest.raises(ResumeMismatchError) as refused:
        _run_on(wider, tmp_path)
    assert "embed.weight: checkpoint torch.float32 (32, 16), this run torch.float32 (40, 16)" in (
        str(refused.value)
    )


def test_a_checkpoint_without_a_fingerprint_still_resumes(tmp_path):
    from peft_core.trainer.frozen_weights import FROZEN_WEIGHTS_FILE

    _run_on(_frozen_embedding_model(seed=0), tmp_path, max_steps=4)
    (checkpoint_directories(tmp_path)[-1] / FROZEN_WEIGHTS_FILE).unlink()
    assert _run_on(_frozen_embedding_model(seed=1), tmp_path)["resumed_from_step"] == 4


@dataclasses.dataclass
class SavedEmbeddingConfig(MethodConfig):
    method = "resume-saved-frozen-test"
    saved_parameters = ("embed.weight",)


def test_frozen_tensors_the_checkpoint_restores_are_not_fingerprinted(tmp_path):
    # A frozen tensor the method saves (a randomly initialised token kept frozen) comes back from
    # the checkpoint, so the resumed process may build it with other values.
    config = SavedEmbeddingConfig()
    dataset = TokenParityDataset(64, seed=1)
    for seed, max_steps in ((0, 4), (1, 8)):
        model = _frozen_embedding_model(seed)
        args = _args(tmp_path, max_steps=max_steps, lr_schedule="constant", warmup_steps=0)
        trainer = Trainer(
            model, args, dataset, collate_fn=collate_token_batches, method_config=config
        )
        result = trainer.train()
    assert result["resumed_from_step"] == 4


def test_fingerprints_ignore_summation_order_but_not_a_changed_weight():
    from peft_core.trainer.frozen_weights import _close, fingerprint

    torch.manual_seed(0)
    model = torch.nn.Linear(256, 64).requires_grad_(False)
    recorded = fingerprint(model)["weight"]
    model.weight.copy_(model.weight.flip(0, 1))  # the same values, summed in another order
    assert _close(recorded, fingerprint(model)["weight"])
    model.weight[3, 5] += 1e-3 * model.weight.abs().max()
    assert not _close(recorded, fingerprint(model)["weight"])


def test_quantised_integer_weights_are_fingerprinted():
    from peft_core.trainer.frozen_weights import fingerprint

    model = torch.nn.Module()
    model.packed = torch.nn.Parameter(torch.arange(6, dtype=torch.uint8), requires_grad=False)
    assert fingerprint(model) == {"packed": ["torch.uint8", [6], 15.0, 55**0.5]}
