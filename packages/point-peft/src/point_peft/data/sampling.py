"""Point-count normalisation: bring a cloud to exactly ``num_points`` points.

Three methods, named by ``method=``:

- ``"fps"``: farthest point sampling (:func:`point_peft.ops.farthest_point_sample`, starting at
  index 0, deterministic): even coverage, what Point-MAE's ModelNet preprocessing does (it starts at
  a random index instead).
- ``"first"``: the first ``num_points`` rows. For a file stored in FPS order (the ``*_fps.dat``
  pickles) the first ``n`` rows *are* an FPS sample of ``n`` points, because farthest point sampling
  chooses the same points in the same order whatever ``n`` it is asked for.
- ``"random"``: a uniform random subset without replacement (``generator`` makes it repeatable).
"""

from __future__ import annotations

import torch

from point_peft.data._random import permutations, random_indices
from point_peft.ops import farthest_point_sample

SAMPLING_METHODS: tuple[str, ...] = ("fps", "first", "random")


def resample_points(
    points: torch.Tensor,
    num_points: int,
    method: str = "fps",
    *,
    generator: torch.Generator | None = None,
    allow_duplicates: bool = False,
) -> torch.Tensor:
    """Return a cloud (num_points, channels), or a batch (batch, num_points, channels), of ``points``.

    Args:
        points: (num_points_in, channels) or (batch, num_points_in, channels), xyz first.
        num_points: how many points to keep.
        method: ``"fps"``, ``"first"`` or ``"random"`` (see the module docstring).
        generator: random source for ``"random"`` and for duplicates.
        allow_duplicates: when the cloud has fewer than ``num_points`` points, keep all of them and
            repeat randomly chosen ones (otherwise that is an error).

    A cloud that already has ``num_points`` points is returned unchanged.

    Example:
        >>> line = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [10, 0, 0]])
        >>> resample_points(line, 2, "fps")
        tensor([[ 0.,  0.,  0.],
                [10.,  0.,  0.]])
        >>> resample_points(line, 2, "first")[:, 0]
        tensor([0., 1.])
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"method must be one of {SAMPLING_METHODS}, got {method!r}")
    if not isinstance(num_points, int) or isinstance(num_points, bool) or num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    if points.dim() not in (2, 3) or points.shape[-1] < 3:
        raise ValueError(
            "points must have shape (num_points, channels>=3) or (batch, num_points, channels>=3),"
            f" got {tuple(points.shape)}"
        )
    batched = points.dim() == 3
    clouds = points if batched else points.unsqueeze(0)
    available = clouds.shape[1]
    if available == num_points:
        return points
    if available > num_points:
        result = _subsample(clouds, num_points, method, generator)
    elif allow_duplicates and available > 0:
        extra = random_indices(
            available,
            (clouds.shape[0], num_points - available),
            generator=generator,
            device=clouds.device,
        )
        result = torch.cat([clouds, _gather_rows(clouds, extra)], dim=1)
    else:
        raise ValueError(
            f"cannot take num_points={num_points} from a cloud of {available} points"
            " (pass allow_duplicates=True to repeat points)"
        )
    return result if batched else result.squeeze(0)


def _subsample(
    clouds: torch.Tensor, num_points: int, method: str, generator: torch.Generator | None
) -> torch.Tensor:
    if method == "first":
        return clouds[:, :num_points]
    if method == "fps":
        indices = farthest_point_sample(clouds[..., :3].contiguous(), num_points)
    else:
        order = permutations(*clouds.shape[:2], generator=generator, device=clouds.device)
        indices = order[:, :num_points]
    return _gather_rows(clouds, indices)


def _gather_rows(clouds: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return torch.gather(clouds, 1, indices.unsqueeze(-1).expand(-1, -1, clouds.shape[-1]))
