"""The mini-PointNet that turns every local patch of points into one token."""

from __future__ import annotations

import torch
from torch import nn


class PatchEncoder(nn.Module):
    """Mini-PointNet shared by Point-MAE and Point-BERT: (batch, G, k, 3) patches → (batch, G, out_dim).

    ``first_conv``: Conv1d(3, h1) → BN → ReLU → Conv1d(h1, h2) per point; max over the patch's points
    gives a patch feature, concatenated in front of every point's feature ([global ; per-point],
    2·h2 channels); ``second_conv``: Conv1d(2·h2, 2·h2) → BN → ReLU → Conv1d(2·h2, out_dim); max over
    the points again gives the token. The official models use ``(h1, h2) = (128, 256)`` and
    ``out_dim`` 384 (Point-MAE) or 256 (Point-BERT, whose ``reduce_dim`` Linear(256, 384) then lives
    on the model itself, where its checkpoint keys put it).

    The BatchNorms normalise over all points of all patches of the batch. The output does not
    depend on the order of the points inside a patch.

    Example:
        >>> encoder = PatchEncoder(out_dim=384)
        >>> encoder(torch.randn(2, 64, 32, 3)).shape
        torch.Size([2, 64, 384])
        >>> [name for name, _ in encoder.named_parameters()][:3]
        ['first_conv.0.weight', 'first_conv.0.bias', 'first_conv.1.weight']
    """

    def __init__(self, out_dim: int, hidden_dims: tuple[int, int] = (128, 256)) -> None:
        super().__init__()
        first, second = hidden_dims
        self.out_dim = out_dim
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, first, 1),
            nn.BatchNorm1d(first),
            nn.ReLU(inplace=True),
            nn.Conv1d(first, second, 1),
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(2 * second, 2 * second, 1),
            nn.BatchNorm1d(2 * second),
            nn.ReLU(inplace=True),
            nn.Conv1d(2 * second, out_dim, 1),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if patches.dim() != 4 or patches.shape[-1] != 3:
            raise ValueError(
                f"patches must have shape (batch, num_groups, group_size, 3), "
                f"got {tuple(patches.shape)}"
            )
        batch, num_groups, group_size, _ = patches.shape
        points = patches.reshape(batch * num_groups, group_size, 3).transpose(1, 2)
        features = self.first_conv(points)  # (B·G, h2, k)
        patch_feature = features.amax(dim=2, keepdim=True)
        features = torch.cat([patch_feature.expand_as(features), features], dim=1)
        tokens = self.second_conv(features).amax(dim=2)  # (B·G, out_dim)
        return tokens.reshape(batch, num_groups, self.out_dim)
