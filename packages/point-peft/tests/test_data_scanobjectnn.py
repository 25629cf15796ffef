"""ScanObjectNN reader on tiny h5 files written here in the official layout (``main_split/``,
``main_split_nobg/``; datasets ``data``, ``label``, ``mask``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from point_peft.data import (
    SCANOBJECTNN_CLASSES,
    DatasetFileError,
    ScanObjectNN,
    normalize_to_unit_sphere,
    scanobjectnn_file,
)
from point_peft.ops import farthest_point_sample

h5py = pytest.importorskip("h5py")

POINTS = 64  # the real files hold 2048 per object


def write_h5(path: Path, data: np.ndarray, labels: np.ndarray, masks: np.ndarray | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("data", data=data)
        handle.create_dataset("label", data=labels)
        if masks is not None:
            handle.create_dataset("mask", data=masks)


def make_objects(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Objects whose background points (mask -1) sit far out at x >= 10, so they can be told apart."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(-1, 1, size=(count, POINTS, 3)).astype(np.float32)
    masks = np.where(rng.random((count, POINTS)) < 0.3, -1, rng.integers(0, 5, (count, POINTS)))
    data[..., 0] = np.where(masks == -1, 10 + rng.random((count, POINTS)), data[..., 0])
    labels = rng.integers(0, 15, size=count).astype(np.int64)
    return data, labels, masks.astype(np.int32)


@pytest.fixture
def h5_root(tmp_path):
    """All six files; each file's objects differ (seeded by position), so a mix-up shows."""
    root = tmp_path / "h5_files"
    written = {}
    for seed, variant in enumerate(("OBJ_BG", "OBJ_ONLY", "PB_T50_RS")):
        for split, count in (("train", 5), ("test", 3)):
            content = make_objects(count, seed=10 * seed + count)
            write_h5(scanobjectnn_file(root, variant, split), *content)
            written[variant, split] = content
    return root, written


def test_file_names_follow_the_official_layout():
    expected = {
        ("OBJ_BG", "train"): "main_split/training_objectdataset.h5",
        ("OBJ_BG", "test"): "main_split/test_objectdataset.h5",
        ("OBJ_ONLY", "train"): "main_split_nobg/training_objectdataset.h5",
        ("OBJ_ONLY", "test"): "main_split_nobg/test_objectdataset.h5",
        ("PB_T50_RS", "train"): "main_split/training_objectdataset_augmentedrot_scale75.h5",
        ("PB_T50_RS", "test"): "main_split/test_objectdataset_augmentedrot_scale75.h5",
    }
    for (variant, split), relative in expected.items():
        assert scanobjectnn_file("root", variant, split) == Path("root") / relative


def test_fifteen_classes_in_label_order():
    assert len(SCANOBJECTNN_CLASSES) == 15
    assert SCANOBJECTNN_CLASSES[:3] == ("bag", "bin", "box")
    assert SCANOBJECTNN_CLASSES[-1] == "toilet"


@pytest.mark.parametrize("variant", ["OBJ_BG", "OBJ_ONLY", "PB_T50_RS"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_each_variant_reads_its_own_file_as_written(h5_root, variant, split):
    root, written = h5_root
    data, labels, _ = written[variant, split]
    dataset = ScanObjectNN(root, split, variant=variant, num_points=POINTS)
    assert len(dataset) == len(labels)
    assert dataset.labels == labels.tolist()
    assert dataset.class_names == SCANOBJECTNN_CLASSES
    for index in range(len(dataset)):
        item = dataset[index]
        assert set(item) == {"points", "labels"}
        assert item["points"].dtype == torch.float32
        assert np.array_equal(item["points"].numpy(), data[index])  # no normalisation by default
        assert item["labels"] == labels[index]


def test_labels_stored_as_a_column_are_accepted(tmp_path):
    data, labels, masks = make_objects(4, seed=0)
    write_h5(scanobjectnn_file(tmp_path, "OBJ_BG", "test"), data, labels[:, None], masks)
    dataset = ScanObjectNN(tmp_path, "test", variant="OBJ_BG", num_points=POINTS)
    assert dataset.labels == labels.tolist()


def test_mask_marks_object_points(h5_root):
    root, written = h5_root
    _, _, masks = written["OBJ_BG", "train"]
    dataset = ScanObjectNN(root, "train", variant="OBJ_BG", num_points=POINTS, return_mask=True)
    item = dataset[2]
    assert item["mask"].dtype == torch.bool
    assert np.array_equal(item["mask"].numpy(), masks[2] != -1)


def test_fewer_points_by_fps_keep_their_mask(h5_root):
    root, written = h5_root
    data, _, masks = written["PB_T50_RS", "test"]
    dataset = ScanObjectNN(root, "test", num_points=20, return_mask=True)
    item = dataset[1]
    order = farthest_point_sample(torch.from_numpy(data[1][None]), 20)[0].numpy()
    assert np.array_equal(item["points"].numpy(), data[1][order])
    assert np.array_equal(item["mask"].numpy(), masks[1][order] != -1)
    # Background points were placed at x >= 10: the mask must say so for every chosen point.
    assert np.array_equal(item["mask"].numpy(), item["points"][:, 0].numpy() < 10)
    random_subset = ScanObjectNN(root, "test", num_points=20, sampling="random", return_mask=True)
    other = random_subset[1]
    assert np.array_equal(other["mask"].numpy(), other["points"][:, 0].numpy() < 10)
    assert torch.equal(other["points"], random_subset[1]["points"])  # a fixed subset per item


def test_normalize_option_and_transforms(h5_root):
    root, _ = h5_root
    dataset = ScanObjectNN(
        root, "test", num_points=POINTS, normalize=True, transform=lambda points: points * 3
    )
    points = dataset[0]["points"]
    assert float(points.norm(dim=1).max()) == pytest.approx(3.0)
    assert torch.allclose(points.mean(dim=0), torch.zeros(3), atol=1e-5)
    # A sample of the object keeps the object's frame: normalised over all its points first.
    stored = torch.from_numpy(h5_root[1]["PB_T50_RS", "test"][0][0]).float()
    first = ScanObjectNN(root, "test", num_points=20, sampling="first", normalize=True)[0]
    assert torch.allclose(first["points"], normalize_to_unit_sphere(stored)[:20], atol=1e-6)
    shrinking = ScanObjectNN(
        root, "test", num_points=POINTS, return_mask=True, transform=lambda points: points[:10]
    )
    with pytest.raises(ValueError, match="misalign the object mask"):
        shrinking[0]


def test_unknown_variant_and_missing_files_are_explained(h5_root, tmp_path):
    root, _ = h5_root
    with pytest.raises(
        ValueError, match=r"variant must be one of \('OBJ_BG', 'OBJ_ONLY', 'PB_T50_RS'\)"
    ):
        ScanObjectNN(root, variant="hardest")
    with pytest.raises(ValueError, match="split must be one of"):
        ScanObjectNN(root, "val")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="main_split_nobg") as error:
        ScanObjectNN(empty, "train", variant="OBJ_ONLY")
    assert "training_objectdataset_augmentedrot_scale75.h5" in str(error.value)  # the layout
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ScanObjectNN(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": np.zeros((3, POINTS, 2), np.float32)}, r"'data' should be \(N, 2048, 3\)"),
        ({"labels": np.zeros(2, np.int64)}, r"'label' should be \(3,\)"),
        ({"labels": np.array([0, 1, 15])}, r"outside \[0, 15\)"),
        ({"labels": np.zeros(3, np.float32)}, "should hold integers"),
        ({"masks": np.zeros((3, 5), np.int32)}, r"'mask' should be \(3, 64\)"),
        ({"masks": None}, "has no dataset 'mask'"),
    ],
)
def test_malformed_files_are_refused(tmp_path, change, message):
    data, labels, masks = make_objects(3, seed=0)
    content = {"data": data, "labels": labels, "masks": masks, **change}
    write_h5(scanobjectnn_file(tmp_path, "OBJ_BG", "train"), **content)
    with pytest.raises(ValueError, match=message):
        ScanObjectNN(tmp_path, "train", variant="OBJ_BG", num_points=POINTS, return_mask=True)


@pytest.mark.parametrize("damage", ["truncated", "not hdf5"])
def test_a_damaged_file_is_an_error_naming_it(h5_root, damage):
    root, _ = h5_root
    path = scanobjectnn_file(root, "PB_T50_RS", "test")
    content = path.read_bytes()
    # an interrupted download, or the HTML page a file host serves instead of the file
    path.write_bytes(content[:2000] if damage == "truncated" else b"<html>quota exceeded</html>")
    with pytest.raises(DatasetFileError, match="cannot be read as an HDF5 file") as error:
        ScanObjectNN(root, "test")
    assert str(path) in str(error.value)


def test_more_points_than_stored_is_an_error(h5_root):
    root, _ = h5_root
    with pytest.raises(ValueError, match=f"holds {POINTS} points per object"):
        ScanObjectNN(root, "test", num_points=2048)


def test_missing_h5py_names_the_extra(h5_root, monkeypatch):
    root, _ = h5_root
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(ImportError, match=r"point-peft\[data\]"):
        ScanObjectNN(root, "test")
