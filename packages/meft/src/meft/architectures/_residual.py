"""The two residual half-blocks every transformer layer is made of, with MEFT's adapters inserted.

A family description only says how to call its attention and its FFN (and which norm sits where);
these helpers put the residual, the norm and the adapters around them, the same way for every family:

- attention half: ``t = attend(·)``, then (MEFT3) ``t = t + A_attn(t)``, then the residual;
- FFN half: the parallel adapter reads what the FFN reads, ``FFN(a) + A_ffn(a)``, then the residual.

Post-LN layers (BERT, BART, OPT-350m) normalise after the residual: ``LN(x + t)``; pre-LN layers
(ViT, Llama, OPT) normalise the branch input: ``x + t(LN(x))``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from meft.adapters import LayerAdapters

Branch = Callable[[torch.Tensor], torch.Tensor]


def attention_residual(
    x: torch.Tensor, attend: Branch, norm: Branch, adapters: LayerAdapters, *, pre_norm: bool
) -> torch.Tensor:
    """``x + t`` (pre-LN: ``t = attend(norm(x))``) or ``norm(x + t)`` (post-LN: ``t = attend(x)``),
    where ``attend`` includes the layer's output dropout and MEFT3 adds its adapter to ``t``."""
    branch = attend(norm(x) if pre_norm else x)
    if adapters.attention is not None:  # MEFT3: sequential adapter on the attention output
        branch = branch + adapters.attention(branch)
    return x + branch if pre_norm else norm(x + branch)


def ffn_residual(
    x: torch.Tensor, ffn: Branch, norm: Branch, adapters: LayerAdapters, *, pre_norm: bool
) -> torch.Tensor:
    """``x + FFN(a) + A(a)`` with ``a = norm(x)`` (pre-LN), or ``norm(FFN(x) + A(x) + x)``
    (post-LN), where ``ffn`` includes the layer's output dropout."""
    inner = norm(x) if pre_norm else x
    branch = ffn(inner) + adapters.ffn(inner)  # the parallel adapter reads what the FFN reads
    return x + branch if pre_norm else norm(branch + x)


def except_keys(context: dict, *names: str) -> dict:
    """The context without ``names``: the extra keyword arguments a layer forwards to its attention."""
    return {key: value for key, value in context.items() if key not in names}
