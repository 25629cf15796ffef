"""Per-layer density plots with matplotlib (the ``plot`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from peft_core.optional_imports import import_optional

if TYPE_CHECKING:
    from deft.report import DensityReport


def _figure_class():
    figure = import_optional(
        "matplotlib.figure", needed_by="DensityReport.plot", install='pip install "deft-peft[plot]"'
    )
    return figure.Figure


def _tick_labels(groups: list[str]) -> list[str]:
    """``e0 e1 d0 d1 …``: the group's initial and the layer's index within its group."""
    seen: dict[str, int] = {}
    labels = []
    for group in groups:
        labels.append(f"{group[0]}{seen.get(group, 0)}")
        seen[group] = seen.get(group, 0) + 1
    return labels


def plot_report(report: DensityReport, path: Path, variants: tuple[str, ...]) -> Path:
    """Draw ``variants`` of ``report`` per layer; the baseline, if any, in dashed lines."""
    unknown = [v for v in variants if v not in report.variants]
    if unknown:
        raise KeyError(f"no variant {unknown}; this report has {list(report.variants)}")
    # A bare Figure renders with the Agg canvas and never touches pyplot's global state or backend.
    figure = _figure_class()(figsize=(max(6.0, 0.35 * len(report.layers)), 4.0))
    axes = figure.add_subplot()
    positions = range(len(report.layers))
    for variant in variants:
        line = axes.plot(positions, report.variants[variant], marker="o", label=variant)[0]
        if report.baseline is not None and variant in report.baseline.variants:
            axes.plot(
                range(len(report.baseline.layers)),
                report.baseline.variants[variant],
                linestyle="--",
                color=line.get_color(),
                label=f"{variant} (baseline)",
            )
    axes.set_xticks(list(positions))
    axes.set_xticklabels(_tick_labels(report.groups), fontsize=7)
    axes.set_xlabel("MLP layer (e = encoder, d = decoder, m = model)")
    axes.set_ylabel("non-zero activations (%)")
    axes.set_ylim(0, 100)
    axes.set_title(f"Activation density per layer ({report.dtype})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
