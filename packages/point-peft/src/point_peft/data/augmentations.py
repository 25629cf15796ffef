"""Point-cloud augmentations of the standard fine-tuning protocols, as small composable callables.

Every augmentation takes one cloud (num_points, channels) or a batch (batch, num_points, channels)
with xyz in the first three channels, and returns a new tensor of the same shape (the input is never
modified in place, unlike the Point-MAE originals). A batch gets independent random parameters per
cloud, drawn in one vectorised call, so the same objects serve as a dataset ``transform`` (one cloud
per call, in the DataLoader workers) and on whole batches on the GPU inside a training loop (what
Point-MAE does).

Protocols:

- Point-MAE / Point-BERT ScanObjectNN and ModelNet fine-tuning: ``ScaleAndTranslate()``.
- Point-PEFT's "-aug" ScanObjectNN protocol: ``Compose([Scale(0.9, 1.1), RandomRotation("y")])``.
- PointNet++: ``RandomPointDropout()``, ``Jitter()``.

Randomness: each augmentation takes an optional ``generator``. With one, its draws are repeatable
(same seed, same outputs). Without one they come from torch's global random state, which is what
you want inside a ``DataLoader`` with several workers: a generator object is *copied* into each
worker process, so every worker would replay the same random stream, whereas torch reseeds the
global state differently in each worker.

Example:
    >>> import torch
    >>> augment = Compose(
    ...     [Scale(0.9, 1.1), RandomRotation("y", generator=torch.Generator().manual_seed(0))]
    ... )
    >>> batch = torch.rand(8, 1024, 3)
    >>> augment(batch).shape, augment(batch[0]).shape
    (torch.Size([8, 1024, 3]), torch.Size([1024, 3]))
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence

import torch

from point_peft.data._random import normal, permutations, uniform
from point_peft.data.geometry import axis_index, rotate_points, rotation_about_axis

Transform = Callable[[torch.Tensor], torch.Tensor]


class Compose:
    """Apply ``transforms`` one after another.

    Example:
        >>> shift = lambda cloud: cloud + 1
        >>> Compose([shift, shift])(torch.zeros(2, 3))
        tensor([[2., 2., 2.],
                [2., 2., 2.]])
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        for position, transform in enumerate(transforms):
            if not callable(transform):
                raise TypeError(
                    f"transforms[{position}] must be callable, got {type(transform).__name__}"
                )
        self.transforms = list(transforms)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            points = transform(points)
        return points

    def __repr__(self) -> str:
        inner = ", ".join(repr(transform) for transform in self.transforms)
        return f"Compose([{inner}])"


class _CloudAugmentation(abc.ABC):
    """Shape handling shared by the augmentations: ``_apply`` always sees a batch."""

    def __init__(self, generator: torch.Generator | None) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        self.generator = generator

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        if not isinstance(points, torch.Tensor):
            raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
        if points.dim() not in (2, 3) or points.shape[-1] < 3 or not points.is_floating_point():
            raise ValueError(
                "points must be a floating tensor (num_points, channels>=3) or (batch, num_points,"
                f" channels>=3), got {points.dtype} {tuple(points.shape)}"
            )
        batched = points.dim() == 3
        clouds = points if batched else points.unsqueeze(0)
        result = self._apply(clouds)
        return result if batched else result.squeeze(0)

    @abc.abstractmethod
    def _apply(self, clouds: torch.Tensor) -> torch.Tensor:
        """Augment a batch (batch, num_points, channels) into a new tensor of the same shape."""

    def _uniform(self, shape: tuple[int, ...], low: float, high: float, like: torch.Tensor):
        return uniform(
            shape, low, high, generator=self.generator, device=like.device, dtype=like.dtype
        )


def _with_xyz(clouds: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    return torch.cat([xyz, clouds[..., 3:]], dim=-1)


def _check_range(name: str, low: float, high: float, *, positive: bool = False) -> None:
    if not low <= high:
        raise ValueError(f"{name}: low must be <= high, got low={low}, high={high}")
    if positive and low <= 0:
        raise ValueError(f"{name}: scales must be > 0, got low={low}")


class Scale(_CloudAugmentation):
    """Multiply xyz by factors drawn from U(low, high), per axis (default) or one per cloud.

    Example:
        >>> scale = Scale(0.9, 1.1, generator=torch.Generator().manual_seed(0))
        >>> factors = scale(torch.ones(1, 3)) / torch.ones(1, 3)
        >>> bool(((factors >= 0.9) & (factors <= 1.1)).all())
        True
    """

    def __init__(
        self,
        low: float = 0.9,
        high: float = 1.1,
        *,
        per_axis: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        _check_range("Scale", low, high, positive=True)
        self.low, self.high, self.per_axis = low, high, per_axis

    def _apply(self, clouds: torch.Tensor) -> torch.Tensor:
        axes = 3 if self.per_axis else 1
        factors = self._uniform((clouds.shape[0], 1, axes), self.low, self.high, clouds)
        return _with_xyz(clouds, clouds[..., :3] * factors)

    def __repr__(self) -> str:
        return f"Scale(low={self.low}, high={self.high}, per_axis={self.per_axis})"


class ScaleAndTranslate(_CloudAugmentation):
    """Point-MAE's ``PointcloudScaleAndTranslate``: per-axis scale U(2/3, 3/2), shift U(-0.2, 0.2).

    Example:
        >>> augment = ScaleAndTranslate(generator=torch.Generator().manual_seed(0))
        >>> augment(torch.zeros(5, 3)).unique(dim=0).shape  # one shift for the whole cloud
        torch.Size([1, 3])
    """

    def __init__(
        self,
        scale_low: float = 2.0 / 3.0,
        scale_high: float = 3.0 / 2.0,
        translate_range: float = 0.2,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        _check_range("ScaleAndTranslate", scale_low, scale_high, positive=True)
        if translate_range < 0:
            raise ValueError(f"translate_range must be >= 0, got {translate_range}")
        self.scale_low, self.scale_high = scale_low, scale_high
        self.translate_range = translate_range

    def _apply(self, clouds: torch.Tensor) -> torch.Tensor:
        batch = clouds.shape[0]
        factors = self._uniform((batch, 1, 3), self.scale_low, self.scale_high, clouds)
        shift = self._uniform((batch, 1, 3), -self.translate_range, self.translate_range, clouds)
        return _with_xyz(clouds, clouds[..., :3] * factors + shift)

    def __repr__(self) -> str:
        return (
            f"ScaleAndTranslate(scale_low={self.scale_low:.4g}, scale_high={self.scale_high:.4g},"
            f" translate_range={self.translate_range})"
        )


class RandomRotation(_CloudAugmentation):
    """Rotate each cloud about ``axis`` by an angle drawn from U(-max_angle, max_angle).

    The default (about y, any angle) is the rotation of Point-PEFT's "-aug" ScanObjectNN protocol;
    y is "up" in ScanObjectNN and ModelNet. Normals (channels 3:6) are rotated with the points, and
    the coordinate along ``axis`` is left exactly as it was.

    Example:
        >>> rotate = RandomRotation("y", generator=torch.Generator().manual_seed(0))
        >>> cloud = torch.tensor([[1.0, 2.0, 0.0]])
        >>> rotated = rotate(cloud)
        >>> float(rotated[0, 1]), round(float(rotated.norm()), 5) == round(float(cloud.norm()), 5)
        (2.0, True)
    """

    def __init__(
        self,
        axis: str | int = "y",
        max_angle: float = math.pi,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        if max_angle < 0:
            raise ValueError(f"max_angle must be >= 0 (radians), got {max_angle}")
        self.axis = axis_index(axis)
        self.max_angle = max_angle

    def _apply(self, clouds: torch.Tensor) -> torch.Tensor:
        angles = self._uniform((clouds.shape[0],), -self.max_angle, self.max_angle, clouds)
        rotation = rotation_about_axis(angles, self.axis)
        # xyz, and normals when present, turn together; any further channels are left alone.
        turned = 6 if clouds.shape[-1] >= 6 else 3
        rotated = torch.cat(
            [
                rotate_points(clouds[..., start : start + 3], rotation)
                for start in range(0, turned, 3)
            ],
            dim=-1,
        )
        return torch.cat([rotated, clouds[..., turned:]], dim=-1)

    def __repr__(self) -> str:
        return f"RandomRotation(axis={'xyz'[self.axis]!r}, max_angle={self.max_angle:.4g})"


class Jitter(_CloudAugmentation):
    """Add N(0, sigma²) noise to every coordinate, clipped to [-clip, clip] (PointNet++ defaults).

    Example:
        >>> jitter = Jitter(sigma=0.01, clip=0.05, generator=torch.Generator().manual_seed(0))
        >>> bool((jitter(torch.zeros(1000, 3)).abs() <= 0.05).all())
        True
    """

    def __init__(
        self, sigma: float = 0.01, clip: float = 0.05, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(generator)
        if sigma < 0 or clip <= 0:
            raise ValueError(
                f"Jitter needs sigma >= 0 and clip > 0, got sigma={sigma}, clip={clip}"
            )
        self.sigma, self.clip = sigma, clip

    def _apply(self, clouds: torch.Tensor) -> torch.Tensor:
        noise = normal(
            (*clouds.shape[:2], 3),
            self.sigma,
            generator=self.generator,
            device=clouds.device,
            dtype=clouds.dtype,
        ).clamp(-self.clip, self.clip)
        return _with_xyz(clouds, clouds[..., :3] + noise)

    def __repr__(self) -> str:
        return f"Jitter(sigma={self.sigma}, clip={self.clip})"


class RandomPointDropout(_CloudAugmentation):
    """PointNet++'s input dropout: drop a random fraction of points, replacing them by the first point.

    Each cloud draws a ratio r ~ U(0, max_ratio) and drops every point independently with
    probability r. Dropped points are overwritten (all channels) with the cloud's first point, so the
    number of points, and with it the batch shape, stays the same.

    Example:
        >>> drop = RandomPointDropout(max_ratio=0.875, generator=torch.Generator().manual_seed(0))
        >>> cloud = torch.arange(30.0).reshape(10, 3)
        >>> dropped = drop(cloud)
        >>> bool(((dropped == cloud).all(1) | (dropped == cloud[0]).all(1)).all())
        True
    """

    def __init__(
        self, max_ratio: float = 0.875, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(generator)
        if not 0 <= max_ratio < 1:
            raise ValueError(f"max_ratio must be in [0, 1), got {max_ratio}")
        self.max_ratio = max_ratio

    def _apply(self, clouds: torch.Tensor) -> torch.Tensor:
        batch, num_points = clouds.shape[:2]
        ratios = self._uniform((batch, 1), 0.0, self.max_ratio, clouds)
        # `<=` as in PointNet++: a ratio of exactly 0 may still drop a point whose draw is 0.
        dropped = self._uniform((batch, num_points), 0.0, 1.0, clouds) <= ratios
        return torch.where(dropped.unsqueeze(-1), clouds[:, :1], clouds)

    def __repr__(self) -> str:
        return f"RandomPointDropout(max_ratio={self.max_ratio})"


class RandomSubset(_CloudAugmentation):
    """Keep ``num_points`` points chosen uniformly without replacement, in random order.

    With ``num_points=1024`` on clouds stored as the first 1200 FPS points, this is the training-time
    sampling of Point-MAE's ModelNet fine-tuning (it draws one subset for the whole batch; this draws
    one per cloud).

    Example:
        >>> RandomSubset(4, generator=torch.Generator().manual_seed(0))(torch.rand(2, 10, 3)).shape
        torch.Size([2, 4, 3])
    """

    def __init__(self, num_points: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        if not isinstance(num_points, int) or isinstance(num_points, bool) or num_points < 1:
            raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
        self.num_points = num_points

    def _apply(self, clouds: torch.Tensor) -> torch.Tensor:
        batch, available = clouds.shape[:2]
        if available < self.num_points:
            raise ValueError(
                f"RandomSubset({self.num_points}) got clouds of only {available} points"
            )
        order = permutations(batch, available, generator=self.generator, device=clouds.device)
        keep = order[:, : self.num_points].unsqueeze(-1).expand(-1, -1, clouds.shape[-1])
        return torch.gather(clouds, 1, keep)

    def __repr__(self) -> str:
        return f"RandomSubset({self.num_points})"


class ShufflePoints(_CloudAugmentation):
    """Randomly reorder the points of each cloud (Point-MAE shuffles training clouds this way).

    Order matters downstream: farthest point sampling starts at index 0, so a shuffle changes which
    patch centres the backbone sees.

    Example:
        >>> cloud = torch.arange(12.0).reshape(4, 3)
        >>> shuffled = ShufflePoints(generator=torch.Generator().manual_seed(0))(cloud)
        >>> torch.equal(shuffled[shuffled[:, 0].argsort()], cloud)
        True
    """

    def __init__(self, *, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)

    def _apply(self, clouds: torch.Tensor) -> torch.Tensor:
        order = permutations(*clouds.shape[:2], generator=self.generator, device=clouds.device)
        return torch.gather(clouds, 1, order.unsqueeze(-1).expand(-1, -1, clouds.shape[-1]))

    def __repr__(self) -> str:
        return "ShufflePoints()"
