"""KiCadCategories and CgalMeshes on a hand-made cache: splits, labels, caching, item convention."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from point_peft.corpora import CgalMeshes, KiCadCategories, split_of
from point_peft.corpora import datasets as datasets_module

NUM_POINTS = 48


def tetrahedron(size: float) -> str:
    return (
        "#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point "
        f"[0 0 0, {size} 0 0, 0 {size} 0, 0 0 {size}] }} "
        "coordIndex [0 2 1 -1 0 1 3 -1 0 3 2 -1 1 2 3 -1] } }\n"
    )


def flat_rectangle(width: float) -> str:
    return (
        "#VRML V2.0 utf8\nTransform { translation 5 5 5 children [ Shape { geometry "
        "IndexedFaceSet { coord Coordinate { point "
        f"[0 0 0, {width} 0 0, {width} 1 0, 0 1 0] }} coordIndex [0 1 2 3 -1] }} }} ] }}\n"
    )


@pytest.fixture
def cache(tmp_path):
    """A cache as ``kicad_models`` leaves it: two categories of 12 models, and 2 CGAL meshes."""
    kicad = tmp_path / "kicad"
    for index in range(12):
        alpha = kicad / "Alpha.3dshapes" / f"tetra_{index}.wrl"
        alpha.parent.mkdir(parents=True, exist_ok=True)
        alpha.write_text(tetrahedron(1 + index))
        beta = kicad / "Beta.3dshapes" / f"plate_{index}.wrl"
        beta.parent.mkdir(parents=True, exist_ok=True)
        beta.write_text(flat_rectangle(1 + index / 4))
    (kicad / "categories.json").write_text('{"Alpha": 12, "Beta": 12}')
    meshes = tmp_path / "cgal" / "meshes"
    meshes.mkdir(parents=True)
    (meshes / "square.off").write_text("OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    (meshes / "tetrahedron.off").write_text(
        "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
    )
    return tmp_path


def kicad(cache, split="train", **options) -> KiCadCategories:
    options = {"categories": ["Alpha", "Beta"], "num_points": NUM_POINTS, **options}
    return KiCadCategories(split, cache_dir=cache, progress=False, **options)


def test_splits_partition_each_category_by_the_hash_of_the_file_name(cache):
    train, test = kicad(cache, "train", test_fraction=0.3), kicad(cache, "test", test_fraction=0.3)
    assert not set(train.names) & set(test.names)
    assert len(train) + len(test) == 24
    for dataset, split in ((train, "train"), (test, "test")):
        for name in dataset.names:
            assert split_of(name.split("/")[1], 0.3) == split
    assert len(test) > 0


def test_items_follow_the_point_dataset_convention_and_are_unit_sphere_clouds(cache):
    train = kicad(cache)
    assert train.class_names == ("Alpha", "Beta")
    item = train[0]
    assert set(item) == {"points", "labels"}
    assert item["points"].dtype == torch.float32
    assert item["points"].shape == (NUM_POINTS, 3)
    assert isinstance(item["labels"], int)
    points = train.points
    np.testing.assert_allclose(points.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(points, axis=2).max(axis=1), 1, rtol=1e-6)
    batch = next(iter(DataLoader(train, batch_size=4)))
    assert batch["points"].shape == (4, NUM_POINTS, 3)
    assert batch["labels"].dtype == torch.int64


def test_labels_follow_the_geometry_of_their_category(cache):
    """Beta models are flat plates: their clouds are planar; Alpha tetrahedra are not."""
    train = kicad(cache)
    for points, label, name in zip(train.points, train.labels, train.names, strict=True):
        smallest_spread = np.linalg.eigvalsh(np.cov(points.T))[0]
        if label == 1:
            assert name.startswith("Beta/")
            assert smallest_spread < 1e-10
        else:
            assert name.startswith("Alpha/")
            assert smallest_spread > 1e-3
    assert train.class_counts() == {"Alpha": train.labels.count(0), "Beta": train.labels.count(1)}


def test_clouds_are_reproducible_and_depend_on_the_seed(cache, tmp_path_factory):
    other_cache = tmp_path_factory.mktemp("other")
    shutil.copytree(cache / "kicad", other_cache / "kicad")
    first, again = kicad(cache), kicad(other_cache)
    np.testing.assert_array_equal(first.points, again.points)
    # Every file has its own random stream: the Alpha tetrahedra differ only in size, so a shared
    # stream would make their normalised clouds identical.
    alphas = first.points[np.array(first.labels) == 0]
    assert len(alphas) > 1
    assert not np.allclose(alphas[0], alphas[1])
    reseeded = kicad(cache, seed=1)
    assert not np.allclose(first.points, reseeded.points)
    # A cloud depends on its file only, not on which categories are loaded with it.
    alone = kicad(other_cache, categories=["Beta"], seed=0)
    np.testing.assert_array_equal(alone.points, first.points[np.array(first.labels) == 1])


def test_the_second_load_reads_the_cache_and_a_changed_folder_rebuilds_it(cache, monkeypatch):
    first = kicad(cache)
    stored = sorted(path.name for path in (cache / "clouds").rglob("*.npz"))
    assert stored == ["Alpha-train.npz", "Beta-train.npz"]

    def no_parsing(path):
        raise AssertionError(f"{path} was parsed again")

    monkeypatch.setattr(datasets_module, "read_vrml", no_parsing)
    np.testing.assert_array_equal(kicad(cache).points, first.points)

    monkeypatch.undo()
    split = split_of("plate_new", 0.2)
    before = kicad(cache, split=split)  # cached (again) before the folder changes
    (cache / "kicad" / "Beta.3dshapes" / "plate_new.wrl").write_text(flat_rectangle(3))
    grown = kicad(cache, split=split)
    assert sorted(grown.names) == sorted([*before.names, "Beta/plate_new"])


def test_transforms_apply_to_points_and_cannot_change_the_cache(cache):
    doubled = kicad(cache, transform=lambda points: points.mul_(2))
    np.testing.assert_allclose(doubled[0]["points"].numpy(), 2 * doubled.points[0])
    np.testing.assert_allclose(doubled[0]["points"].numpy(), 2 * doubled.points[0])


def test_unreadable_models_are_skipped_with_a_warning(cache):
    broken = cache / "kicad" / "Alpha.3dshapes" / "broken.wrl"
    broken.write_text("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet {")
    split = split_of("broken", 0.2)
    with pytest.warns(UserWarning, match=r"1 of \d+ meshes skipped for Alpha-\w+: broken.wrl"):
        dataset = kicad(cache, split=split)
    assert "Alpha/broken" not in dataset.names
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the skip is recorded in the cache: no second warning
        kicad(cache, split=split)


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"split": "val"}, ValueError, "split must be one of"),
        ({"test_fraction": 1.0}, ValueError, "test_fraction"),
        ({"num_points": 0}, ValueError, "num_points must be >= 1"),
        ({"num_points": 2.5}, TypeError, "num_points must be an int"),
        ({"categories": ["Alpha", "Alpha"]}, ValueError, "distinct"),
        ({"categories": ["Gamma"]}, ValueError, "no categories"),
    ],
)
def test_bad_arguments_are_refused(cache, options, error, fragment):
    split = options.pop("split", "train")
    with pytest.raises(error, match=fragment):
        kicad(cache, split, **options)


def test_a_missing_corpus_is_not_downloaded_unless_asked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m point_peft\.corpora fetch"):
        KiCadCategories(cache_dir=tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match=r"python -m point_peft\.corpora fetch --cgal"):
        CgalMeshes(cache_dir=tmp_path, progress=False)


def test_cgal_meshes_give_instance_labels_and_several_draws_per_mesh(cache):
    single = CgalMeshes(num_points=NUM_POINTS, cache_dir=cache, progress=False)
    assert single.class_names == ("square", "tetrahedron")
    assert single.labels == [0, 1]
    triple = CgalMeshes(num_points=NUM_POINTS, samples_per_mesh=3, cache_dir=cache, progress=False)
    assert triple.labels == [0, 0, 0, 1, 1, 1]
    assert triple.names == ["square"] * 3 + ["tetrahedron"] * 3
    np.testing.assert_array_equal(triple.points[0], single.points[0])  # draw 0 is shared
    assert not np.allclose(triple.points[0], triple.points[1])
    np.testing.assert_allclose(triple.points[:3, :, 2], triple.points[0, 0, 2])  # still flat
    assert triple[4]["points"].shape == (NUM_POINTS, 3)
    with pytest.raises(ValueError, match="samples_per_mesh must be >= 1"):
        CgalMeshes(samples_per_mesh=0, cache_dir=cache, progress=False)
