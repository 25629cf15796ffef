"""The memory bank of the point-prior prompt: one L2-normalised feature per training cloud.

Built once, before fine-tuning, by the frozen pre-trained encoder over the downstream training
split (no masking, no augmentation), and never updated. The reference ships its banks as files and
never released the code that built them; :func:`build_memory_bank` is that code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peft_core import atomic_write
from point_peft.method.query import evaluation_mode, pooled_token_features
from point_peft.models import PointTransformerEncoder

_FEATURES_KEY = "features"


class MemoryBank(nn.Module):
    """A (dim, size) buffer ``features`` whose columns are unit vectors, and how they were computed.

    Args:
        features: (dim, size) features, one column per training cloud. Columns are L2-normalised
            here (pass ``normalize=False`` only for values that already are, or for a placeholder).
        num_groups: patches per cloud of the encoder pass that computed them.
        group_size: points per patch of that pass.

    Example:
        >>> bank = MemoryBank(torch.tensor([[3.0, 0.0], [4.0, 2.0]]), num_groups=64, group_size=32)
        >>> bank.features
        tensor([[0.6000, 0.0000],
                [0.8000, 1.0000]])
        >>> bank.dim, bank.size
        (2, 2)
    """

    def __init__(
        self, features: torch.Tensor, *, num_groups: int, group_size: int, normalize: bool = True
    ) -> None:
        super().__init__()
        if not isinstance(features, torch.Tensor) or features.dim() != 2:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else None
            raise ValueError(
                f"MemoryBank: features must be a (dim, size) tensor, one column per cloud; got "
                f"{shape if shape is not None else type(features).__name__}"
            )
        if not features.is_floating_point():
            raise TypeError(f"MemoryBank: features must be floating-point, got {features.dtype}")
        if features.shape[0] < 1 or features.shape[1] < 1:
            raise ValueError(f"MemoryBank: features is empty, shape {tuple(features.shape)}")
        if features.device.type != "meta" and not bool(torch.isfinite(features).all()):
            raise ValueError("MemoryBank: features contain NaN or infinite values")
        for name, value in (("num_groups", num_groups), ("group_size", group_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MemoryBank: {name} must be a positive integer, got {value!r}")
        if normalize:
            norms = features.norm(dim=0, keepdim=True)
            if features.device.type != "meta" and bool((norms == 0).any()):
                raise ValueError("MemoryBank: a column of features is all zeros")
            features = features / norms
        # Row-major whatever the input's layout: a bank built from a transposed view and the same
        # values loaded from a file must take the same matmul kernels (bit-identical logits).
        self.register_buffer(
            "features", features.detach().clone(memory_format=torch.contiguous_format)
        )
        self.num_groups = num_groups
        self.group_size = group_size

    @classmethod
    def placeholder(
        cls, dim: int, size: int, *, num_groups: int, group_size: int, device: Any = None
    ) -> MemoryBank:
        """An all-zero bank of the given shape, for saved values to be loaded into."""
        features = torch.zeros(dim, size, device=device)
        return cls(features, num_groups=num_groups, group_size=group_size, normalize=False)

    @property
    def dim(self) -> int:
        return self.features.shape[0]

    @property
    def size(self) -> int:
        return self.features.shape[1]

    def check_compatible(self, backbone: PointTransformerEncoder) -> None:
        """Refuse a bank whose features cannot come from ``backbone`` (another feature size)."""
        width = backbone.config.embed_dim
        if self.dim != width:
            raise ValueError(
                f"memory bank features have size {self.dim} but the backbone's tokens have "
                f"embed_dim={width}: build the bank with this backbone "
                "(point_peft.build_memory_bank(backbone, train_loader))"
            )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bank to a safetensors file, atomically (grouping stored in its metadata)."""
        from safetensors.torch import save_file

        tensors = {_FEATURES_KEY: self.features.detach().to("cpu").contiguous()}
        metadata = {"num_groups": str(self.num_groups), "group_size": str(self.group_size)}
        return atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: Any = None) -> MemoryBank:
        """Read a bank written by :meth:`save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no memory bank file at {path}")
        try:
            with safe_open(str(path), framework="pt") as file:
                metadata = file.metadata() or {}
                features = file.get_tensor(_FEATURES_KEY)
        except Exception as error:  # safetensors raises its own error types from Rust
            raise ValueError(
                f"{path} is not a memory bank file ({type(error).__name__}: {error})"
            ) from None
        try:
            num_groups, group_size = int(metadata["num_groups"]), int(metadata["group_size"])
        except (KeyError, ValueError):
            raise ValueError(
                f"{path} lacks the num_groups / group_size metadata of a bank"
            ) from None
        bank = cls(features, num_groups=num_groups, group_size=group_size, normalize=False)
        return bank.to(device) if device is not None else bank

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, size={self.size}, num_groups={self.num_groups}, "
            f"group_size={self.group_size}"
        )


def _points_of(batch: Any) -> torch.Tensor:
    if isinstance(batch, dict):
        if "points" not in batch:
            raise KeyError(f"the loader's batches have no 'points' (keys: {sorted(batch)})")
        return batch["points"]
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


@torch.no_grad()
def build_memory_bank(
    backbone: PointTransformerEncoder,
    loader: Iterable[Any],
    *,
    num_groups: int = 64,
    group_size: int = 32,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> MemoryBank:
    """Run the frozen ``backbone`` over the training split and keep one unit feature per cloud.

    Each feature is the max over the final-LayerNorm patch tokens, without masking and without
    the cls token, with ``num_groups`` × ``group_size`` grouping (the reference: 64 × 32 whatever
    the fine-tuning grouping), every module in eval mode; columns are L2-normalised.

    The loader must give the **training split without augmentation** (no random scaling, rotation
    or point dropout; keep the order fixed for reproducible banks): the bank is the prior the
    queries are compared with, and a random transform would make it a random draw. Its batches are
    dicts with ``"points"`` (the datasets of :mod:`point_peft.data`), ``(points, ...)`` tuples or
    tensors of shape (batch, N, 3).

    Args:
        backbone: the pre-trained classifier (or encoder) Point-PEFT will fine-tune, unchanged.
        loader: the batches (e.g. a ``DataLoader(train_set, batch_size=32, shuffle=False)``).
        num_groups, group_size: the grouping of this pass; queries use the same.
        progress: show a progress bar.
        device: where to compute (default: the backbone's device); the bank lives there too.

    Example:
        >>> from point_peft.models import PointMAE, PointTransformerConfig
        >>> model = PointMAE(PointTransformerConfig.small(num_classes=4))
        >>> clouds = torch.rand(6, 256, 3, generator=torch.Generator().manual_seed(0))
        >>> bank = build_memory_bank(
        ...     model, clouds.split(4), num_groups=16, group_size=8, progress=False
        ... )
        >>> bank.dim, bank.size
        (96, 6)
        >>> torch.allclose(bank.features.norm(dim=0), torch.ones(6))
        True
    """
    from tqdm.auto import tqdm

    if not isinstance(backbone, PointTransformerEncoder):
        raise TypeError(
            f"backbone must be a PointMAE / PointBERT model, got {type(backbone).__name__}"
        )
    if device is None:
        device = next(backbone.parameters()).device
    columns = []
    with evaluation_mode(backbone):
        for batch in tqdm(loader, desc="memory bank", unit="batch", disable=not progress):
            points = _points_of(batch)
            if not isinstance(points, torch.Tensor) or points.dim() != 3:
                raise ValueError(
                    "the loader must yield point clouds of shape (batch, N, 3); got "
                    f"{getattr(points, 'shape', type(points).__name__)}"
                )
            points = points[..., :3].to(device=device, dtype=next(backbone.parameters()).dtype)
            columns.append(pooled_token_features(backbone, points, num_groups, group_size))
    if not columns:
        raise ValueError("build_memory_bank: the loader yielded no batch")
    features = torch.cat(columns).t()
    return MemoryBank(features, num_groups=num_groups, group_size=group_size)
