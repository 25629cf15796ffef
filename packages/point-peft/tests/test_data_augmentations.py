"""Augmentations: each does exactly its documented transform (recovered from the output), stays in
its documented ranges, works on one cloud and on batches, never writes into its input, and repeats
itself given the same seed."""

from __future__ import annotations

import math

import pytest
import torch

from point_peft.data import (
    Compose,
    Jitter,
    RandomPointDropout,
    RandomRotation,
    RandomSubset,
    Scale,
    ScaleAndTranslate,
    ShufflePoints,
)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-6) -> None:
    # torch.allclose, not torch.testing: that import pulls in the compiler stack (~4 s).
    assert torch.allclose(actual, expected, rtol=tolerance, atol=tolerance), (
        f"largest difference {(actual - expected).abs().max()}"
    )


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clouds(batch: int = 6, num_points: int = 50, channels: int = 3, seed: int = 1) -> torch.Tensor:
    return (
        torch.rand(batch, num_points, channels, generator=seeded(seed), dtype=torch.float64) - 0.5
    )


FACTORIES = {
    "scale": lambda g: Scale(generator=g),
    "scale_and_translate": lambda g: ScaleAndTranslate(generator=g),
    "rotation": lambda g: RandomRotation(generator=g),
    "jitter": lambda g: Jitter(generator=g),
    "dropout": lambda g: RandomPointDropout(generator=g),
    "shuffle": lambda g: ShufflePoints(generator=g),
}


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("channels", [3, 6])
def test_shapes_dtype_and_input_left_untouched(name, channels):
    augment = FACTORIES[name](seeded())
    batch = clouds(channels=channels)
    before = batch.clone()
    out = augment(batch)
    assert out.shape == batch.shape
    assert out.dtype == batch.dtype
    assert torch.equal(batch, before)
    single = augment(batch[0])
    assert single.shape == batch[0].shape
    assert not torch.equal(out, batch)  # it did something


@pytest.mark.parametrize("name", FACTORIES)
def test_same_seed_same_output_and_the_stream_advances(name):
    batch = clouds()
    first = FACTORIES[name](seeded(3))
    second = FACTORIES[name](seeded(3))
    a1, b1 = first(batch), second(batch)
    assert torch.equal(a1, b1)
    assert not torch.equal(first(batch), a1)  # the next call draws new parameters
    assert not torch.equal(FACTORIES[name](seeded(4))(batch), a1)


def test_rotation_is_the_rotation_about_y_by_one_angle_per_cloud():
    batch = clouds(batch=8, channels=6)
    out = RandomRotation("y", generator=seeded())(batch)
    # The up coordinate is untouched, lengths are kept, for points and normals alike.
    for start in (0, 3):
        assert torch.equal(out[..., start + 1], batch[..., start + 1])
        assert_close(
            out[..., start : start + 3].norm(dim=-1), batch[..., start : start + 3].norm(dim=-1)
        )
    angles = []
    for b in range(8):
        # Recover the angle from the first point, then check every point turned by that angle.
        x, z = batch[b, 0, 0], batch[b, 0, 2]
        rx, rz = out[b, 0, 0], out[b, 0, 2]
        angle = math.atan2(float(z * rx - x * rz), float(z * rz + x * rx))
        cos, sin = math.cos(angle), math.sin(angle)
        expected_x = cos * batch[b, :, 0] + sin * batch[b, :, 2]  # right-handed about y: z → x
        expected_z = -sin * batch[b, :, 0] + cos * batch[b, :, 2]
        assert_close(out[b, :, 0], expected_x)
        assert_close(out[b, :, 2], expected_z)
        angles.append(angle)
    assert len({round(angle, 6) for angle in angles}) == 8


@pytest.mark.parametrize(("axis", "index"), [("x", 0), ("z", 2), (1, 1)])
def test_rotation_axis_argument_and_angle_bound(axis, index):
    batch = clouds(batch=200)
    out = RandomRotation(axis, max_angle=0.1, generator=seeded())(batch)
    assert torch.equal(out[..., index], batch[..., index])
    cosines = torch.nn.functional.cosine_similarity(out, batch, dim=-1)
    # Rotating by at most 0.1 rad moves no vector by more than 0.1 rad.
    assert bool((cosines >= math.cos(0.1) - 1e-9).all())


def test_scale_factors_lie_in_bounds_and_cover_them():
    ones = torch.ones(2000, 1, 3, dtype=torch.float64)
    factors = Scale(0.9, 1.1, generator=seeded())(ones)[:, 0]
    assert bool(((factors >= 0.9) & (factors <= 1.1)).all())
    assert float(factors.min()) < 0.91
    assert float(factors.max()) > 1.09
    assert not torch.equal(factors[:, 0], factors[:, 1])  # per axis by default
    isotropic = Scale(0.9, 1.1, per_axis=False, generator=seeded())(ones)[:, 0]
    assert torch.equal(isotropic[:, 0], isotropic[:, 1])


def test_scale_keeps_normals():
    batch = clouds(channels=6)
    assert torch.equal(Scale(generator=seeded())(batch)[..., 3:], batch[..., 3:])


def test_scale_and_translate_is_per_axis_affine_with_point_mae_ranges():
    points = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, -1.0, 0.5]], dtype=torch.float64)
    batch = points.expand(3000, -1, -1)
    out = ScaleAndTranslate(generator=seeded())(batch)
    shift, scale = out[:, 0], out[:, 1] - out[:, 0]
    assert bool(((scale >= 2 / 3) & (scale <= 3 / 2)).all())
    assert bool((shift.abs() <= 0.2).all())
    assert float(scale.min()) < 0.68
    assert float(scale.max()) > 1.48
    assert float(shift.min()) < -0.19
    assert float(shift.max()) > 0.19
    assert_close(out[:, 2], points[2] * scale + shift)  # the same affine map


def test_jitter_is_clipped_gaussian_noise_on_xyz_only():
    batch = torch.zeros(50, 400, 6)
    noise = Jitter(sigma=0.01, clip=0.05, generator=seeded())(batch)
    assert bool((noise[..., :3].abs() <= 0.05).all())
    assert torch.equal(noise[..., 3:], batch[..., 3:])
    assert abs(float(noise[..., :3].std()) - 0.01) < 0.0005
    assert abs(float(noise[..., :3].mean())) < 0.0005
    clipped = Jitter(sigma=1.0, clip=0.05, generator=seeded())(batch)
    assert float(clipped.abs().max()) == pytest.approx(0.05)


def test_dropout_replaces_points_by_the_first_with_ratios_up_to_the_maximum():
    batch = clouds(batch=2000, num_points=400)
    out = RandomPointDropout(max_ratio=0.875, generator=seeded())(batch)
    kept = (out == batch).all(-1)
    replaced = (out == batch[:, :1]).all(-1)
    assert bool((kept | replaced).all())
    fractions = (~kept).double().mean(dim=1)
    # Per cloud the ratio is U(0, 0.875): fractions spread over that range, averaging 0.4375.
    assert float(fractions.mean()) == pytest.approx(0.4375, abs=0.02)
    assert float(fractions.max()) <= 0.875 + 3 * math.sqrt(0.875 * 0.125 / 400)
    assert float(fractions.min()) < 0.02
    assert float(fractions.max()) > 0.8
    none = RandomPointDropout(max_ratio=0.0, generator=seeded())(batch)
    assert torch.equal(none, batch)


def test_random_subset_takes_distinct_rows_of_each_cloud():
    batch = torch.arange(4 * 20 * 3, dtype=torch.float32).reshape(4, 20, 3)
    out = RandomSubset(7, generator=seeded())(batch)
    assert out.shape == (4, 7, 3)
    for b in range(4):
        rows = {tuple(row.tolist()) for row in out[b]}
        assert len(rows) == 7
        assert rows <= {tuple(row.tolist()) for row in batch[b]}
    with pytest.raises(ValueError, match="only 20 points"):
        RandomSubset(21)(batch)


def test_shuffle_is_a_permutation_per_cloud():
    batch = clouds(batch=5)
    out = ShufflePoints(generator=seeded())(batch)
    for b in range(5):
        assert torch.equal(out[b][out[b][:, 0].argsort()], batch[b][batch[b][:, 0].argsort()])
    assert not torch.equal(out, batch)


def test_compose_applies_in_order():
    log = []

    def first(points):
        log.append("first")
        return points * 2

    def second(points):
        log.append("second")
        return points + 1

    result = Compose([first, second])(torch.ones(2, 3))
    assert log == ["first", "second"]
    assert torch.equal(result, torch.full((2, 3), 3.0))
    assert "RandomRotation(axis='y'" in repr(Compose([RandomRotation()]))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Scale(1.1, 0.9), "low must be <= high"),
        (lambda: Scale(0.0, 1.0), "scales must be > 0"),
        (lambda: ScaleAndTranslate(translate_range=-1), "translate_range"),
        (lambda: RandomRotation("w"), "axis must be one of"),
        (lambda: RandomRotation(max_angle=-1), "max_angle"),
        (lambda: Jitter(clip=0), "clip > 0"),
        (lambda: RandomPointDropout(1.0), r"max_ratio must be in \[0, 1\)"),
        (lambda: RandomSubset(0), "num_points"),
        (lambda: Scale(generator=0), "torch.Generator"),
        (lambda: Compose([1]), r"transforms\[0\] must be callable"),
    ],
)
def test_bad_arguments_are_named(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


@pytest.mark.parametrize(
    "points", [torch.zeros(10, 2), torch.zeros(2, 3, 10, 3), torch.zeros(10, 3, dtype=torch.long)]
)
def test_bad_clouds_are_refused(points):
    with pytest.raises(ValueError, match="points must be a floating tensor"):
        Jitter()(points)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_with_cuda_points_matches_cpu():
    batch = clouds()
    augment = Compose([ScaleAndTranslate(generator=seeded()), RandomRotation(generator=seeded(1))])
    on_cpu = augment(batch)
    augment = Compose([ScaleAndTranslate(generator=seeded()), RandomRotation(generator=seeded(1))])
    on_gpu = augment(batch.cuda())
    assert on_gpu.device.type == "cuda"
    assert_close(on_gpu.cpu(), on_cpu)
