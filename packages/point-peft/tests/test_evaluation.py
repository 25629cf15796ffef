"""evaluate(): overall and mean class accuracy, voting, seeding, modes, every kind of model."""

from __future__ import annotations

import copy
import doctest
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import point_peft.evaluation
from point_peft import PointBERT, evaluate, get_baseline_model
from point_peft.data import ScaleAndTranslate
from point_peft.evaluation import classification_metrics
from point_peft.method import WithSampleIndices

sys.path.insert(0, str(Path(__file__).parent))
from method_helpers import (
    clouds,
    tiny_backbone,
    tiny_backbone_config,
    tiny_method_config,
    tiny_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class LookupModel(nn.Module):
    """Returns preset logits: cloud ``i`` carries ``i`` in its first coordinate."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone(), requires_grad=False)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.table[points[:, 0, 0].round().long()]


def lookup_batches(labels: list[int], batch_size: int) -> list[dict[str, torch.Tensor]]:
    points = torch.zeros(len(labels), 4, 3)
    points[:, 0, 0] = torch.arange(len(labels), dtype=torch.float32)
    return [
        {
            "points": points[start : start + batch_size],
            "labels": torch.tensor(labels)[start : start + batch_size],
        }
        for start in range(0, len(labels), batch_size)
    ]


def test_accuracy_and_mean_class_accuracy_on_a_hand_made_example():
    # predictions 0 0 1 1 2 0 3 3 against labels 0 0 0 1 2 2 3 3
    table = torch.tensor(
        [
            [5.0, 1, 0, 0],
            [2.0, 1, 0, 0],
            [0.0, 3, 1, 0],  # class 0 misread as 1
            [0.0, 4, 1, 0],
            [0.0, 0, 9, 0],
            [1.0, 0, 0.5, 0],  # class 2 misread as 0
            [0.0, 0, 0, 1],
            [0.0, 0, 0, 7],
        ]
    )
    labels = [0, 0, 0, 1, 2, 2, 3, 3]
    metrics = evaluate(LookupModel(table), lookup_batches(labels, batch_size=3))
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    # per class: 2/3, 1/1, 1/2, 2/2; their mean is not the overall accuracy
    assert metrics["per_class_accuracy"] == pytest.approx([2 / 3, 1.0, 0.5, 1.0])
    assert metrics["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 + 0.5 + 1) / 4)
    assert (metrics["num_samples"], metrics["votes"], metrics["average"]) == (8, 1, "logits")


def test_a_class_absent_from_the_test_labels_is_left_out_of_the_mean():
    logits = torch.tensor([[3.0, 0, 1], [0.0, 0, 2], [0.0, 0, 1]])  # predicts 0, 2, 2
    metrics = classification_metrics(logits, torch.tensor([0, 2, 0]))
    assert metrics["per_class_accuracy"] == [0.5, None, 1.0]
    assert metrics["mean_class_accuracy"] == pytest.approx(0.75)
    assert metrics["accuracy"] == pytest.approx(2 / 3)


def test_pairs_and_label_shapes_of_any_loader_are_read():
    table = torch.eye(3)
    points = torch.zeros(3, 4, 3)
    points[:, 0, 0] = torch.arange(3.0)
    loader = DataLoader(TensorDataset(points, torch.tensor([[0], [1], [1]])), batch_size=2)
    metrics = evaluate(LookupModel(table), loader)
    assert metrics["accuracy"] == pytest.approx(2 / 3)


# -- voting ------------------------------------------------------------------------------------------
class MeanXModel(nn.Module):
    """Two classes scored by the mean x of the cloud: logits (+m, -m)."""

    def __init__(self) -> None:
        super().__init__()
        self.sign = nn.Parameter(torch.tensor([1.0, -1.0]), requires_grad=False)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return points[..., 0].mean(dim=1, keepdim=True) * self.sign


class ShiftX:
    """Vote ``k`` shifts x by ``offsets[k]`` (cycling), so every copy is known in advance."""

    def __init__(self, offsets: list[float]) -> None:
        self.offsets, self.calls = offsets, 0

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        shifted = points.clone()
        shifted[..., 0] += self.offsets[self.calls % len(self.offsets)]
        self.calls += 1
        return shifted


def test_voting_averages_the_logits_of_the_augmented_copies():
    """A cloud of mean x -0.2 with copies shifted by +3, -1, -1: logits (2.8, -2.8),
    (-1.2, 1.2), (-1.2, 1.2). Their mean (0.133, -0.133) says class 0, while the plain model,
    a majority of the copies and the mean of their softmax outputs (0.388 for class 0) say 1."""
    points = torch.full((1, 5, 3), -0.2)
    batches = [{"points": points, "labels": torch.tensor([0])}]
    model = MeanXModel()
    plain = evaluate(model, batches, return_predictions=True)
    torch.testing.assert_close(plain["scores"], torch.tensor([[-0.2, 0.2]]))
    assert plain["accuracy"] == 0.0
    voted = evaluate(
        model, batches, votes=3, augmentation=ShiftX([3.0, -1.0, -1.0]), return_predictions=True
    )
    torch.testing.assert_close(voted["scores"], torch.tensor([[0.4 / 3, -0.4 / 3]]))
    assert voted["accuracy"] == 1.0
    by_probability = evaluate(
        model,
        batches,
        votes=3,
        augmentation=ShiftX([3.0, -1.0, -1.0]),
        average="probabilities",
        return_predictions=True,
    )
    expected = torch.tensor([[2.8, -2.8], [-1.2, 1.2], [-1.2, 1.2]]).softmax(-1).mean(0)
    torch.testing.assert_close(by_probability["scores"][0], expected)
    assert by_probability["accuracy"] == 0.0


def test_one_vote_without_augmentation_is_plain_evaluation():
    model = tiny_backbone(0)
    batches = [
        {"points": clouds(4, seed=seed), "labels": torch.tensor([0, 1, 2, 3])} for seed in (1, 2)
    ]
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(batch["points"]) for batch in batches])
    metrics = evaluate(model.train(), batches, return_predictions=True)
    assert torch.equal(metrics["scores"], logits)
    assert torch.equal(metrics["labels"], torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    expected = classification_metrics(logits, metrics["labels"])
    assert metrics["accuracy"] == expected["accuracy"]
    assert metrics["mean_class_accuracy"] == expected["mean_class_accuracy"]


def test_default_voting_is_seeded_scale_and_translate_in_loader_order():
    """Vote by vote, batch by batch, from one CPU generator seeded with ``seed``."""
    model = tiny_backbone(1).eval()
    batches = [
        {"points": clouds(3, seed=seed), "labels": torch.tensor([0, 1, 2])} for seed in (4, 5)
    ]
    augment = ScaleAndTranslate(generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = torch.cat(
            [torch.stack([model(augment(b["points"])) for _ in range(3)]).mean(0) for b in batches]
        )
    metrics = evaluate(model, batches, votes=3, seed=7, return_predictions=True)
    torch.testing.assert_close(metrics["scores"], expected, rtol=0, atol=0)
    again = evaluate(model, batches, votes=3, seed=7, return_predictions=True)
    assert torch.equal(again["scores"], metrics["scores"])
    other_seed = evaluate(model, batches, votes=3, seed=8, return_predictions=True)
    assert not torch.equal(other_seed["scores"], metrics["scores"])


def test_an_augmentation_on_the_global_rng_is_seeded_and_the_global_state_restored():
    model = tiny_backbone(1).eval()
    batches = [{"points": clouds(3, seed=4), "labels": torch.tensor([0, 1, 2])}]
    state = torch.get_rng_state()
    first = evaluate(
        model, batches, votes=2, augmentation=ScaleAndTranslate(), seed=3, return_predictions=True
    )
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(1234)  # whatever state the caller is in
    second = evaluate(
        model, batches, votes=2, augmentation=ScaleAndTranslate(), seed=3, return_predictions=True
    )
    assert torch.equal(first["scores"], second["scores"])


# -- the models -------------------------------------------------------------------------------------
def test_the_mode_of_every_submodule_is_restored():
    model = tiny_model(config=tiny_method_config(freeze_batchnorm_stats=True)).train()
    modes = {name: module.training for name, module in model.named_modules()}
    assert not all(modes.values())  # the frozen patch-encoder BatchNorms are in eval mode
    evaluate(model, [{"points": clouds(2), "labels": torch.tensor([0, 1])}], votes=2)
    assert {name: module.training for name, module in model.named_modules()} == modes
    model.eval()
    evaluate(model, [{"points": clouds(2), "labels": torch.tensor([0, 1])}])
    assert not any(module.training for module in model.modules())


def test_voting_with_point_peft_and_its_query_cache():
    """The reference's voting crashes with Point-PEFT; here each copy gets its own query. A model
    trained with the query cache votes exactly as the same weights without it: the cache is for
    training samples, and evaluation passes no sample indices."""
    cached = tiny_model(seed=2, config=tiny_method_config(cache_query_features=True))
    train = WithSampleIndices(
        [{"points": cloud, "labels": label % 5} for label, cloud in enumerate(clouds(6, seed=8))]
    )
    optimizer = torch.optim.AdamW([p for p in cached.parameters() if p.requires_grad], lr=1e-3)
    for batch in DataLoader(train, batch_size=3):
        loss = cached(
            batch["points"], labels=batch["labels"], sample_indices=batch["sample_indices"]
        ).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert len(cached.query_cache) == 6
    uncached = copy.deepcopy(cached)
    uncached.point_peft_config.cache_query_features = False
    uncached.query_cache.clear()

    test = WithSampleIndices(  # indices 0-3 collide with cached training samples: must not matter
        [{"points": cloud, "labels": label % 5} for label, cloud in enumerate(clouds(4, seed=9))]
    )
    results = [
        evaluate(model, DataLoader(test, batch_size=2), votes=3, seed=1, return_predictions=True)
        for model in (cached, uncached)
    ]
    assert torch.equal(results[0]["scores"], results[1]["scores"])
    assert len(cached.query_cache) == 6
    # ... and each copy's query is its own: voting differs from plain evaluation
    plain = evaluate(cached, DataLoader(test, batch_size=2), return_predictions=True)
    assert not torch.equal(plain["scores"], results[0]["scores"])


@pytest.mark.parametrize("kind", ["baseline", "point_bert"])
def test_baselines_and_plain_classifiers_vote(kind):
    if kind == "baseline":
        model = get_baseline_model(tiny_backbone(0), "vpt-deep", num_prompts=2)
    else:
        torch.manual_seed(0)
        model = PointBERT(tiny_backbone_config(patch_dim=12))
    batches = [{"points": clouds(4), "labels": torch.tensor([0, 1, 2, 3])}]
    metrics = evaluate(model, batches, votes=2)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert len(metrics["per_class_accuracy"]) == 5
    assert model.training


# -- errors ------------------------------------------------------------------------------------------
BATCHES = [{"points": torch.zeros(2, 4, 3), "labels": torch.tensor([0, 1])}]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"votes": 0}, ValueError, r"votes must be a positive integer, got 0"),
        ({"votes": 2.0}, ValueError, r"votes must be a positive integer, got 2.0"),
        ({"votes": True}, ValueError, r"votes must be a positive integer, got True"),
        ({"augmentation": "scale"}, TypeError, r"augmentation must be a callable .* got str"),
        ({"seed": -1}, ValueError, r"seed must be a non-negative integer, got -1"),
        (
            {"average": "max"},
            ValueError,
            r"average must be one of logits, probabilities, got 'max'",
        ),
    ],
)
def test_bad_arguments_are_named(arguments, error, message):
    with pytest.raises(error, match=message):
        evaluate(LookupModel(torch.eye(2)), BATCHES, **arguments)


def test_bad_batches_models_and_loaders_are_clear_errors():
    model = LookupModel(torch.eye(2))
    with pytest.raises(
        KeyError, match=r"must hold 'points' and 'labels'; this one lacks \['labels'\]"
    ):
        evaluate(model, [{"points": torch.zeros(2, 4, 3)}])
    with pytest.raises(TypeError, match="batches must be dicts"):
        evaluate(model, [torch.zeros(2, 4, 3)])
    with pytest.raises(ValueError, match="the loader yielded no batch"):
        evaluate(model, [])
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\)"):
        evaluate(model, [{"points": torch.zeros(2, 4, 3), "labels": torch.tensor([0, 2])}])
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        evaluate(lambda points: points, BATCHES)

    class NoLogits(nn.Module):
        def forward(self, points):
            return {"scores": points}

    with pytest.raises(TypeError, match="the model must return logits"):
        evaluate(NoLogits(), BATCHES)


def test_docstring_examples():
    result = doctest.testmod(point_peft.evaluation, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
