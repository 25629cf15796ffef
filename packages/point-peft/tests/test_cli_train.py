"""``point-peft train`` end to end on tiny backbones and tiny data: every method, the result file,
reproducible seeds, exact resume, the saved tensors, and clear errors for bad input."""

from __future__ import annotations

import doctest
import importlib
import json

import pytest
import torch
from safetensors.torch import load_file

import peft_core
from peft_core import TrainerCallback
from point_peft.cli import main
from point_peft.finetuning import RESULT_NAME, FinetuneRecipe, evaluate_on, finetune
from point_peft.finetuning_data import load_task
from point_peft.finetuning_methods import METHODS, load_backbone
from point_peft.models import PointBERT, PointMAEPretrainer, PointTransformerConfig

TINY = PointTransformerConfig.small(
    embed_dim=24, depth=2, num_heads=3, num_groups=16, group_size=8, patch_hidden_dims=(8, 12),
    pos_hidden_dim=10, head_hidden_dim=16, decoder_depth=1, decoder_num_heads=3,
)  # fmt: skip
# 15 procedural classes, one cloud of 64 points per class and split: a run takes about a second.
TINY_DATA = [
    "--dataset", "procedural-clean", "--num-points", "64", "--samples-per-class", "2",
    "--test-samples-per-class", "1",
]  # fmt: skip
TINY_RUN = [*TINY_DATA, "--batch-size", "10", "--log-every", "1", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


def write_backbone(path, *, record_architecture: bool = True, seed: int = 0):
    """A tiny Point-MAE pre-train file in the official layout (as ``point-peft pretrain`` writes)."""
    torch.manual_seed(seed)
    checkpoint = PointMAEPretrainer(TINY).to_official_checkpoint()
    if record_architecture:
        checkpoint["point_peft"] = {"model_config": TINY.to_dict()}
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return write_backbone(tmp_path_factory.mktemp("backbone") / "pretrain.pth")


def train(backbone, output, *extra: str) -> int:
    return main(["train", "--backbone", str(backbone), *TINY_RUN, "--output-dir", str(output),
                 *extra])  # fmt: skip


def read_result(output) -> dict:
    return json.loads((output / RESULT_NAME).read_text())


def test_point_peft_run_writes_the_result_and_loadable_tensors(backbone, tmp_path, capsys):
    output = tmp_path / "run"
    assert train(backbone, output, "--max-steps", "3", "--votes", "2") == 0
    printed = capsys.readouterr().out
    assert "method          point-peft on procedural-clean (30 train / 15 test clouds" in printed
    assert "test accuracy" in printed
    assert str(output / RESULT_NAME) in printed

    result = read_result(output)
    assert result["method"] == "point-peft"
    assert result["dataset"] == "procedural-clean"
    assert result["steps"] == 3
    assert [step for step, _ in result["loss_curve"]] == [1, 2, 3]
    assert 0 <= result["test_accuracy"] <= 1
    assert 0 <= result["mean_class_accuracy"] <= 1
    assert result["evaluation"]["num_samples"] == 15
    assert result["evaluation"]["votes"] == 2
    assert result["vote_augmentation"] == "scale-rotate"  # the training augmentation, named
    parameters = result["parameters"]
    assert 0 < parameters["trainable"] < parameters["total"]
    assert result["step_time"]["steps_timed"] == 1  # 3 steps: 2 gaps, the first left out
    assert result["method_details"]["memory_bank"]["size"] == 30  # one entry per training cloud
    assert result["backbone"]["kind"] == "point_mae_pretrain"
    assert result["backbone"]["missing_keys"][:2] == ["cls_token", "cls_pos"]
    assert {"point-peft", "peft-core", "torch"} <= set(result["versions"])
    assert result["recipe"]["tuning_method"] == "point-peft"
    assert result["seed"] == 0

    # final/ rebuilds the trained model on a freshly loaded backbone: the same test predictions.
    torch.manual_seed(123)  # another head init: every trained tensor must come from the file
    fresh, _ = load_backbone(backbone, 15)
    restored = peft_core.load(fresh, output / "final")
    task = load_task("procedural-clean", num_points=64, samples_per_class=2,
                     test_samples_per_class=1, progress=False)  # fmt: skip
    recipe = FinetuneRecipe.from_dict(result["recipe"])
    assert recipe.votes == 2
    assert evaluate_on(restored, task, recipe) == result["evaluation"]
    without_augmentation = FinetuneRecipe.from_dict({**result["recipe"], "augmentation": "none"})
    assert evaluate_on(restored, task, without_augmentation)["vote_augmentation"] == (
        "scale-translate"  # Point-MAE's voting, when training has no augmentation to vote over
    )
    one_vote = FinetuneRecipe.from_dict({**result["recipe"], "votes": 1})
    assert evaluate_on(restored, task, one_vote)["vote_augmentation"] is None


def test_load_backbone_reads_the_file_once(backbone, monkeypatch):
    # The weights and the recorded architecture come from one read: an official 12-layer file
    # is about 90 MB.
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    model, info = load_backbone(backbone, 15)
    assert reads == [backbone]
    assert model.config.embed_dim == TINY.embed_dim
    assert info["config"]["depth"] == TINY.depth


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_counts_its_parameters(backbone, tmp_path, method):
    output = tmp_path / method
    assert train(backbone, output, "--method", method, "--max-steps", "2") == 0
    result = read_result(output)
    assert result["method"] == method
    assert result["steps"] == 2
    trainable, total = result["parameters"]["trainable"], result["parameters"]["total"]
    if method == "full":
        assert trainable == total
    else:
        assert 0 < trainable < total
    if method == "linear":  # the head only
        model, _ = load_backbone(backbone, 15)
        assert trainable == sum(p.numel() for p in model.cls_head_finetune.parameters())
    saved = load_file(str(output / "final" / "adapter_model.safetensors"))
    # Rows that keep the new cls token and position frozen save them too (a pre-train file lacks
    # them); they are not counted as trainable.
    kept_frozen = 2 * TINY.embed_dim if method in ("linear", "bitfit") else 0
    saved_parameters = sum(t.numel() for name, t in saved.items() if "running" not in name
                           and "num_batches" not in name and "memory_bank" not in name)  # fmt: skip
    assert saved_parameters == trainable + kept_frozen


@pytest.mark.parametrize("method", ["linear", "bitfit"])
def test_final_tensors_restore_rows_that_keep_the_new_cls_token_frozen(backbone, tmp_path, method):
    # The pre-train file has no cls token: each load of it draws one, and these rows never train
    # it. final/ must hold it, or two fresh loads restore two different models.
    output = tmp_path / method
    assert train(backbone, output, "--method", method, "--max-steps", "2") == 0
    points = torch.rand(4, 64, 3, generator=torch.Generator().manual_seed(0))
    logits = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        fresh, _ = load_backbone(backbone, 15)
        restored = peft_core.load(fresh, output / "final").eval()
        with torch.no_grad():
            logits.append(restored(points).logits)
    assert torch.equal(logits[0], logits[1])


def test_seeded_runs_are_reproducible(backbone, tmp_path):
    runs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert train(backbone, tmp_path / name, "--max-steps", "3", "--seed", seed) == 0
        result = read_result(tmp_path / name)
        tensors = load_file(str(tmp_path / name / "final" / "adapter_model.safetensors"))
        runs[name] = (result["loss_curve"], result["test_accuracy"], tensors)
    assert runs["a"][:2] == runs["b"][:2]
    assert all(torch.equal(runs["a"][2][key], runs["b"][2][key]) for key in runs["a"][2])
    assert runs["a"][0] != runs["c"][0]


class Interrupt(Exception):
    pass


class InterruptAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, logs):
        if trainer.state.global_step == self.step:
            raise Interrupt


@pytest.mark.parametrize("method", ["point-peft", "full"])
def test_interrupted_run_resumes_to_the_uninterrupted_weights(backbone, tmp_path, method):
    recipe = FinetuneRecipe(
        dataset="procedural-clean", tuning_method=method, num_points=64, samples_per_class=2,
        test_samples_per_class=1, max_steps=5, batch_size=10,
    )  # fmt: skip
    task = load_task("procedural-clean", num_points=64, samples_per_class=2,
                     test_samples_per_class=1, progress=False)  # fmt: skip
    options = dict(backbone=backbone, task=task, save_every=2, log_every=1, progress=False)
    whole = finetune(recipe, tmp_path / "whole", **options)
    with pytest.raises(Interrupt):
        finetune(recipe, tmp_path / "cut", callbacks=[InterruptAt(3)], **options)
    resumed = finetune(recipe, tmp_path / "cut", resume=True, **options)
    assert resumed["resumed_from_step"] == 2
    assert resumed["loss_curve"] == whole["loss_curve"]
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    expected = load_file(str(tmp_path / "whole" / "final" / "adapter_model.safetensors"))
    got = load_file(str(tmp_path / "cut" / "final" / "adapter_model.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_cli_refuses_to_mix_runs_and_resumes_or_overwrites_on_request(backbone, tmp_path, capsys):
    output = tmp_path / "run"
    common = ["--max-steps", "3", "--save-every", "2"]
    assert train(backbone, output, *common) == 0
    capsys.readouterr()
    assert train(backbone, output, *common) == 2
    assert "holds checkpoints of an earlier run (newest: step-00000002)" in capsys.readouterr().err
    assert train(backbone, output, *common, "--resume", "--method", "bitfit") == 2
    refusal = capsys.readouterr().err
    assert "started with another recipe, backbone or data" in refusal
    assert "recipe.tuning_method: checkpoint 'point-peft', this run 'bitfit'" in refusal
    assert train(backbone, output, *common, "--resume") == 0
    assert read_result(output)["resumed_from_step"] == 2
    assert train(backbone, output, *common, "--overwrite") == 0
    assert read_result(output)["resumed_from_step"] is None


def test_a_finished_run_without_checkpoints_is_refused_not_replaced(backbone, tmp_path, capsys):
    # 3 steps with checkpoints every 5: the run leaves final/ and result.json, no checkpoint.
    output = tmp_path / "run"
    assert train(backbone, output, "--max-steps", "3", "--save-every", "5") == 0
    first = read_result(output)
    capsys.readouterr()
    assert train(backbone, output, "--max-steps", "3", "--method", "linear") == 2
    err = capsys.readouterr().err
    assert "holds a finished earlier run (final, result.json, no checkpoint to resume)" in err
    assert read_result(output) == first  # nothing replaced
    assert train(backbone, output, "--max-steps", "3", "--method", "linear", "--overwrite") == 0
    assert read_result(output)["method"] != first["method"]


def test_method_options_reach_the_method(backbone, tmp_path):
    output = tmp_path / "run"
    options = ["--option", "prompt_layers=1", "--option", "cache_query_features=true"]
    assert train(backbone, output, "--max-steps", "2", *options) == 0
    config = read_result(output)["method_details"]["config"]
    assert config["prompt_layers"] == 1
    assert config["cache_query_features"] is True
    output = tmp_path / "vpt"
    assert train(backbone, output, "--method", "vpt-deep", "--max-steps", "1",
                 "--option", "num_prompts=3") == 0  # fmt: skip
    saved = json.loads((output / "final" / "adapter_config.json").read_text())
    assert saved["baseline"] == "vpt-deep"
    assert saved["num_prompts"] == 3


def test_an_official_file_takes_its_architecture_from_the_options(tmp_path, capsys):
    official = write_backbone(tmp_path / "official.pth", record_architecture=False)
    output = tmp_path / "run"
    # No recorded architecture: the official 12 x 384 one is assumed, and the shapes disagree.
    assert train(official, output, "--max-steps", "1") == 2
    error = capsys.readouterr().err
    assert "point-peft train: error:" in error
    assert "shape" in error
    config = tmp_path / "tiny.json"
    config.write_text(TINY.to_json_string())
    assert train(official, output, "--max-steps", "1", "--backbone-config", str(config)) == 0
    assert read_result(output)["backbone"]["config"]["embed_dim"] == 24


def test_a_classifier_fine_tuned_for_other_classes_lends_its_encoder(tmp_path, capsys):
    from point_peft.models import PointMAE

    torch.manual_seed(0)
    fine_tuned = PointMAE(TINY.replace(num_classes=40))  # as if fine-tuned on ModelNet40
    checkpoint = tmp_path / "modelnet_finetuned.pth"
    torch.save({"base_model": fine_tuned.state_dict()}, checkpoint)

    model, description = load_backbone(checkpoint, 15, config=TINY)
    assert description["dropped_head_classes"] == 40
    assert torch.equal(
        model.blocks.blocks[1].mlp.fc2.weight, fine_tuned.blocks.blocks[1].mlp.fc2.weight
    )
    _, same_task = load_backbone(checkpoint, 40, config=TINY)  # the same classes: head kept
    assert same_task["dropped_head_classes"] is None
    assert same_task["missing_keys"] == []

    config = tmp_path / "tiny.json"
    config.write_text(TINY.to_json_string())
    output = tmp_path / "run"
    assert train(checkpoint, output, "--max-steps", "1", "--backbone-config", str(config)) == 0
    assert "(its 40-class head replaced by a new one)" in capsys.readouterr().out


def test_a_point_bert_file_trains_with_its_label_smoothing(tmp_path):
    config = TINY.replace(patch_dim=16, label_smoothing=0.2)
    torch.manual_seed(0)
    classifier = PointBERT(config)
    # Point-BERT's pre-train layout: the classifier's tensors under transformer_q, no head.
    state = {f"transformer_q.{name}": tensor for name, tensor in classifier.state_dict().items()
             if not name.startswith("cls_head_finetune.")}  # fmt: skip
    torch.save({"base_model": state}, tmp_path / "Point-BERT.pth")
    (tmp_path / "config.json").write_text(config.to_json_string())
    output = tmp_path / "run"
    assert train(tmp_path / "Point-BERT.pth", output, "--backbone-config",
                 str(tmp_path / "config.json"), "--max-steps", "2") == 0  # fmt: skip
    result = read_result(output)
    assert result["backbone"]["kind"] == "point_bert_pretrain"
    assert result["backbone"]["missing_keys"][0].startswith("cls_head_finetune.")
    assert result["label_smoothing"] == 0.2


def test_patch_options_on_an_official_point_bert_file_keep_point_berts_architecture(tmp_path):
    # Official files record no architecture: the file's family gives it (Point-BERT's patch width
    # 256 and label smoothing 0.2), and --num-groups / --group-size change only the patches.
    import argparse

    from point_peft.cli import UsageError, train_backbone_config

    classifier = PointBERT(PointTransformerConfig.point_bert(depth=1))
    state = {f"transformer_q.{name}": tensor for name, tensor in classifier.state_dict().items()
             if not name.startswith("cls_head_finetune.")}  # fmt: skip
    torch.save({"base_model": state}, tmp_path / "Point-BERT.pth")
    args = argparse.Namespace(
        backbone=tmp_path / "Point-BERT.pth", backbone_config=None, num_groups=128, group_size=None
    )
    config = train_backbone_config(args)
    official = PointTransformerConfig.point_bert()
    assert config == official.replace(num_groups=128)
    assert (config.patch_dim, config.label_smoothing) == (256, 0.2)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    args.backbone = tmp_path / "garbage.pth"
    with pytest.raises(UsageError, match=r"garbage\.pth cannot be read"):
        train_backbone_config(args)


def write_modelnet_folder(root, classes=("cone", "cup", "night_stand"), shapes_per_class=4):
    """The ``modelnet40_normal_resampled`` layout: name and split lists, one text file a shape."""
    generator = torch.Generator().manual_seed(0)
    root.mkdir()
    (root / "modelnet40_shape_names.txt").write_text("".join(f"{name}\n" for name in classes))
    splits = {"train": [], "test": []}
    for label, name in enumerate(classes):
        (root / name).mkdir()
        for number in range(1, shapes_per_class + 1):
            table = torch.randn(48, 6, generator=generator) * (1 + label)
            lines = "".join(",".join(f"{v:.5f}" for v in row) + "\n" for row in table.tolist())
            (root / name / f"{name}_{number:04d}.txt").write_text(lines)
            splits["train" if number % 2 else "test"].append(f"{name}_{number:04d}")
    for split, shape_ids in splits.items():
        (root / f"modelnet40_{split}.txt").write_text("".join(f"{i}\n" for i in shape_ids))
    return classes


def test_a_modelnet_folder_is_a_dataset(backbone, tmp_path, capsys):
    root = tmp_path / "modelnet40_normal_resampled"
    classes = write_modelnet_folder(root)
    output = tmp_path / "run"
    args = ["train", "--backbone", str(backbone), "--modelnet40", str(root), "--num-points", "32",
            "--batch-size", "3", "--max-steps", "2", "--no-progress"]  # fmt: skip
    # 6 training clouds: fewer than the 8 memory-bank entries Point-PEFT retrieves by default.
    assert main([*args, "--output-dir", str(output)]) == 2
    error = capsys.readouterr().err
    assert (
        "top_k=8 nearest of the memory bank's entries, one per training cloud, but there are only 6"
        in error
    )
    small_retrieval = ["--option", "top_k=4", "--option", "num_prompts=6"]
    assert main([*args, "--output-dir", str(output), *small_retrieval]) == 0
    result = read_result(output)
    assert result["dataset"] == f"modelnet40={root}"
    assert result["data"]["classes"] == list(classes)
    assert result["data"]["test_clouds"] == 6
    assert result["method_details"]["memory_bank"]["size"] == 6


def test_an_unusable_dataset_file_is_a_usage_error_naming_it(backbone, tmp_path, capsys):
    root = tmp_path / "modelnet40_normal_resampled"
    write_modelnet_folder(root)
    damaged = root / "cup" / "cup_0001.txt"
    damaged.write_text("0.1 0.2 0.3\n")  # space separated: not the official layout
    output = tmp_path / "run"
    args = ["train", "--backbone", str(backbone), "--modelnet40", str(root), "--num-points", "32",
            "--method", "linear", "--max-steps", "1", "--no-progress", "--output-dir", str(output)]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert f"{damaged} is not comma-separated point rows" in error
    assert "Traceback" not in error
    damaged.write_text("0.1,0.2,0.3\n")  # one point: fewer than --num-points
    assert main(args) == 2
    assert f"{damaged} has 1 points, fewer than num_points=32" in capsys.readouterr().err


def test_a_missing_h5py_is_a_usage_error_naming_the_extra(backbone, tmp_path, capsys, monkeypatch):
    import sys

    from point_peft.data import scanobjectnn_file

    root = tmp_path / "h5_files"
    for split in ("train", "test"):  # present, so that reading them is what needs h5py
        path = scanobjectnn_file(root, "PB_T50_RS", split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    args = ["train", "--backbone", str(backbone), "--dataset", f"scanobjectnn={root}",
            "--max-steps", "1", "--no-progress", "--output-dir", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert 'reading ScanObjectNN needs h5py: pip install "point-peft[data]"' in error
    assert "Traceback" not in error


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--backbone", "missing.pth"], "--backbone missing.pth: no such file"),
        (["--dataset", "shapenet"], "unknown dataset 'shapenet'"),
        (["--dataset", "cgal"], "unknown dataset 'cgal'"),
        (["--dataset", "modelnet40"], "needs a folder: modelnet40=DIR"),
        (["--modelnet40", "no/such/folder"], "dataset folder no/such/folder does not exist"),
        (["--dataset", "kicad", "--modelnet40", "."], "name one dataset, not 2"),
        (["--option", "prompt_layers"], "--option takes KEY=VALUE"),
        (["--option", "rank=8"], "point-peft takes no option 'rank'"),
        (["--method", "linear", "--option", "num_prompts=4"], "option of 'vpt-deep'"),
        (["--batch-size", "0"], "batch_size must be an integer >= 1"),
        (["--votes", "0"], "votes must be an integer >= 1"),
        (["--augmentation", "none", "--label-smoothing", "1.5"], "label_smoothing must be in"),
        (["--num-groups", "8"], "--num-groups / --group-size describe a --backbone file"),
    ],
)
def test_bad_input_is_a_clear_usage_error(arguments, message, capsys):
    assert main(["train", "--no-progress", *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith("point-peft train: error:"), error
    assert message in error, error


def test_fewer_points_than_the_backbones_patches_is_a_usage_error(backbone, tmp_path, capsys):
    # TINY has 16 patches of 8 points: 12 points per cloud cannot give 16 distinct centres.
    assert train(backbone, tmp_path / "run", "--num-points", "12") == 2
    error = capsys.readouterr().err
    assert error.startswith("point-peft train: error:"), error
    assert "num_points=12 is too few for the backbone's 16 patches of 8 points" in error, error


def test_batch_size_one_with_point_maes_batch_norm_head_is_a_usage_error(
    backbone, tmp_path, capsys
):
    assert train(backbone, tmp_path / "run", "--batch-size", "1") == 2
    error = capsys.readouterr().err
    assert "batch_size=1: this backbone's classification head has BatchNorm" in error, error
    assert "Traceback" not in error


def test_an_unknown_method_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--method", "lora"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'lora'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "pretrain"])
@pytest.mark.parametrize(
    ("option", "value"), [("--save-every", "0"), ("--log-every", "-1"), ("--threads", "two")]
)
def test_run_option_counts_are_checked_by_the_parser(command, option, value, capsys):
    # Refused while parsing, before any model or data is built, in argparse's words.
    with pytest.raises(SystemExit) as exit_info:
        main([command, option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {option}: must be a positive integer, got '{value}'" in error, error


@pytest.mark.parametrize("suffix", ["finetuning_data", "finetuning_methods"])
def test_docstring_examples(suffix):
    module = importlib.import_module(f"point_peft.{suffix}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


@pytest.mark.slow
def test_the_default_run_learns_the_hard_procedural_task(tmp_path, capsys):
    """The real default path: the cached small pre-trained backbone (built on first use), the
    procedural hard split, Point-PEFT, the default recipe (minutes on a CPU)."""
    output = tmp_path / "run"
    assert main(["train", "--no-progress", "--output-dir", str(output)]) == 0
    result = read_result(output)
    assert result["method"] == "point-peft"
    assert result["dataset"] == "procedural-hard"
    assert result["backbone"]["checkpoint"] == "default small Point-MAE"
    assert result["data"]["train_clouds"] == 3000
    assert result["data"]["test_clouds"] == 750
    assert result["last_loss"] < result["first_loss"]
    # 15 classes (chance 6.7%); measured 60.5%: far above chance, short of a solved task.
    assert result["test_accuracy"] > 0.4


def test_options_take_json_and_pythons_constants():
    from point_peft.cli import parse_options

    options = parse_options(
        ["prompt_layers=2", "cache_query_features=True", "a=false", "b=None", "init=xavier"]
    )
    assert options == {
        "prompt_layers": 2, "cache_query_features": True, "a": False, "b": None, "init": "xavier"
    }  # fmt: skip


def test_resuming_a_finished_run_keeps_its_step_times(backbone, tmp_path):
    output = tmp_path / "run"
    assert train(backbone, output, "--max-steps", "3", "--save-every", "1") == 0
    finished = read_result(output)
    assert finished["step_time"] is not None
    assert train(backbone, output, "--max-steps", "3", "--save-every", "1", "--resume") == 0
    again = read_result(output)
    assert again["resumed_from_step"] == 3
    assert again["step_time"] == finished["step_time"]  # no step ran to measure again
    assert again["test_accuracy"] == finished["test_accuracy"]


def test_ctrl_c_says_how_to_continue_instead_of_a_traceback(
    backbone, tmp_path, capsys, monkeypatch
):
    def interrupted(*args, **kwargs):
        checkpoint = tmp_path / "run" / "checkpoints" / "step-00000002"
        checkpoint.mkdir(parents=True)
        (checkpoint / "trainer_state.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr("point_peft.finetuning.finetune", interrupted)  # run_train imports it
    assert train(backbone, tmp_path / "run") == 130
    error = capsys.readouterr().err
    assert "point-peft train: interrupted; run the same command with --resume" in error
    assert "step-00000002" in error
    assert "Traceback" not in error
