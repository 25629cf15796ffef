"""DEFT: Density-Efficient Fine-Tuning (Runwal, Pedapati & Chen, 2024) — a density loss for any PEFT method.

Distribution name ``deft-peft``; not Hugging Face peft's unrelated DEFT tuner (Decompositional
Efficient Fine-Tuning) nor the PyPI project ``deft``. The method lands with the DEFT issue.

Example:
    >>> import torch, deft
    >>> from peft_core.testing import TinyClassifier
    >>> model = TinyClassifier()
    >>> monitor = deft.DensityMonitor(model)  # hooks every MLP activation
    >>> batch = {"input_ids": torch.randint(0, 32, (2, 5)), "labels": torch.tensor([0, 1])}
    >>> out = model(**batch)
    >>> loss = out["loss"] + 1.0 * monitor.loss()
    >>> report = deft.measure_density(model, [batch], monitor=monitor)
    >>> sorted(report.means)
    ['masked', 'reference', 'thresholded@0.0001', 'thresholded@0.001', 'thresholded@1e-06']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peft_core.lazy_exports import lazy_exports

__version__ = "0.1.0.dev0"

if TYPE_CHECKING:  # what type checkers and editors read; at run time each name is imported on use
    from deft import sparse, thresholding
    from deft.callbacks import DensityLossCallback
    from deft.discovery import MLP_LAYOUTS, ActivationTarget, MLPLayout, find_targets
    from deft.loss import density_loss, saturation
    from deft.metrics import measure_density
    from deft.mlp_inputs import mlp_input_projections
    from deft.monitor import DensityMonitor
    from deft.report import DensityReport
    from deft.schedule import DensityWeightSchedule
    from deft.thresholding import apply_threshold, calibrate_threshold

# `deft --help` and usage errors should not wait seconds for torch
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "deft": ["sparse", "thresholding"],
        "deft.callbacks": ["DensityLossCallback"],
        "deft.discovery": ["MLP_LAYOUTS", "ActivationTarget", "MLPLayout", "find_targets"],
        "deft.loss": ["density_loss", "saturation"],
        "deft.metrics": ["measure_density"],
        "deft.mlp_inputs": ["mlp_input_projections"],
        "deft.monitor": ["DensityMonitor"],
        "deft.report": ["DensityReport"],
        "deft.schedule": ["DensityWeightSchedule"],
        "deft.thresholding": ["apply_threshold", "calibrate_threshold"],
    },
)
