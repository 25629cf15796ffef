"""The density-weight schedule: λ held at 0, then ramped in, in both trainers and the CLI."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

import deft
from deft.schedule import DensityWeightSchedule, as_schedule

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def test_lambda_is_zero_during_the_delay_then_linear_then_constant():
    schedule = DensityWeightSchedule(2.0, delay=0.25, ramp=0.5)
    # by hand: 0 before 0.25; 2·(p − 0.25)/0.5 up to 0.75; 2 after
    expected = {0.0: 0.0, 0.2: 0.0, 0.25: 0.0, 0.5: 1.0, 0.625: 1.5, 0.75: 2.0, 0.9: 2.0}
    for progress, weight in expected.items():
        assert schedule.at(progress) == pytest.approx(weight, abs=1e-12), progress
    assert schedule.for_step(50, total_steps=100) == pytest.approx(1.0)


def test_a_delay_without_a_ramp_switches_lambda_on_at_once():
    schedule = DensityWeightSchedule(1.0, delay=0.5)
    steps = [schedule.for_step(step, total_steps=4) for step in range(4)]
    assert steps == [0.0, 0.0, 1.0, 1.0]


def test_a_constant_weight_is_the_papers_lambda_at_every_step():
    schedule = as_schedule(0.7)
    assert schedule.is_constant
    assert {schedule.for_step(step, 10) for step in range(10)} == {0.7}
    assert as_schedule(schedule) is schedule


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weight": -1.0}, "weight must be a non-negative finite number"),
        ({"weight": math.nan}, "weight must be a non-negative finite number"),
        ({"weight": True}, "weight must be a non-negative number"),
        ({"weight": 1.0, "delay": 1.0}, "delay is a fraction of the training steps"),
        ({"weight": 1.0, "delay": -0.1}, "delay is a fraction"),
        ({"weight": 1.0, "ramp": 1.5}, "ramp is a fraction"),
        ({"weight": 1.0, "delay": 0.6, "ramp": 0.6}, "delay \\+ ramp must be at most 1"),
    ],
)
def test_bad_schedules_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        DensityWeightSchedule(**options)


def test_for_step_needs_a_positive_number_of_steps():
    with pytest.raises(ValueError, match="total_steps must be at least 1"):
        DensityWeightSchedule(1.0, delay=0.5).for_step(0, total_steps=0)


def _fake_trainer(step: int, total: int):
    return SimpleNamespace(state=SimpleNamespace(global_step=step), total_steps=total)


def test_the_callback_weights_the_density_loss_by_lambda_of_the_step():
    from peft_core.testing import TinyClassifier

    torch.manual_seed(0)
    model = TinyClassifier()
    monitor = deft.DensityMonitor(model)
    schedule = DensityWeightSchedule(2.0, delay=0.5, ramp=0.5)
    callback = deft.DensityLossCallback(monitor, weight=schedule)
    batch = {"input_ids": torch.randint(0, 32, (2, 4)), "attention_mask": torch.ones(2, 4)}
    outputs = model(**batch)
    density = monitor.loss_for_batch(batch).detach()

    during_delay = callback.extra_loss(_fake_trainer(1, 8), batch, outputs)
    assert float(during_delay) == 0.0
    assert not during_delay.requires_grad  # no graph is built while λ = 0
    mid_ramp = callback.extra_loss(_fake_trainer(6, 8), batch, outputs)  # p = 0.75 → λ = 1
    assert mid_ramp.requires_grad
    assert torch.allclose(mid_ramp.detach(), 1.0 * density)
    logs: dict[str, float] = {}
    callback.on_step_end(None, logs)
    assert logs["density_weight"] == pytest.approx(1.0)
    assert logs["density"] == pytest.approx(float(density))  # the unweighted loss, averaged
    assert callback.weight == 2.0  # λ once the ramp is over


def test_the_peft_core_trainer_logs_lambda_rising_and_starts_like_plain_peft(tmp_path):
    """With a delay, the first steps are exactly plain PEFT's; log.jsonl shows λ per step."""
    from peft_core import Trainer, TrainingArguments
    from peft_core.testing import TinyClassifier, TokenParityDataset, collate_token_batches

    def train(weight, output):
        torch.manual_seed(0)
        model = TinyClassifier()
        args = TrainingArguments(
            str(output), max_steps=4, per_device_batch_size=8, learning_rate=1e-2,
            progress_bar=False, cpu=True, log_every=1, eval_strategy="no",
        )  # fmt: skip
        callbacks = [deft.DensityLossCallback(deft.DensityMonitor(model), weight=weight)]
        data = TokenParityDataset(32, seed=3)
        trainer = Trainer(model, args, data, collate_fn=collate_token_batches, callbacks=callbacks)
        trainer.train()
        return trainer

    scheduled = train(DensityWeightSchedule(1.0, delay=0.25, ramp=0.5), tmp_path / "scheduled")
    plain = train(0.0, tmp_path / "plain")
    weights = [record["density_weight"] for record in scheduled.history]
    assert weights == [0.0, 0.0, 0.5, 1.0]  # p = 0, 0.25 (ramp starts at 0), 0.5, 0.75
    written = [
        json.loads(line)
        for line in (tmp_path / "scheduled" / "log.jsonl").read_text().splitlines()
        if json.loads(line).get("type") == "train"
    ]
    assert [record["density_weight"] for record in written] == weights
    for index in (0, 1):  # λ = 0: the same losses as a plain run
        assert scheduled.history[index]["task_loss"] == plain.history[index]["task_loss"]
        assert scheduled.history[index]["density_loss"] == 0.0
        assert scheduled.history[index]["density"] > 0.0
    assert scheduled.history[2]["density_loss"] > 0.0


def test_the_hugging_face_trainer_follows_the_schedule(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from deft.hf_trainer import DensityTrainer
    from peft_core.testing import TinyClassifier

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    rows = [
        {"input_ids": torch.randint(1, 32, (6,), generator=generator).tolist(),
         "attention_mask": [1] * 6, "labels": index % 2}
        for index in range(16)
    ]  # fmt: skip
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = DensityTrainer(
        model=TinyClassifier(), args=args, train_dataset=rows,
        density_weight=DensityWeightSchedule(2.0, delay=0.5),
    )  # fmt: skip
    trainer.train()
    logs = [record for record in trainer.state.log_history if "loss" in record]
    assert [record["density_weight"] for record in logs] == [0.0, 0.0, 2.0, 2.0]
    assert [record["density_loss"] == 0.0 for record in logs] == [True, True, False, False]
    for record in logs:
        assert record["density"] > 0.0
        assert math.isclose(
            record["density_loss"], record["density_weight"] * record["density"], rel_tol=1e-6
        )
    assert trainer.density_weight == 2.0
