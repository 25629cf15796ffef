"""The figures of benchmarks/REPORT.md, written to benchmarks/plots/.

Each helper draws one figure from a record's numbers and returns the Markdown image line the
report embeds, or no line where matplotlib is not installed: the tables carry every number, the
figures are for the eye. A figure is named after its record and the device that measured it, so
the CPU and CUDA versions of one benchmark do not overwrite each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.records import slug

PLOTS = Path(__file__).parent / "plots"

Series = tuple[Sequence[float], Sequence[float]]  # x values, y values


def figure_name(record: dict[str, Any], suffix: str = "") -> str:
    """``meft activation memory depth sweep`` on a CPU → ``meft-activation-memory-depth-sweep-cpu``."""
    kind = record["run_info"]["device"]["kind"]
    return slug(f"{record['name']} {suffix} {kind}")


def bar_plot(name: str, values: dict[str, float], *, ylabel: str, title: str) -> list[str]:
    def draw(axis) -> None:
        axis.bar(list(values), list(values.values()), color="#4c72b0")
        axis.tick_params(axis="x", labelsize=7, labelrotation=20)

    return _save(name, title, draw, size=(6, 3.2), ylabel=ylabel)


def line_plot(
    name: str,
    series: dict[str, Series],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_y: bool = False,
    xticks: Sequence[tuple[float, str]] | None = None,
    dashed: Callable[[str], bool] = lambda label: False,
) -> list[str]:
    """One line per series; non-finite points (a diverged run's NaN) are left out of its line."""

    def draw(axis) -> None:
        for label, (xs, ys) in series.items():
            kept = [(x, y) for x, y in zip(xs, ys, strict=True) if _drawable(y, log_y)]
            if not kept:
                continue
            axis.plot(
                [x for x, _ in kept],
                [y for _, y in kept],
                marker="o",
                label=label,
                linestyle="--" if dashed(label) else "-",
            )
        if log_y:
            axis.set_yscale("log")
        if xticks is not None:
            axis.set_xticks([x for x, _ in xticks], [text for _, text in xticks], fontsize=8)
        axis.legend(fontsize=7)

    return _save(name, title, draw, size=(7, 3.6), xlabel=xlabel, ylabel=ylabel)


def scatter_plot(
    name: str,
    points: dict[str, tuple[float, float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
) -> list[str]:
    """One marker per labelled point (a trade-off: memory against time), named in a legend
    beside the axes (points that nearly coincide would hide each other's annotations)."""
    markers = "osD^v<>PX*"

    def draw(axis) -> None:
        from matplotlib import colormaps

        colors = colormaps["tab20"]  # 20 distinct colours; the default cycle repeats after 10
        for index, (label, (x, y)) in enumerate(points.items()):
            style = {"marker": markers[index % len(markers)], "color": colors(index % 20)}
            axis.scatter([x], [y], label=label, s=36, **style)
        if log_x:
            axis.set_xscale("log")
        axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))

    return _save(name, title, draw, size=(8.5, 4), xlabel=xlabel, ylabel=ylabel)


def _drawable(value: Any, log_scale: bool) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and (value > 0 or not log_scale)


def _save(
    name: str,
    title: str,
    draw: Callable[[Any], None],
    *,
    size: tuple[float, float],
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    PLOTS.mkdir(exist_ok=True)
    figure, axis = plt.subplots(figsize=size)
    draw(axis)
    if xlabel:
        axis.set_xlabel(xlabel)
    if ylabel:
        axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    path = PLOTS / f"{name}.png"
    # No timestamp in the file: re-rendering unchanged records leaves the figure unchanged.
    figure.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(figure)
    return ["", f"![{title}](plots/{path.name})"]
