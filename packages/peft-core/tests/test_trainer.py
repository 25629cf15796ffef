"""The training loop in one process: learning, accumulation, extra losses, evaluation, early stopping."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from peft_core import Trainer, TrainerCallback, TrainingArguments, freeze
from peft_core.testing import TinyClassifier, TokenParityDataset, collate_token_batches
from peft_core.trainer.checkpointing import checkpoint_directories
from peft_core.trainer.evaluation import (
    accuracy,
    default_metrics,
    macro_f1,
    matthews_correlation,
)
from peft_core.trainer.optim import build_optimizer, lr_multiplier, no_decay_parameter_names


def _model(dropout: float = 0.0) -> TinyClassifier:
    torch.manual_seed(0)
    return TinyClassifier(dropout=dropout)


def _args(tmp_path, **overrides) -> TrainingArguments:
    defaults = dict(
        num_epochs=2,
        per_device_batch_size=8,
        learning_rate=5e-3,
        progress_bar=False,
        cpu=True,
        log_every=1,
    )
    return TrainingArguments(str(tmp_path), **{**defaults, **overrides})


def _train(model, args, **kwargs):
    trainer = Trainer(
        model, args, TokenParityDataset(64, seed=1), collate_fn=collate_token_batches, **kwargs
    )
    return trainer, trainer.train()


def test_training_learns_the_synthetic_task(tmp_path):
    model = _model()
    evaluation = TokenParityDataset(128, seed=9)
    args = _args(tmp_path, num_epochs=12, eval_strategy="no")
    trainer = Trainer(
        model, args, TokenParityDataset(256, seed=1), evaluation, collate_fn=collate_token_batches
    )
    before = trainer.evaluate()
    after = trainer.train()
    assert after["eval_loss"] < before["eval_loss"] - 0.1
    assert after["eval_accuracy"] > 0.75
    assert (tmp_path / "final" / "adapter_model.safetensors").is_file()


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    accumulated, _ = _train(
        _model(), _args(tmp_path / "a", per_device_batch_size=4, gradient_accumulation_steps=2)
    )
    large, _ = _train(_model(), _args(tmp_path / "b", per_device_batch_size=8))
    assert accumulated.state.global_step == large.state.global_step == 16
    for (name, a), (_, b) in zip(
        accumulated.unwrapped_model.named_parameters(),
        large.unwrapped_model.named_parameters(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_only_trainable_parameters_change(tmp_path):
    model = _model()
    freeze(model, trainable=["classifier.*"])
    frozen_before = model.blocks[0].fc1.weight.clone()
    head_before = model.classifier.weight.clone()
    _train(model, _args(tmp_path))
    assert torch.equal(model.blocks[0].fc1.weight, frozen_before)
    assert not torch.equal(model.classifier.weight, head_before)


class PenaltyOnLogits(TrainerCallback):
    name = "logit_penalty"

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def extra_loss(self, trainer, batch, outputs):
        return self.weight * outputs["logits"].pow(2).mean()


def test_extra_loss_terms_are_added_logged_and_trained_on(tmp_path):
    penalised, _ = _train(_model(), _args(tmp_path / "p"), callbacks=[PenaltyOnLogits(10.0)])
    plain, _ = _train(_model(), _args(tmp_path / "q"))
    records = [json.loads(line) for line in (tmp_path / "p" / "log.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["type"] == "train")
    assert first["loss"] == pytest.approx(first["task_loss"] + first["logit_penalty"], rel=1e-6)
    assert first["logit_penalty"] > 0
    # The penalty pulls logits towards 0, so the penalised head ends with smaller logits.
    batch = collate_token_batches([TokenParityDataset(16, seed=5)[i] for i in range(16)])
    with torch.no_grad():
        small = penalised.unwrapped_model(**batch)["logits"].abs().mean()
        large = plain.unwrapped_model(**batch)["logits"].abs().mean()
    assert small < 0.5 * large


def test_extra_loss_must_be_a_scalar(tmp_path):
    class Bad(TrainerCallback):
        def extra_loss(self, trainer, batch, outputs):
            return outputs["logits"]

    with pytest.raises(TypeError, match="non-scalar"):
        _train(_model(), _args(tmp_path), callbacks=[Bad()])


def test_early_stopping_stops_when_the_metric_stalls(tmp_path):
    # A learning rate this small cannot improve eval loss measurably between evaluations... but
    # "improvement" is strict, so make it impossible: maximise the loss while training lowers it.
    args = _args(
        tmp_path, num_epochs=20, eval_strategy="steps", eval_every=2, greater_is_better=True,
        early_stopping_patience=2,
    )  # fmt: skip
    trainer = Trainer(
        _model(), args, TokenParityDataset(64, seed=1), TokenParityDataset(32, seed=2),
        collate_fn=collate_token_batches,
    )  # fmt: skip
    result = trainer.train()
    assert result["global_step"] < trainer.total_steps
    assert trainer.state.evaluations_without_improvement >= 2
    assert (tmp_path / "best" / "adapter_model.safetensors").is_file()


def test_mixed_precision_bf16_runs_on_cpu(tmp_path):
    _, result = _train(_model(), _args(tmp_path, mixed_precision="bf16", num_epochs=1))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert result["global_step"] == 8
    assert all(math.isfinite(r["loss"]) for r in records if r["type"] == "train")


def test_no_decay_groups_hold_biases_norms_and_vectors():
    model = _model()
    names = no_decay_parameter_names(model)
    assert "blocks.0.fc1.bias" in names
    assert "blocks.0.norm.weight" in names
    assert "norm.weight" in names
    assert "blocks.0.fc1.weight" not in names
    assert "embed.weight" not in names
    optimizer = build_optimizer(model, _args("unused", weight_decay=0.1))
    decays = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decays[id(model.blocks[0].fc1.weight)] == 0.1
    assert decays[id(model.blocks[0].fc1.bias)] == 0.0


def test_schedules_by_hand():
    linear = lr_multiplier("linear", warmup_steps=4, total_steps=14)
    assert [linear(s) for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert linear(4) == 1.0
    assert linear(9) == pytest.approx(0.5)
    assert linear(14) == 0.0
    cosine = lr_multiplier("cosine", warmup_steps=0, total_steps=10)
    assert cosine(0) == 1.0
    assert cosine(5) == pytest.approx(0.5)
    assert cosine(10) == pytest.approx(0.0)
    assert lr_multiplier("constant", 2, 10)(7) == 1.0


def test_metrics_by_hand():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])  # predicts 0, 1, 0, 1
    labels = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, labels) == 0.75
    # class 0: tp 1, predicted 2, actual 1 -> 2/3; class 1: tp 2, predicted 2, actual 3 -> 4/5
    assert macro_f1(logits, labels) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # binary: tp 2, tn 1, fp 0, fn 1 -> (2·1 − 0·1) / sqrt(2·3·1·2)
    assert matthews_correlation(logits, labels) == pytest.approx(2 / 12**0.5)
    assert set(default_metrics(logits, labels)) == {"accuracy", "macro_f1", "matthews_correlation"}


def test_matthews_correlation_by_hand_on_three_classes_and_degenerate_cases():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    predictions = torch.tensor([0, 2, 1, 0, 0, 2])
    logits = torch.nn.functional.one_hot(predictions, 3).float()
    # Gorodkin: n 6, correct 3, actual (2, 2, 2), predicted (3, 1, 2):
    # (3·6 − (6 + 2 + 4)) / sqrt((36 − 14)(36 − 12))
    assert matthews_correlation(logits, labels) == pytest.approx(6 / (22 * 24) ** 0.5)
    assert matthews_correlation(logits, predictions) == pytest.approx(1.0)
    assert matthews_correlation(logits, (predictions + 1) % 3) == pytest.approx(-0.5)
    # one predicted class, or one true class: undefined, reported as 0
    assert matthews_correlation(torch.ones(4, 2) * torch.tensor([1.0, 0.0]), labels[:4] % 2) == 0.0
    assert matthews_correlation(logits, torch.zeros(6, dtype=torch.long)) == 0.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("learning_rate", 0.0), ("per_device_batch_size", 0), ("lr_schedule", "step"), ("mixed_precision", "fp8"),
     ("warmup_ratio", 1.0), ("eval_strategy", "sometimes"), ("max_grad_norm", -1.0), ("num_epochs", float("inf")),
     ("learning_rate", "1e-3"), ("num_workers", "2"), ("num_epochs", True), ("warmup_steps", True),
     ("adam_betas", (0.9,)), ("adam_betas", (1.5, 0.9)), ("adam_epsilon", -1.0), ("seed", -1),
     ("resume", "no"), ("overwrite_output_dir", 1)],
)  # fmt: skip
def test_bad_arguments_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainingArguments("out", **{field: value})


def test_numpy_scalars_are_accepted_as_numbers():
    args = TrainingArguments(
        "out", learning_rate=np.float32(1e-3), adam_betas=np.array([0.9, 0.99])
    )
    assert args.adam_betas == (0.9, 0.99)


def test_a_fresh_run_refuses_or_overwrites_an_earlier_runs_checkpoints(tmp_path):
    # Left in place, the earlier run's higher-step checkpoints would outrank this run's: pruning
    # would delete the new ones as they appear and a later resume would continue the old run.
    _train(_model(), _args(tmp_path, save_every=4, max_steps=12))
    assert _checkpoint_steps(tmp_path) == [8, 12]
    fresh = dict(save_every=4, max_steps=8, learning_rate=1e-2, resume=False)
    with pytest.raises(FileExistsError, match="overwrite_output_dir"):
        _train(_model(), _args(tmp_path, **fresh))
    assert _checkpoint_steps(tmp_path) == [8, 12]  # nothing lost by the refusal

    _, result = _train(_model(), _args(tmp_path, **fresh, overwrite_output_dir=True))
    assert result["global_step"] == 8
    assert _checkpoint_steps(tmp_path) == [4, 8]
    _, resumed = _train(_model(), _args(tmp_path, **{**fresh, "resume": True}))
    assert resumed["resumed_from_step"] == 8
    assert result["train_seconds"] == result["train_seconds_this_segment"]  # one segment
    assert resumed["train_seconds"] >= result["train_seconds"] * 0.5  # the earlier segment's time


def _checkpoint_steps(output_dir) -> list[int]:
    return [int(path.name.split("-")[1]) for path in checkpoint_directories(output_dir)]


def test_nothing_trainable_is_a_clear_error(tmp_path):
    model = _model()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        Trainer(model, _args(tmp_path), TokenParityDataset(8), collate_fn=collate_token_batches)


def test_final_evaluation_reuses_an_evaluation_of_the_same_step(tmp_path, monkeypatch):
    trainer = Trainer(
        _model(), _args(tmp_path, num_epochs=2), TokenParityDataset(64, seed=1), TokenParityDataset(16, seed=2),
        collate_fn=collate_token_batches,
    )  # fmt: skip
    calls = []
    original = trainer.evaluate
    monkeypatch.setattr(
        trainer, "evaluate", lambda dataset=None: calls.append(dataset) or original(dataset)
    )
    result = trainer.train()
    assert len(calls) == 2  # once per epoch; the last epoch's result is the final one
    assert result["eval_loss"] == trainer._last_evaluation["eval_loss"]


def _trainer(tmp_path, model=None, **overrides) -> Trainer:
    return Trainer(
        model or _model(), _args(tmp_path, **overrides), TokenParityDataset(64, seed=1),
        TokenParityDataset(32, seed=2), collate_fn=collate_token_batches,
    )  # fmt: skip


def test_a_run_that_early_stopped_stays_stopped_when_started_again(tmp_path):
    # Evaluation and checkpoint share a step, so the checkpoint already counts the stall: started
    # again (a crash in the final save, a scheduler's retry), the run must not train on.
    settings = dict(
        num_epochs=20, eval_strategy="steps", eval_every=2, save_every=2, greater_is_better=True,
        early_stopping_patience=2,
    )  # fmt: skip
    first = _trainer(tmp_path, **settings).train()
    assert first["global_step"] < 160
    again = _trainer(tmp_path, **settings).train()
    assert again["resumed_from_step"] == again["global_step"] == first["global_step"]
    assert again["best_step"] == first["best_step"]
    assert again["eval_loss"] == first["eval_loss"]


def test_the_last_epochs_evaluation_is_a_candidate_for_the_best_weights(tmp_path):
    # Lowering the loss every epoch, the last epoch is the best one; and a one-epoch run has one.
    trainer = _trainer(tmp_path / "three", num_epochs=3, learning_rate=1e-2)
    result = trainer.train()
    evaluations = [r for r in map(json.loads, trainer.log_path.read_text().splitlines())]
    assert [r["step"] for r in evaluations if r["type"] == "eval"] == [8, 16, 24]
    best = min(r["eval_loss"] for r in evaluations if r["type"] == "eval")
    assert result["best_metric"] == best
    one = _trainer(tmp_path / "one", num_epochs=1).train()
    assert one["best_step"] == 8
    assert (tmp_path / "one" / "best").is_dir()


def test_a_run_ending_between_evaluations_counts_its_final_one(tmp_path):
    result = _trainer(tmp_path, max_steps=5, eval_strategy="steps", eval_every=4).train()
    assert result["best_step"] in (4, 5)
    assert result["best_metric"] == min(result["eval_loss"], result["best_metric"])


def test_early_stopping_without_an_eval_set_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"early_stopping_patience=2 needs evaluations"):
        _train(_model(), _args(tmp_path, early_stopping_patience=2))


def test_metric_for_best_takes_the_name_with_or_without_its_eval_prefix(tmp_path):
    assert _args(tmp_path, metric_for_best="accuracy").metric_for_best == "eval_accuracy"
    assert _args(tmp_path, metric_for_best="eval_macro_f1").metric_for_best == "eval_macro_f1"
    for bad in ("step", "eval_", "", None):
        with pytest.raises(ValueError, match="metric_for_best"):
            _args(tmp_path, metric_for_best=bad)


def test_a_fresh_run_refuses_an_earlier_runs_weights_without_checkpoints(tmp_path):
    _trainer(tmp_path, num_epochs=1).train()  # no save_every: final/ and best/, no checkpoint
    with pytest.raises(FileExistsError, match=r"weights \(final, best\).*overwrite_output_dir"):
        Trainer(
            _model(), _args(tmp_path, num_epochs=1), TokenParityDataset(64, seed=1),
            collate_fn=collate_token_batches,
        ).train()  # fmt: skip
    Trainer(
        _model(), _args(tmp_path, num_epochs=1, overwrite_output_dir=True),
        TokenParityDataset(64, seed=1), collate_fn=collate_token_batches,
    ).train()  # fmt: skip
    assert not (
        tmp_path / "best"
    ).exists()  # the earlier run's best is not passed off as this one's


def test_training_again_in_the_same_trainer_keeps_its_log(tmp_path):
    trainer = _trainer(tmp_path, num_epochs=1)
    trainer.train()
    log = trainer.log_path.read_text()
    assert trainer.train()["global_step"] == 8  # nothing left to train
    assert trainer.log_path.read_text().startswith(log)


def test_a_checkpoint_left_half_written_by_a_kill_is_cleaned_up(tmp_path):
    staging = tmp_path / "checkpoints" / ".step-00000008.x1y2z3.tmp"
    staging.mkdir(parents=True)
    (staging / "optimizer.pt").write_bytes(b"half")
    _trainer(tmp_path, num_epochs=1, save_every=4).train()
    assert not staging.exists()
    assert _checkpoint_steps(tmp_path) == [4, 8]
