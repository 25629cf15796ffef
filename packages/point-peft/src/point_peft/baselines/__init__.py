"""The baseline rows Point-PEFT is compared against, on the same backbone and training loop.

``get_baseline_model(backbone, method, **options)`` with ``method`` one of
:data:`BASELINE_METHODS`:

- ``"full"``: full fine-tuning, everything trains.
- ``"linear"``: linear probe, the head only.
- ``"adapter"``: a plain bottleneck adapter (dim → 16 → dim, zero-initialised up projection)
  after every block's MLP; cls token/pos, final norm and head train too.
- ``"vpt-deep"``: 10 fresh learned prompt tokens before every block, dropped after it; cls
  token/pos, final norm and head train too.
- ``"bitfit"``: every bias, and the head.

Where things live:

- :mod:`~point_peft.baselines.config` — :class:`BaselineConfig`, the rows and their options.
- :mod:`~point_peft.baselines.trainable` — what trains in each row, and why.
- :mod:`~point_peft.baselines.adapters` — the adapter after a block's MLP.
- :mod:`~point_peft.baselines.prompts` — VPT-deep's per-block prompts.
- :mod:`~point_peft.baselines.model` — :func:`get_baseline_model` and :class:`BaselineModel`.

Every model has Point-PEFT's interface (``model(points, labels=…)`` → ``output.loss``,
``output.logits``), ``print_trainable_parameters()``, ``no_weight_decay()`` and
``save_pretrained(folder)``; ``peft_core.load(backbone, folder)`` rebuilds it.

Example:
    >>> import torch
    >>> from point_peft.baselines import BASELINE_METHODS, get_baseline_model
    >>> from point_peft.models import PointMAE, PointTransformerConfig
    >>> for method in BASELINE_METHODS:
    ...     _ = torch.manual_seed(0)
    ...     backbone = PointMAE(PointTransformerConfig.small(num_classes=4))
    ...     model = get_baseline_model(backbone, method)
    ...     print(f"{method:9}", end="")
    ...     model.print_trainable_parameters()
    full     trainable params: 501,572 || all params: 501,572 || trainable%: 100.0000
    linear   trainable params: 17,028 || all params: 501,572 || trainable%: 3.3949
    adapter  trainable params: 30,148 || all params: 514,308 || trainable%: 5.8619
    vpt-deep trainable params: 21,252 || all params: 505,412 || trainable%: 4.2049
    bitfit   trainable params: 20,836 || all params: 501,572 || trainable%: 4.1541
"""

from __future__ import annotations

from point_peft.baselines.adapters import BlockAdapter
from point_peft.baselines.config import BASELINE_METHODS, BaselineConfig
from point_peft.baselines.model import BaselineModel, apply_baseline, get_baseline_model
from point_peft.baselines.prompts import DeepPrompts
from point_peft.baselines.trainable import TRAINABLE, trainable_patterns

__all__ = [
    "BASELINE_METHODS",
    "TRAINABLE",
    "BaselineConfig",
    "BaselineModel",
    "BlockAdapter",
    "DeepPrompts",
    "apply_baseline",
    "get_baseline_model",
    "trainable_patterns",
]
