"""The default backbone is pre-trained once, cached under a key of what made it, and then reused;
concurrent callers get one build. A tiny architecture and recipe stand in for the real ones."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest
import torch
from tiny_backbone import TINY_CONFIG, TINY_RECIPE, use_tiny_default_backbone

from point_peft import pretrained
from point_peft.models import PointMAE, PointTransformerConfig, read_checkpoint
from point_peft.pretraining_recipe import CHECKPOINT_NAME, RESULT_NAME, PretrainingRecipe

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def builds(monkeypatch):
    """Swap in the tiny architecture and recipe; record every pre-training run that starts."""
    calls = []
    real_pretrain = pretrained.pretrain

    def counting_pretrain(config, recipe, output_dir, **options):
        calls.append(output_dir)
        return real_pretrain(config, recipe, output_dir, **options)

    use_tiny_default_backbone(monkeypatch)
    monkeypatch.setattr(pretrained, "pretrain", counting_pretrain)
    return calls


def test_first_call_builds_and_publishes_the_backbone(tmp_path, builds):
    path = pretrained.default_backbone_checkpoint(tmp_path, progress=False)
    key = pretrained.backbone_key(TINY_CONFIG, TINY_RECIPE)
    assert path == tmp_path / "backbones" / f"point-mae-small-{key}" / CHECKPOINT_NAME
    assert len(builds) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [CHECKPOINT_NAME, RESULT_NAME, "model_config.json"]
    )
    # Nothing but the published folder and the lock file is left behind.
    assert sorted(p.name for p in path.parent.parent.iterdir()) == sorted(
        [path.parent.name, f".{path.parent.name}.lock"]
    )
    assert json.loads((path.parent / RESULT_NAME).read_text())["steps"] == 2
    assert PointTransformerConfig.from_json_file(path.parent / "model_config.json") == TINY_CONFIG

    model = pretrained.load_default_backbone(num_classes=3, cache_dir=tmp_path, progress=False)
    assert isinstance(model, PointMAE)
    assert model.config == TINY_CONFIG.replace(num_classes=3)
    state = read_checkpoint(path)
    for name, tensor in model.state_dict().items():
        if f"MAE_encoder.{name}" in state:
            assert torch.equal(tensor, state[f"MAE_encoder.{name}"]), name
    assert len(builds) == 1  # loading reused the cached file


def test_second_call_returns_the_cached_file_without_training(tmp_path, builds):
    first = pretrained.default_backbone_checkpoint(tmp_path, progress=False)
    written = first.stat().st_mtime_ns
    again = pretrained.default_backbone_checkpoint(tmp_path, progress=False)
    assert again == first
    assert again.stat().st_mtime_ns == written
    assert len(builds) == 1


def test_cache_dir_defaults_to_the_point_peft_cache(tmp_path, builds, monkeypatch):
    monkeypatch.setenv("POINT_PEFT_CACHE", str(tmp_path / "env-cache"))
    path = pretrained.default_backbone_checkpoint(progress=False)
    assert path.is_relative_to(tmp_path / "env-cache" / "backbones")


def test_concurrent_callers_share_one_build(tmp_path, builds):
    paths, errors = [], []

    def call():
        try:
            paths.append(pretrained.default_backbone_checkpoint(tmp_path, progress=False))
        except BaseException as error:  # surfaced below; a thread would swallow it
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(paths) == 2
    assert paths[0] == paths[1]
    assert len(builds) == 1


def test_key_changes_with_architecture_recipe_seed_and_version(monkeypatch):
    key = pretrained.backbone_key(TINY_CONFIG, TINY_RECIPE)
    assert key == pretrained.backbone_key(
        PointTransformerConfig.from_dict(TINY_CONFIG.to_dict()),
        PretrainingRecipe.from_dict(TINY_RECIPE.to_dict()),
    )
    assert len(key) == 16
    assert int(key, 16) >= 0
    changed = {
        pretrained.backbone_key(TINY_CONFIG.replace(depth=2), TINY_RECIPE),
        pretrained.backbone_key(TINY_CONFIG, dataclasses.replace(TINY_RECIPE, seed=1)),
        pretrained.backbone_key(TINY_CONFIG, dataclasses.replace(TINY_RECIPE, max_steps=3)),
    }
    monkeypatch.setattr(pretrained, "RECIPE_VERSION", pretrained.RECIPE_VERSION + 1)
    changed.add(pretrained.backbone_key(TINY_CONFIG, TINY_RECIPE))
    assert key not in changed
    assert len(changed) == 4


def test_a_new_recipe_builds_a_new_backbone_next_to_the_old(tmp_path, builds, monkeypatch):
    old = pretrained.default_backbone_checkpoint(tmp_path, progress=False)
    monkeypatch.setattr(
        pretrained, "default_backbone_recipe", lambda: dataclasses.replace(TINY_RECIPE, seed=1)
    )
    new = pretrained.default_backbone_checkpoint(tmp_path, progress=False)
    assert new != old
    assert old.is_file()
    assert new.is_file()
    assert len(builds) == 2
    assert not torch.equal(
        read_checkpoint(old)["MAE_encoder.norm.weight"],
        read_checkpoint(new)["MAE_encoder.norm.weight"],
    )


def test_the_real_default_is_the_small_architecture_on_procedural_shapes():
    config, recipe = pretrained.default_backbone_config(), pretrained.default_backbone_recipe()
    assert config == PointTransformerConfig.small()
    assert recipe.data == ("procedural-clean", "procedural-hard")
    assert (
        pretrained.default_backbone_dir("cache")
        .as_posix()
        .startswith("cache/backbones/point-mae-small-")
    )


def test_files_without_a_recorded_architecture_are_refused(tmp_path):
    path = tmp_path / "official.pth"
    torch.save({"base_model": {"MAE_encoder.norm.weight": torch.ones(3)}}, path)
    with pytest.raises(ValueError, match="records no architecture"):
        pretrained.read_pretrained_config(path)
