"""``point-peft pretrain`` end to end on tiny models: an official-layout file that the loader takes,
exact resume after an interruption, and a loss that goes down and beats a do-nothing baseline."""

from __future__ import annotations

import json
import time

import pytest
import torch

from peft_core import ConfigError, TrainerCallback
from point_peft import pretraining_recipe
from point_peft.cli import main
from point_peft.models import PointMAE, PointTransformerConfig, read_checkpoint
from point_peft.ops import group
from point_peft.pretrained import read_pretrained_config
from point_peft.pretraining_recipe import (
    CHECKPOINT_NAME,
    RESULT_NAME,
    RUN_CONFIG_NAME,
    PretrainingRecipe,
    evaluation_clouds,
    pretrain,
)

TINY = {
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "num_groups": 16,
    "group_size": 8,
    "decoder_depth": 1,
    "decoder_num_heads": 2,
    "drop_path_rate": 0.1,  # on: stochastic depth draws from the RNG that resume must restore
}
TINY_CLI = [
    *(arg for field, value in TINY.items() for arg in (f"--{field.replace('_', '-')}", str(value))),
    "--data", "procedural-clean", "--samples-per-class", "2", "--num-points", "128",
    "--batch-size", "8", "--eval-samples-per-class", "1", "--log-every", "1", "--no-progress",
]  # fmt: skip
ENCODER_HEAD = "cls_head_finetune."
DECODER_PARTS = {"mask_token", "decoder_pos_embed", "MAE_decoder", "increase_dim"}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides) -> PointTransformerConfig:
    return PointTransformerConfig.small(**{**TINY, **overrides})


def tiny_recipe(**overrides) -> PretrainingRecipe:
    values = dict(
        data=("procedural-clean",), num_points=128, procedural_samples_per_class=2, batch_size=8,
        eval_samples_per_class=1,
    )  # fmt: skip
    return PretrainingRecipe(**{**values, **overrides})


def test_cli_writes_an_official_checkpoint_that_point_mae_loads(tmp_path, capsys):
    output = tmp_path / "run"
    assert main(["pretrain", *TINY_CLI, "--max-steps", "3", "--output-dir", str(output)]) == 0
    printed = capsys.readouterr().out
    assert f'"checkpoint": "{output / CHECKPOINT_NAME}"' in printed

    path = output / CHECKPOINT_NAME
    raw = torch.load(path, weights_only=True)
    assert raw["point_peft"]["global_step"] == 3
    state = raw["base_model"]
    assert {key.split(".")[0] for key in state} == {"MAE_encoder"} | DECODER_PARTS

    config = read_pretrained_config(path)
    assert config == tiny_config()
    model, report = PointMAE.from_pretrained(
        path, num_classes=4, config=config, output_loading_info=True
    )
    head = [key for key in model.state_dict() if key.startswith(ENCODER_HEAD)]
    assert report.kind == "point_mae_pretrain"
    assert sorted(report.missing_keys) == sorted(["cls_token", "cls_pos", *head])
    decoder_keys = [key for key in state if key.split(".")[0] in DECODER_PARTS]
    assert sorted(report.unexpected_keys) == sorted(decoder_keys)
    # Every encoder tensor arrived, BatchNorm statistics included (they moved off their init).
    loaded = model.state_dict()
    for key, tensor in state.items():
        if key.startswith("MAE_encoder."):
            assert torch.equal(loaded[key.removeprefix("MAE_encoder.")], tensor), key
    assert state["MAE_encoder.encoder.first_conv.1.num_batches_tracked"] == 3
    assert not torch.equal(
        state["MAE_encoder.encoder.first_conv.1.running_mean"],
        torch.zeros_like(state["MAE_encoder.encoder.first_conv.1.running_mean"]),
    )

    result = json.loads((output / RESULT_NAME).read_text())
    assert result["steps"] == 3
    assert [step for step, _ in result["loss_curve"]] == [1, 2, 3]
    assert result["data"]["sources"] == {"procedural-clean": 30}
    assert result["model_config"]["embed_dim"] == 32
    assert result["recipe"]["data"] == ["procedural-clean"]


def test_cli_refuses_to_mix_runs_and_resumes_or_overwrites_on_request(tmp_path, capsys):
    output = str(tmp_path / "run")
    common = ["pretrain", *TINY_CLI, "--max-steps", "3", "--save-every", "2", "--output-dir"]
    assert main([*common, output]) == 0
    capsys.readouterr()

    assert main([*common, output]) == 2
    assert "holds checkpoints of an earlier run (newest: step-00000002)" in capsys.readouterr().err

    assert main([*common, output, "--resume", "--seed", "1"]) == 2
    refusal = capsys.readouterr().err
    assert "started with another architecture or recipe" in refusal
    assert "seed: checkpoint 0, this run 1" in refusal

    assert main([*common, output, "--resume"]) == 0
    assert json.loads((tmp_path / "run" / RESULT_NAME).read_text())["resumed_from_step"] == 2

    assert main([*common, output, "--overwrite"]) == 0
    assert json.loads((tmp_path / "run" / RESULT_NAME).read_text())["resumed_from_step"] is None


def test_cli_reports_bad_sources_and_options(capsys):
    assert main(["pretrain", "--data", "shapenet", "--no-progress"]) == 2
    assert "unknown data source 'shapenet'" in capsys.readouterr().err
    assert main(["pretrain", "--data", "modelnet40", "--no-progress"]) == 2
    assert "needs a folder: modelnet40=DIR" in capsys.readouterr().err
    assert main(["pretrain", "--num-heads", "5", "--no-progress"]) == 2
    assert "num_heads=5 must divide embed_dim=96" in capsys.readouterr().err
    assert main(["pretrain", "--batch-size", "0", "--no-progress"]) == 2
    assert "batch_size must be an integer >= 1" in capsys.readouterr().err


def no_data_may_be_built(monkeypatch):
    """Make building the training clouds an error: the checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("data built before the options were checked")

    monkeypatch.setattr(pretraining_recipe, "build_pretraining_clouds", refuse)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--mask-ratio", "0"], "mask_ratio=0.0 masks 0 of num_groups=16 patches"),
        (["--mask-ratio", "0.05"], "mask_ratio=0.05 masks 0 of num_groups=16 patches"),
        (["--num-points", "10"], "num_points=10 is too few for the model's 16 patches of 8"),
        (["--num-groups", "200"], "num_points=128 is too few for the model's 200 patches of 8"),
        (["--group-size", "200"], "num_points=128 is too few for the model's 16 patches of 200"),
        (["--data", "procedural-clean", "modelnet40=/no/such/folder"],
         "dataset folder /no/such/folder does not exist"),
        (["--scanobjectnn", "/no/such/h5_files"], "dataset folder /no/such/h5_files does not"),
    ],
)  # fmt: skip
def test_cli_refuses_unusable_settings_before_building_data_or_writing(
    arguments, message, tmp_path, capsys, monkeypatch
):
    no_data_may_be_built(monkeypatch)
    output = tmp_path / "run"
    assert main(["pretrain", *TINY_CLI, *arguments, "--output-dir", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("point-peft pretrain: error:"), error
    assert message in error, error
    assert "Traceback" not in error
    assert not output.exists()


@pytest.mark.parametrize(
    ("config", "recipe", "error", "message"),
    [
        ({"mask_ratio": 0.0}, {}, ConfigError, "masks 0 of num_groups=16"),
        ({}, {"num_points": 10}, ConfigError, "num_points=10 is too few"),
        ({}, {"data": ("modelnet40=/no/such/folder",)}, FileNotFoundError, "/no/such/folder"),
    ],
)
def test_pretrain_checks_before_building_data_or_writing(
    config, recipe, error, message, tmp_path, monkeypatch
):
    no_data_may_be_built(monkeypatch)
    with pytest.raises(error, match=message):
        pretrain(tiny_config(**config), tiny_recipe(**recipe), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_run_that_fails_while_building_data_leaves_no_run_record(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("unreadable corpus")

    monkeypatch.setattr(pretraining_recipe, "build_pretraining_clouds", broken)
    output = tmp_path / "run"
    with pytest.raises(OSError, match="unreadable corpus"):
        pretrain(tiny_config(), tiny_recipe(max_steps=1), output, progress=False)
    assert not (output / RUN_CONFIG_NAME).exists()


class Interrupt(Exception):
    pass


class InterruptAt(TrainerCallback):
    """Stop the run right after step ``step`` is logged, before any checkpoint of that step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, logs):
        if trainer.state.global_step == self.step:
            raise Interrupt


def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path):
    # 30 clouds in batches of 8 (the short last batch dropped): 3 steps an epoch, so the run
    # stops in epoch 2 and resumes from the checkpoint of step 4, also in epoch 2.
    config, recipe = tiny_config(), tiny_recipe(max_steps=7)
    options = dict(save_every=2, log_every=1, progress=False)
    reference = pretrain(config, recipe, tmp_path / "reference", **options)

    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        pretrain(config, recipe, interrupted, callbacks=[InterruptAt(5)], **options)
    assert sorted(p.name for p in (interrupted / "checkpoints").iterdir()) == [
        "step-00000002",
        "step-00000004",
    ]
    assert not (interrupted / CHECKPOINT_NAME).exists()

    resumed = pretrain(config, recipe, interrupted, resume=True, **options)
    assert resumed["resumed_from_step"] == 4
    assert resumed["steps"] == reference["steps"] == 7
    assert resumed["loss_curve"] == reference["loss_curve"]
    assert resumed["held_out_reconstruction_loss"] == reference["held_out_reconstruction_loss"]
    expected = read_checkpoint(tmp_path / "reference" / CHECKPOINT_NAME)
    actual = read_checkpoint(interrupted / CHECKPOINT_NAME)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), f"{key} differs after resume"


def test_pretraining_loss_decreases_and_beats_predicting_the_patch_centres(tmp_path):
    config = tiny_config(drop_path_rate=0.0, patch_hidden_dims=(16, 32), pos_hidden_dim=16)
    recipe = tiny_recipe(
        procedural_samples_per_class=4, max_steps=40, batch_size=12, learning_rate=3e-3,
        warmup_ratio=0.1, eval_samples_per_class=2,
    )  # fmt: skip
    result = pretrain(config, recipe, tmp_path, save_every=None, log_every=1, progress=False)
    losses = [loss for _, loss in result["loss_curve"]]
    assert len(losses) == 40
    assert sum(losses[-10:]) / 10 < 0.2 * sum(losses[:3]) / 3

    held_out = result["held_out_reconstruction_loss"]
    assert held_out["clouds"] == 2 * 2 * 15  # two per class, clean and hard test splits
    assert held_out["final"] < 0.1 * held_out["initial"]
    # Predicting every masked patch as its centre point alone scores the mean squared distance
    # of the patch points to the centre (the centre itself is in the patch): a model that
    # learned no shape does no better than that.
    clouds = evaluation_clouds(recipe)
    _, neighborhoods, _ = group(clouds, config.num_groups, config.group_size)
    centre_only = float(neighborhoods.square().sum(-1).mean())
    assert held_out["final"] < 0.8 * centre_only


class SlowSteps(TrainerCallback):
    """Make every logged step up to ``until`` take ``seconds`` longer."""

    def __init__(self, seconds: float, until: int) -> None:
        self.seconds, self.until = seconds, until

    def on_step_end(self, trainer, logs):
        if trainer.state.global_step <= self.until:
            time.sleep(self.seconds)


def test_train_seconds_after_resume_count_every_segment(tmp_path):
    # The first segment sleeps 0.25 s in each of steps 1-4 (checkpointed at 4) and is stopped in
    # step 5; the resumed segment does steps 5-7 without sleeping.
    config, recipe = tiny_config(), tiny_recipe(max_steps=7)
    options = dict(save_every=2, log_every=1, progress=False)
    output = tmp_path / "run"
    with pytest.raises(Interrupt):
        pretrain(config, recipe, output, callbacks=[SlowSteps(0.25, 4), InterruptAt(5)], **options)

    resumed = pretrain(config, recipe, output, resume=True, **options)
    assert resumed["resumed_from_step"] == 4
    assert 0 < resumed["train_seconds_this_segment"] < resumed["train_seconds"]
    assert resumed["train_seconds"] - resumed["train_seconds_this_segment"] >= 4 * 0.25
    assert (
        json.loads((output / RESULT_NAME).read_text())["train_seconds"] == resumed["train_seconds"]
    )

    # Resuming the finished run redoes step 7 (from the checkpoint of step 6): the earlier
    # segments' time is still counted.
    again = pretrain(config, recipe, output, resume=True, **options)
    assert again["resumed_from_step"] == 6
    assert again["train_seconds"] - again["train_seconds_this_segment"] >= 4 * 0.25


def test_an_uninterrupted_run_has_one_segment(tmp_path):
    result = pretrain(
        tiny_config(), tiny_recipe(max_steps=2), tmp_path, save_every=1, progress=False
    )
    assert result["train_seconds"] == result["train_seconds_this_segment"] > 0
