"""Bring captured activations and attention masks to the [B, T, F] / [B, T] layout the math uses.

Shared by the density loss and the density metric so that both read a tensor the same way.
"""

from __future__ import annotations

import torch


def as_batch_tokens_features(
    activation: torch.Tensor, argument: str, batch_size: int | None = None
) -> torch.Tensor:
    """View ``activation`` as [B, T, F] without copying.

    [B, *, F] with several middle dimensions (e.g. [B, H, W, F] feature maps with channels last)
    flattens them into T. A 2-D tensor is read with ``batch_size`` when one is known: [B, F] is one
    token per sample, [B·T, F] holds the tokens of all samples one after another (OPT flattens its
    hidden states like this before the MLP). Without ``batch_size`` each row is its own sample,
    which gives the same mean as long as every sample has the same number of tokens.

    Example:
        >>> as_batch_tokens_features(torch.zeros(2, 3, 4, 5), "activations").shape
        torch.Size([2, 12, 5])
        >>> as_batch_tokens_features(torch.zeros(6, 5), "activations", batch_size=2).shape
        torch.Size([2, 3, 5])
    """
    if not isinstance(activation, torch.Tensor):
        raise TypeError(f"{argument} must be a tensor, got {type(activation).__name__}")
    if activation.ndim < 2:
        raise ValueError(
            f"{argument} must have shape [B, F], [B, T, F] or [B, *, F]; got {tuple(activation.shape)}"
        )
    if activation.ndim > 3:
        return activation.flatten(1, -2)
    if activation.ndim == 3:
        return activation
    rows = activation.shape[0]
    if batch_size is None or rows == batch_size:
        return activation.unsqueeze(1)
    if batch_size > 0 and rows % batch_size == 0:
        return activation.view(batch_size, rows // batch_size, activation.shape[1])
    raise ValueError(
        f"{argument} has shape {tuple(activation.shape)}: {rows} rows are neither the batch size "
        f"{batch_size} nor a multiple of it (flattened [B·T, F] tokens)"
    )


def align_mask(
    mask: torch.Tensor,
    activation: torch.Tensor,
    argument: str,
    activation_argument: str,
    virtual_tokens: int = 0,
) -> torch.Tensor:
    """Return ``mask`` as float [B, T] matching ``activation`` [B, T, F].

    The mask must cover the activation's T positions exactly, or all but ``virtual_tokens``
    leading ones: prompt tuning prepends virtual tokens to the input embeddings, so the
    activations are longer than the attention mask the batch carries by that many; those
    leading positions are real tokens (Hugging Face peft prepends ones to the mask it passes on
    for the same reason) and count as such. Any other length is an error: a mask of another
    stack (the encoder's mask on decoder tokens, a text mask on image patches) must not be
    padded into place.

    Example:
        >>> align_mask(torch.tensor([[1, 0]]), torch.zeros(1, 4, 8), "mask", "activation", 2)
        tensor([[1., 1., 1., 0.]])
    """
    if mask.ndim != 2:
        raise ValueError(f"{argument} must have shape [B, T]; got {tuple(mask.shape)}")
    batch, tokens = activation.shape[0], activation.shape[1]
    if mask.shape[0] != batch:
        raise ValueError(
            f"{argument} has batch size {mask.shape[0]} but {activation_argument} has {batch} "
            f"(shapes {tuple(mask.shape)} and {tuple(activation.shape)})"
        )
    virtual = tokens - mask.shape[1]
    if virtual not in (0, virtual_tokens):
        explained = (
            f" ({virtual_tokens} virtual prompt tokens explain only a difference of that many)"
            if virtual_tokens
            else ""
        )
        raise ValueError(
            f"{argument} covers {mask.shape[1]} tokens but {activation_argument} has {tokens} "
            f"(shapes {tuple(mask.shape)} and {tuple(activation.shape)}){explained}; is it the "
            "mask of another input (e.g. the encoder's mask for decoder tokens)?"
        )
    mask = mask.to(device=activation.device, dtype=torch.float32)
    if virtual:
        mask = torch.cat([mask.new_ones(batch, virtual), mask], dim=1)
    return mask
