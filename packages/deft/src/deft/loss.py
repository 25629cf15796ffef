"""The DEFT density loss: a smooth count of the non-zero MLP activations (spec §2).

    s(a)      = a² / (a² + ε)                     ε = 1e-7
    n_l[b]    = mean over (t, f) of s(A_l[b, t, f])
    L_density = mean over batch b and layers l of n_l[b]

s(a) is 0 at a = 0 and close to 1 once |a| ≫ √ε ≈ 3e-4, so n_l[b] is a differentiable stand-in
for the fraction of non-zero activations of layer l.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from deft._shapes import align_mask, as_batch_tokens_features

DEFAULT_EPS = 1e-7


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # fp16/bf16 are promoted to fp32 (a² underflows in fp16 for |a| < ~2.4e-4, exactly the values
    # the loss is about); fp64 stays fp64 so gradcheck can verify the backward.
    return torch.promote_types(dtype, torch.float32)


def _saturate_(square: torch.Tensor, eps: float) -> torch.Tensor:
    """a² → s(a) in place. 1/(1 + ε/a²) equals a²/(a²+ε) but stays 1 (not inf/inf) where a²
    overflows, is exactly 0 at a = 0 (ε/0 = inf), and keeps full relative precision for small a."""
    return square.reciprocal_().mul_(eps).add_(1.0).reciprocal_()


def _slope(activation: torch.Tensor, dtype: torch.dtype, eps: float) -> torch.Tensor:
    """ds/da = 2εa / (a²+ε)², in ``dtype``, as a new tensor (in-place steps: few passes, one
    allocation besides the result). Multiplying a by the inverse first keeps |a| ≈ 1e20 finite."""
    a = activation.to(dtype)
    inverse = a.square().add_(eps).reciprocal_()
    return (a * inverse).mul_(inverse).mul_(2.0 * eps)


class _Saturation(torch.autograd.Function):
    """s(a) = a²/(a²+ε) in fp32 (or fp64), saving only ``a`` for backward.

    Autograd of the literal formula would save a² and a²+ε, two fp32 copies of every activation;
    here the only saved tensor is the activation itself. Where the down projection trains,
    autograd keeps that tensor anyway and the loss adds nothing; where it is frozen (LoRA on Q/V,
    prompt tuning) the loss keeps one activation per layer that backward would otherwise not
    need (a test pins both).
    """

    @staticmethod
    def forward(ctx, activation: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(activation)
        ctx.eps = eps
        return _saturate_(activation.to(_compute_dtype(activation.dtype)).square(), eps)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (activation,) = ctx.saved_tensors
        grad = _slope(activation, grad_output.dtype, ctx.eps).mul_(grad_output)
        return grad.to(activation.dtype), None


class _FeatureMeanSaturation(torch.autograd.Function):
    """mean over the last dimension of s(a): what the loss needs, in one pass each way.

    Fusing the mean saves materialising the [B, T, F] gradient that autograd would broadcast
    from it, and the in-place steps save the temporaries: several times faster than
    ``saturation(a).mean(-1)`` on CPU, so the density term stays a small share of a step.
    """

    @staticmethod
    def forward(ctx, activation: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(activation)
        ctx.eps = eps
        square = activation.to(_compute_dtype(activation.dtype)).square()
        return _saturate_(square, eps).mean(dim=-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (activation,) = ctx.saved_tensors
        per_feature = (grad_output / activation.shape[-1]).unsqueeze(-1)
        grad = _slope(activation, grad_output.dtype, ctx.eps).mul_(per_feature)
        return grad.to(activation.dtype), None


def saturation(activation: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Elementwise s(a) = a² / (a² + ε), computed in at least fp32 whatever ``activation``'s dtype.

    Example:
        >>> saturation(torch.tensor([0.0, 1e-4, 1.0]))
        tensor([0.0000, 0.0909, 1.0000])
    """
    return _Saturation.apply(activation, _checked_eps(eps))


def _checked_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    return float(eps)


def density_loss(
    activations: torch.Tensor | Sequence[torch.Tensor],
    attention_mask: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
    *,
    reduce: bool = True,
    virtual_tokens: int = 0,
) -> torch.Tensor:
    """The DEFT density loss over one tensor or a sequence of per-layer tensors.

    Args:
        activations: per-layer MLP activations ``A_l``, each [B, T, F] (tokens × features);
            [B, *, F] flattens the middle dimensions into T; a 2-D tensor is [B, F] (one token
            per sample) or [B·T, F] (tokens flattened, as OPT does; split into samples using the
            mask's B). Layers may differ in T and F.
        attention_mask: [B, T] with 1 for real tokens and 0 for padding. ``None`` averages over
            every position, padding included — the reference implementation's behaviour. Given a
            mask, n_l[b] averages over the real tokens only (a sample without any contributes 0).
            The mask must cover every position of each activation, or all but the
            ``virtual_tokens`` leading ones; any other length is an error.
        eps: ε of s(a); 1e-7 as in the paper.
        reduce: ``False`` returns the [L, B] matrix of n_l[b] instead of its mean.
        virtual_tokens: leading positions the mask may leave out because prompt tuning prepended
            them to the input (peft's ``num_virtual_tokens``); they count as real tokens.
            :class:`deft.DensityMonitor` passes its model's.

    Returns:
        A scalar (fp32, or fp64 for fp64 inputs), differentiable with respect to the activations.

    Example:
        >>> a = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])  # B=1, T=2, F=2
        >>> density_loss([a])  # s ≈ [[0, 1], [1, 1]]: three of four entries are non-zero
        tensor(0.7500)
        >>> density_loss([a], attention_mask=torch.tensor([[0, 1]]))  # only token 1 is real
        tensor(1.0000)
    """
    eps = _checked_eps(eps)
    layers = [activations] if isinstance(activations, torch.Tensor) else list(activations)
    if not layers:
        raise ValueError("activations is empty: pass at least one [B, T, F] tensor")
    batch_size = None if attention_mask is None else attention_mask.shape[0]
    per_layer = []
    for index, activation in enumerate(layers):
        argument = f"activations[{index}]"
        activation = as_batch_tokens_features(activation, argument, batch_size)
        per_token = _FeatureMeanSaturation.apply(activation, eps)  # [B, T]
        if attention_mask is None:
            per_layer.append(per_token.mean(dim=-1))
            continue
        mask = align_mask(attention_mask, activation, "attention_mask", argument, virtual_tokens)
        real_tokens = mask.sum(dim=-1).clamp_min(1.0)
        per_layer.append((per_token * mask).sum(dim=-1) / real_tokens)
    if reduce:
        # Mean over b, then over l: equal to the mean over (b, l) when every layer has B samples,
        # and still defined when a layer flattens its tokens into rows ([B·T, F], OPT).
        return torch.stack([samples.mean() for samples in per_layer]).mean()
    sizes = {samples.shape[0] for samples in per_layer}
    if len(sizes) > 1:
        raise ValueError(
            f"activations hold different batch sizes per layer {[s.shape[0] for s in per_layer]}; "
            "pass attention_mask so that flattened [B·T, F] layers can be split into samples"
        )
    return torch.stack(per_layer)  # [L, B]
