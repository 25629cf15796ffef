"""The pre-training data mixture: source names, what ``auto`` finds in the corpus cache, every
reader behind a source (on tiny files written here), and the clouds held in memory."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch

from point_peft.data import (
    ModelNet40,
    ModelNet40Preprocessed,
    ProceduralShapes,
    scanobjectnn_file,
    write_modelnet_preprocessed,
)
from point_peft.finetuning_data import load_task
from point_peft.pretraining_data import (
    PointClouds,
    PretrainingSource,
    build_pretraining_clouds,
    cached_corpora,
    collate_points,
    load_source,
    resolve_sources,
)

CUBE_OFF = """OFF
8 6 0
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 1 2 6 5
4 2 3 7 6
4 3 0 4 7
"""
CLASSES = ("airplane", "cup")


pytestmark = pytest.mark.usefixtures("one_thread")


def write_modelnet_text(root, shapes_per_class: int = 3, points: int = 80) -> list[str]:
    """The official text layout; odd-numbered shapes are train. Returns the train shape ids."""
    root.mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    rng = np.random.default_rng(0)
    splits = {"train": [], "test": []}
    for name in CLASSES:
        (root / name).mkdir()
        for number in range(1, shapes_per_class + 1):
            shape_id = f"{name}_{number:04d}"
            table = np.concatenate([rng.normal(size=(points, 3)) * 3 + 5, np.ones((points, 3))], 1)
            np.savetxt(root / name / f"{shape_id}.txt", table, fmt="%.6f", delimiter=",")
            splits["train" if number % 2 else "test"].append(shape_id)
    for split, ids in splits.items():
        (root / f"modelnet40_{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return splits["train"]


def assert_in_unit_sphere(points: torch.Tensor) -> None:
    radii = points.norm(dim=-1).amax(dim=-1)
    assert torch.allclose(radii, torch.ones_like(radii), atol=1e-5), radii


def test_source_names_parse_and_unknown_ones_are_listed():
    assert PretrainingSource.parse("procedural-hard") == PretrainingSource("procedural-hard")
    parsed = PretrainingSource.parse("scanobjectnn-OBJ_BG=data/h5_files")
    assert (parsed.kind, parsed.root.as_posix()) == ("scanobjectnn-OBJ_BG", "data/h5_files")
    assert str(parsed) == "scanobjectnn-OBJ_BG=data/h5_files"
    with pytest.raises(ValueError, match=r"unknown data source 'shapenet'.*modelnet40=DIR"):
        PretrainingSource.parse("shapenet")
    with pytest.raises(ValueError, match=r"needs a folder: scanobjectnn=DIR"):
        PretrainingSource.parse("scanobjectnn=")
    with pytest.raises(ValueError, match=r"unknown data source 'cgal=x'"):
        PretrainingSource.parse("cgal=x")
    with pytest.raises(ValueError, match="no data source given"):
        resolve_sources([])


def test_auto_adds_only_the_corpora_already_in_the_cache(tmp_path):
    assert resolve_sources(["auto"], tmp_path) == ("procedural-clean", "procedural-hard")
    assert cached_corpora(tmp_path) == []
    (tmp_path / "cgal" / "meshes").mkdir(parents=True)
    (tmp_path / "cgal" / "meshes" / "cube.off").write_text(CUBE_OFF)
    assert resolve_sources(["auto", "procedural-clean"], tmp_path) == (
        "procedural-clean",
        "procedural-hard",
        "cgal",
    )
    from point_peft.corpora import DEFAULT_KICAD_CATEGORIES

    for category in DEFAULT_KICAD_CATEGORIES[:-1]:
        (tmp_path / "kicad" / f"{category}.3dshapes").mkdir(parents=True)
    assert cached_corpora(tmp_path) == ["cgal"]  # one category still missing
    (tmp_path / "kicad" / f"{DEFAULT_KICAD_CATEGORIES[-1]}.3dshapes").mkdir()
    assert cached_corpora(tmp_path) == ["cgal", "kicad"]


def test_clouds_are_the_procedural_items_in_source_order():
    clouds = build_pretraining_clouds(
        ["procedural-hard", "procedural-clean"], num_points=48, procedural_samples_per_class=1,
        seed=3, progress=False,
    )  # fmt: skip
    assert isinstance(clouds, PointClouds)
    assert clouds.sources == {"procedural-hard": 15, "procedural-clean": 15}
    assert clouds.points.shape == (30, 48, 3)
    assert clouds.points.dtype == torch.float32
    hard = ProceduralShapes("train", "hard", num_points=48, samples_per_class=1, seed=3)
    clean = ProceduralShapes("train", "clean", num_points=48, samples_per_class=1, seed=3)
    assert torch.equal(clouds[0]["points"], hard[0]["points"])
    assert torch.equal(clouds[29]["points"], clean[14]["points"])
    assert set(clouds[0]) == {"points"}  # labels are not part of pre-training
    test_split = build_pretraining_clouds(
        ["procedural-clean"], num_points=48, procedural_samples_per_class=1, split="test",
        seed=3, progress=False,
    )  # fmt: skip
    assert not torch.equal(test_split.points, clouds.points[15:])


def test_cgal_source_samples_clouds_from_cached_meshes(tmp_path):
    (tmp_path / "cgal" / "meshes").mkdir(parents=True)
    (tmp_path / "cgal" / "meshes" / "cube.off").write_text(CUBE_OFF)
    clouds = build_pretraining_clouds(
        ["cgal"], num_points=256, cgal_samples_per_mesh=3, cache_dir=tmp_path, progress=False
    )
    assert clouds.sources == {"cgal": 3}
    assert_in_unit_sphere(clouds.points)
    # Every point lies on a face of the cube, and normalisation (a shift and one scale) keeps
    # faces axis-aligned at the extremes of the cloud: one coordinate of each point sits there.
    low, high = clouds.points.amin(dim=1, keepdim=True), clouds.points.amax(dim=1, keepdim=True)
    gap = torch.minimum(clouds.points - low, high - clouds.points).amin(dim=-1)
    assert gap.max() < 1e-5
    assert not torch.equal(clouds.points[0], clouds.points[1])  # differently seeded draws


def test_missing_corpus_names_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m point_peft\.corpora fetch --cgal"):
        build_pretraining_clouds(["cgal"], num_points=64, cache_dir=tmp_path, progress=False)


def test_modelnet_folder_reads_the_train_split_from_text_or_pickle(tmp_path):
    root = tmp_path / "modelnet40_normal_resampled"
    train_ids = write_modelnet_text(root)
    source = f"modelnet40={root}"
    assert isinstance(load_source(source, num_points=32), ModelNet40)
    from_text = build_pretraining_clouds([source], num_points=32, progress=False)
    assert from_text.sources == {source: len(train_ids)}
    assert_in_unit_sphere(from_text.points)

    write_modelnet_preprocessed(root, "train", file_points=64)
    assert isinstance(load_source(source, num_points=32), ModelNet40Preprocessed)
    from_pickle = build_pretraining_clouds([source], num_points=32, progress=False)
    assert from_pickle.points.shape == from_text.points.shape
    assert_in_unit_sphere(from_pickle.points)
    # A pickle of fewer points than asked for gives way to the text files.
    assert isinstance(load_source(source, num_points=128), ModelNet40)


def test_a_modelnet_task_with_one_splits_pickle_warns_and_records_both_readers(tmp_path):
    root = tmp_path / "modelnet40_normal_resampled"
    write_modelnet_text(root)
    source = f"modelnet40={root}"
    both_text = load_task(source, num_points=32, progress=False)
    assert both_text.describe()["readers"] == {"train": "ModelNet40", "test": "ModelNet40"}

    write_modelnet_preprocessed(root, "train", file_points=64)  # the test split's is missing
    with pytest.warns(UserWarning, match="their points are sampled differently"):
        mixed = load_task(source, num_points=32, progress=False)
    assert mixed.describe()["readers"] == {"train": "ModelNet40Preprocessed", "test": "ModelNet40"}


def test_scanobjectnn_folder_reads_the_chosen_variant_normalised(tmp_path):
    h5py = pytest.importorskip("h5py")
    root = tmp_path / "h5_files"
    rng = np.random.default_rng(0)
    for variant, count in (("PB_T50_RS", 5), ("OBJ_BG", 2)):
        path = scanobjectnn_file(root, variant, "train")
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as handle:
            handle.create_dataset("data", data=rng.normal(size=(count, 64, 3)).astype("f4") * 4)
            handle.create_dataset("label", data=np.zeros(count, dtype=np.int64))
    clouds = build_pretraining_clouds(
        [f"scanobjectnn={root}", f"scanobjectnn-OBJ_BG={root}"], num_points=32, progress=False
    )
    assert list(clouds.sources.values()) == [5, 2]
    assert_in_unit_sphere(clouds.points)


def test_scanobjectnn_task_keeps_the_files_coordinates(tmp_path):
    # Fine-tuning follows the official protocol: the files are normalised by their authors and
    # read as they are (pre-training, above, re-normalises every source of its mixture).
    h5py = pytest.importorskip("h5py")
    root = tmp_path / "h5_files"
    rng = np.random.default_rng(0)
    stored = {}
    for split in ("train", "test"):
        path = scanobjectnn_file(root, "PB_T50_RS", split)
        path.parent.mkdir(parents=True, exist_ok=True)
        stored[split] = rng.normal(size=(3, 64, 3)).astype("f4") * 4
        with h5py.File(path, "w") as handle:
            handle.create_dataset("data", data=stored[split])
            handle.create_dataset("label", data=np.arange(3, dtype=np.int64))
    task = load_task(f"scanobjectnn={root}", num_points=64, progress=False)
    for split, clouds in (("train", task.train), ("test", task.test)):
        radii = clouds.points.norm(dim=-1).sort(dim=-1).values
        expected = torch.from_numpy(stored[split]).norm(dim=-1).sort(dim=-1).values
        torch.testing.assert_close(radii, expected)


def test_collate_keeps_xyz_only_and_point_clouds_check_their_inputs():
    items = [{"points": torch.rand(10, 6), "labels": 1}, {"points": torch.rand(10, 6), "labels": 2}]
    batch = collate_points(items)
    assert set(batch) == {"points"}
    assert torch.equal(batch["points"], torch.stack([item["points"][:, :3] for item in items]))
    with pytest.raises(ValueError, match=r"points must be \(clouds, num_points, 3\)"):
        PointClouds(torch.zeros(2, 10), {"x": 2})
    with pytest.raises(ValueError, match="sources count 3 clouds, points hold 2"):
        PointClouds(torch.zeros(2, 10, 3), {"x": 3})


@pytest.mark.parametrize("name", ["pretraining_data", "pretraining_recipe", "pretrained", "cli"])
def test_docstring_examples(name):
    module = importlib.import_module(f"point_peft.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0 or name == "cli"
