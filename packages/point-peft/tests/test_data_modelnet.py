"""ModelNet readers on tiny files written here in the official layouts: ``modelnet40_normal_resampled``
text files and the Point-BERT/Point-MAE ``*_fps.dat`` pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from point_peft.data import (
    MODELNET40_CLASSES,
    ModelNet40,
    ModelNet40Preprocessed,
    write_modelnet_preprocessed,
)
from point_peft.ops import farthest_point_sample

CLASSES = ["airplane", "cup", "night_stand"]  # night_stand: a class name with an underscore
POINTS_PER_SHAPE = 64


def random_table(seed: int, num_points: int = POINTS_PER_SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(num_points, 3)) * rng.uniform(0.5, 3) + rng.normal(size=3)
    normals = rng.normal(size=(num_points, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return np.concatenate([xyz, normals], axis=1).astype(np.float32)


def write_text_layout(root: Path, variant: str = "modelnet40", shapes_per_class: int = 2) -> dict:
    """Official layout: names and split lists, and one ``x,y,z,nx,ny,nz`` file per shape."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{variant}_shape_names.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    tables, splits = {}, {"train": [], "test": []}
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(exist_ok=True)
        for number in range(1, shapes_per_class + 1):
            shape_id = f"{name}_{number:04d}"
            table = random_table(seed=100 * label + number)
            lines = "".join(",".join(f"{value:.6f}" for value in row) + "\n" for row in table)
            (root / name / f"{shape_id}.txt").write_text(lines)
            # What the reader will see: the values as written, 6 decimals.
            tables[shape_id] = np.loadtxt(root / name / f"{shape_id}.txt", delimiter=",")
            splits["train" if number % 2 else "test"].append(shape_id)
    for split, ids in splits.items():
        (root / f"{variant}_{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return {"tables": tables, "splits": splits}


def reference_item(table: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    """Point-MAE's order: ``pc_normalize`` over every stored point of the shape, then the rows a
    sampler keeps (normalising the kept rows alone would shift and rescale a lopsided sample)."""
    xyz = table[:, :3]
    centred = xyz - xyz.mean(axis=0)
    return (centred / np.sqrt((centred**2).sum(axis=1)).max())[rows]


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "modelnet40_normal_resampled"
    return root, write_text_layout(root)


def test_text_reader_items_labels_and_official_normalisation(layout):
    root, written = layout
    data = ModelNet40(root, "train", num_points=16, sampling="first")
    assert data.class_names == tuple(CLASSES)
    assert data.shape_ids == written["splits"]["train"]
    assert data.labels == [0, 1, 2]
    assert data.class_counts() == {"airplane": 1, "cup": 1, "night_stand": 1}
    for index, shape_id in enumerate(data.shape_ids):
        item = data[index]
        assert set(item) == {"points", "labels"}
        assert item["points"].dtype == torch.float32
        assert item["points"].shape == (16, 3)
        expected = reference_item(written["tables"][shape_id], slice(0, 16))
        assert np.allclose(item["points"].numpy(), expected, atol=1e-5)
    assert torch.equal(data[-1]["points"], data[2]["points"])
    with pytest.raises(IndexError, match="out of range"):
        data[3]


def test_text_reader_fps_and_normals(layout):
    root, written = layout
    data = ModelNet40(root, "test", num_points=10, use_normals=True)
    table = written["tables"][data.shape_ids[0]]
    order = farthest_point_sample(torch.from_numpy(table[None, :, :3]), 10)[0].numpy()
    points = data[0]["points"].numpy()
    assert points.shape == (10, 6)
    assert np.allclose(points[:, :3], reference_item(table, order), atol=1e-5)
    assert np.allclose(points[:, 3:], table[order, 3:], atol=1e-6)  # normals as written


def test_random_sampling_is_a_fixed_subset_per_item(layout):
    root, written = layout
    first = ModelNet40(root, "train", num_points=12, sampling="random", normalize=False)
    again = ModelNet40(root, "train", num_points=12, sampling="random", normalize=False)
    other = ModelNet40(root, "train", num_points=12, sampling="random", normalize=False, seed=1)
    assert torch.equal(first[0]["points"], again[0]["points"])
    assert not torch.equal(first[0]["points"], other[0]["points"])
    table = written["tables"][first.shape_ids[0]].astype(np.float32)
    rows = {tuple(row) for row in table[:, :3].tolist()}
    chosen = {tuple(row) for row in first[0]["points"].tolist()}
    assert len(chosen) == 12
    assert chosen <= rows


def test_modelnet10_variant_reads_its_own_lists(tmp_path):
    root = tmp_path / "modelnet40_normal_resampled"
    write_text_layout(root, "modelnet10", shapes_per_class=3)
    data = ModelNet40(root, "train", num_points=8, variant="modelnet10")
    assert len(data) == 6
    with pytest.raises(FileNotFoundError, match=r"modelnet40_shape_names\.txt"):
        ModelNet40(root, "train")


def test_batches_match_what_the_peft_core_trainer_expects(layout):
    root, _ = layout
    transform_calls = []

    def transform(points):
        transform_calls.append(points.shape)
        return points * 2

    data = ModelNet40(root, "train", num_points=16, transform=transform)
    batch = next(iter(DataLoader(data, batch_size=3)))
    assert batch["points"].shape == (3, 16, 3)
    assert batch["labels"].dtype == torch.int64
    assert batch["labels"].tolist() == [0, 1, 2]
    assert transform_calls == [(16, 3)] * 3
    assert float(batch["points"].norm(dim=-1).amax()) == pytest.approx(2.0)


def test_missing_files_name_the_file_and_show_the_layout(layout):
    root, _ = layout
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        ModelNet40(root / "nowhere")
    (root / "cup" / "cup_0001.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 3 shape files.*cup_0001\.txt") as error:
        ModelNet40(root, "train")
    assert "modelnet40_shape_names.txt" in str(error.value)  # the layout is shown
    (root / "modelnet40_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"modelnet40_test\.txt"):
        ModelNet40(root, "test")


def test_unknown_class_wrong_columns_and_bad_choices(layout):
    root, _ = layout
    (root / "modelnet40_train.txt").write_text("sofa_0001\n")
    with pytest.raises(ValueError, match=r"'sofa' is not in modelnet40_shape_names\.txt"):
        ModelNet40(root, "train")
    (root / "modelnet40_train.txt").write_text("airplane_0001\n")
    (root / "airplane" / "airplane_0001.txt").write_text("0.1,0.2\n0.3,0.4\n")
    with pytest.raises(ValueError, match="2 comma-separated columns"):
        ModelNet40(root, "train", num_points=1)[0]
    with pytest.raises(ValueError, match="64 points, fewer than num_points=65"):
        ModelNet40(root, "test", num_points=POINTS_PER_SHAPE + 1)[0]
    for kwargs, message in [
        ({"split": "val"}, r"split must be one of \('train', 'test'\)"),
        ({"variant": "modelnet20"}, r"variant must be one of \('modelnet40', 'modelnet10'\)"),
        ({"sampling": "grid"}, "sampling must be one of"),
        ({"num_points": 0}, "num_points must be a positive integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            ModelNet40(root, **kwargs)


# -- the preprocessed pickles ------------------------------------------------------------------------


def write_official_pickle(path: Path, clouds: list[np.ndarray], labels: list[int]) -> None:
    """As Point-MAE writes them: [list of float32 (n, 6), list of int32 arrays of shape (1,)]."""
    with path.open("wb") as handle:
        pickle.dump([clouds, [np.array([label]).astype(np.int32) for label in labels]], handle)


@pytest.fixture
def pickle_root(tmp_path):
    root = tmp_path / "modelnet40_normal_resampled"
    root.mkdir()
    clouds = [random_table(seed, 32) for seed in range(5)]
    labels = [0, 39, 7, 7, 12]
    write_official_pickle(root / "modelnet40_test_32pts_fps.dat", clouds, labels)
    return root, clouds, labels


def test_pickle_reader_takes_the_first_points_and_normalises(pickle_root):
    root, clouds, labels = pickle_root
    data = ModelNet40Preprocessed(root, "test", num_points=20, file_points=32)
    assert data.class_names == MODELNET40_CLASSES  # no names file: the official list
    assert data.labels == labels
    assert data.class_names[39] == "xbox"
    for index, cloud in enumerate(clouds):
        item = data[index]
        assert item["points"].shape == (20, 3)
        assert item["labels"] == labels[index]
        assert np.allclose(item["points"].numpy(), reference_item(cloud, slice(0, 20)), atol=1e-6)
    raw = ModelNet40Preprocessed(
        root, "test", num_points=32, file_points=32, use_normals=True, normalize=False
    )
    assert np.array_equal(raw[1]["points"].numpy(), clouds[1])


def test_pickle_reader_uses_the_names_file_when_present(pickle_root):
    root, _, _ = pickle_root
    names = [f"class_{i}" for i in range(40)]
    (root / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    data = ModelNet40Preprocessed(root, "test", num_points=8, file_points=32)
    assert data.class_names == tuple(names)


def test_pickle_reader_refuses_code_and_wrong_structures(pickle_root, tmp_path):
    root, clouds, labels = pickle_root
    path = root / "modelnet40_train_32pts_fps.dat"

    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    path.write_bytes(pickle.dumps([[Exploit()], [np.array([0], dtype=np.int32)]]))
    with pytest.raises(ValueError, match=r"refusing to load builtins\.print"):
        ModelNet40Preprocessed(root, "train", file_points=32)
    cases = [
        ({"points": clouds}, "should hold \\[list_of_points, list_of_labels\\]"),
        ([clouds, labels[:2]], "5 point arrays but 2 labels"),
        ([[c[:, :2] for c in clouds], labels], r"shape 0 has points of shape \(32, 2\)"),
        ([clouds, [np.array([1.5])] * 5], "label 0 should be one integer"),
        ([clouds, [np.array([40], dtype=np.int32)] * 5], r"outside \[0, 40\)"),
    ]
    for content, message in cases:
        path.write_bytes(pickle.dumps(content))
        with pytest.raises(ValueError, match=message):
            ModelNet40Preprocessed(root, "train", num_points=8, file_points=32)
    with pytest.raises(FileNotFoundError, match=r"modelnet40_train_8192pts_fps\.dat"):
        ModelNet40Preprocessed(root, "train")


def test_written_pickles_have_the_official_structure_and_fps_prefix_property(layout):
    root, written = layout
    path = write_modelnet_preprocessed(root, "train", file_points=48, batch_size=2)
    assert path.name == "modelnet40_train_48pts_fps.dat"
    with path.open("rb") as handle:
        clouds, labels = pickle.load(handle)
    assert [label.dtype for label in labels] == [np.dtype(np.int32)] * 3
    assert [label.shape for label in labels] == [(1,)] * 3
    assert [int(label[0]) for label in labels] == [0, 1, 2]
    for cloud, shape_id in zip(clouds, written["splits"]["train"], strict=True):
        table = written["tables"][shape_id].astype(np.float32)
        order = farthest_point_sample(torch.from_numpy(table[None, :, :3]), 48)[0].numpy()
        assert cloud.dtype == np.float32
        assert np.array_equal(cloud, table[order])
    # FPS chooses the same points in the same order whatever count it is asked for, so the first
    # 16 stored points are what the text reader's FPS gives for 16 points. (Normalised, the two
    # differ slightly: each reader scales by the whole cloud it holds, 48 stored points or the
    # whole text file, as Point-MAE scales by its 8,192 stored points.)
    stored = ModelNet40Preprocessed(root, "train", num_points=16, file_points=48, normalize=False)
    direct = ModelNet40(root, "train", num_points=16, sampling="fps", normalize=False)
    for index in range(3):
        assert torch.allclose(stored[index]["points"], direct[index]["points"], atol=1e-6)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_from_numpy_1_and_2_and_every_protocol_load(tmp_path, protocol):
    cloud = random_table(0, 16)
    content = pickle.dumps([[cloud], [np.array([3], dtype=np.int32)]], protocol=protocol)
    if protocol <= 3:
        # numpy 1.x names numpy.core where numpy 2 names numpy._core; protocols <= 3 spell module
        # names as newline-terminated text, so the older spelling can be written back in place.
        content = content.replace(b"numpy._core.", b"numpy.core.")
        assert b"numpy.core.multiarray" in content
    (tmp_path / "modelnet40_train_16pts_fps.dat").write_bytes(content)
    data = ModelNet40Preprocessed(tmp_path, "train", num_points=16, file_points=16, normalize=False)
    assert np.array_equal(data[0]["points"].numpy(), cloud[:, :3])
    assert data.labels == [3]
