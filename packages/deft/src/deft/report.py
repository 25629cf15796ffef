"""The result of :func:`deft.measure_density`: per-layer densities, means, and the reduction vs a baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


def threshold_variant(tau: float) -> str:
    """The variant name of the density with |a| ≤ τ counted as zero: ``thresholded@0.0001``."""
    return f"thresholded@{float(tau):g}"


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _jsonable(value: Any) -> Any:
    # JSON has no NaN: a density that could not be measured (no real token) becomes null.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def _nan(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def check_same_layers(baseline_layers: list[str], layers: list[str]) -> None:
    """Refuse a baseline report of other layers: its densities would be compared with others."""
    if baseline_layers != layers:
        missing = sorted(set(baseline_layers) ^ set(layers))
        raise ValueError(
            "the baseline report has other layers than this one"
            + (f" (in only one of them: {missing[:6]})" if missing else " (in another order)")
        )


def _change(baseline: float, density: float) -> dict[str, float]:
    points = baseline - density
    relative = 100.0 * points / baseline if baseline else float("nan")
    return {
        "baseline": baseline,
        "density": density,
        "relative_percent": relative,
        "percentage_points": points,
    }


@dataclass
class DensityReport:
    """Activation density in percent (100 = no zeros), per layer and per variant.

    Attributes:
        layers: layer names, in the order the model computes them.
        groups: the stack of each layer (``"encoder"``, ``"decoder"``, ``"vision"`` or ``"model"``).
        reference: per-layer density counting every position, padding included (reference code).
        masked: per-layer density over real tokens only.
        thresholded: τ → per-layer density over real tokens with |a| ≤ τ counted as zero.
        dtype: the dtype(s) the activations were computed in; exact zeros depend on it.
        num_samples: evaluation samples seen.
        baseline: an optional report to compare with (see :meth:`reduction_vs`).

    Example:
        >>> peft = DensityReport(
        ...     ["l0", "l1"], ["model"] * 2, [80.0, 60.0], [80.0, 60.0], {}, "float32", 8
        ... )
        >>> deft = DensityReport(
        ...     ["l0", "l1"], ["model"] * 2, [40.0, 30.0], [40.0, 30.0], {}, "float32", 8
        ... )
        >>> deft.reduction_vs(peft)["masked"]["relative_percent"]
        50.0
        >>> deft.reduction_vs(peft)["masked"]["percentage_points"]
        35.0
    """

    layers: list[str]
    groups: list[str]
    reference: list[float]
    masked: list[float]
    thresholded: dict[float, list[float]]
    dtype: str
    num_samples: int
    baseline: DensityReport | None = field(default=None, repr=False)

    @property
    def variants(self) -> dict[str, list[float]]:
        """Per-layer densities by variant name: reference, masked, thresholded@τ …"""
        named = {"reference": self.reference, "masked": self.masked}
        named.update({threshold_variant(tau): v for tau, v in self.thresholded.items()})
        return named

    def mean(self, variant: str = "masked", group: str | None = None) -> float:
        """The reported density: mean over layers (of ``group`` only, if given) of one variant."""
        if variant not in self.variants:
            raise KeyError(f"no variant {variant!r}; this report has {list(self.variants)}")
        values = self.variants[variant]
        if group is not None:
            if group not in self.groups:
                raise KeyError(f"no group {group!r}; this report has {sorted(set(self.groups))}")
            values = [v for v, g in zip(values, self.groups, strict=True) if g == group]
        return _mean(values)

    @property
    def means(self) -> dict[str, float]:
        return {variant: self.mean(variant) for variant in self.variants}

    @property
    def group_means(self) -> dict[str, dict[str, float]]:
        return {
            group: {variant: self.mean(variant, group) for variant in self.variants}
            for group in dict.fromkeys(self.groups)
        }

    def reduction_vs(self, baseline: DensityReport) -> dict[str, dict[str, Any]]:
        """How much denser ``baseline`` is, per variant: relative (D_base − D)/D_base in percent,
        and absolute D_base − D in percentage points — for the mean, per group and per layer."""
        check_same_layers(baseline.layers, self.layers)
        result: dict[str, dict[str, Any]] = {}
        for variant, values in self.variants.items():
            if variant not in baseline.variants:
                continue
            base_values = baseline.variants[variant]
            per_layer = [_change(b, d) for b, d in zip(base_values, values, strict=True)]
            result[variant] = {
                **_change(baseline.mean(variant), self.mean(variant)),
                "groups": {
                    group: _change(baseline.mean(variant, group), self.mean(variant, group))
                    for group in dict.fromkeys(self.groups)
                },
                "per_layer_relative_percent": [c["relative_percent"] for c in per_layer],
                "per_layer_percentage_points": [c["percentage_points"] for c in per_layer],
            }
        return result

    # -- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN → null); :meth:`from_dict` reads it back."""
        data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "unit": "percent of non-zero activations",
            "dtype": self.dtype,
            "num_samples": self.num_samples,
            "layers": list(self.layers),
            "groups": list(self.groups),
            "thresholds": list(self.thresholded),
            "per_layer": {variant: list(values) for variant, values in self.variants.items()},
            "mean": self.means,
            "group_mean": self.group_means,
        }
        if self.baseline is not None:
            data["baseline"] = self.baseline.to_dict()
            data["reduction_vs_baseline"] = self.reduction_vs(self.baseline)
        return _jsonable(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DensityReport:
        per_layer = data["per_layer"]
        return cls(
            layers=list(data["layers"]),
            groups=list(data["groups"]),
            reference=_nan(per_layer["reference"]),
            masked=_nan(per_layer["masked"]),
            thresholded={
                float(tau): _nan(per_layer[threshold_variant(tau)]) for tau in data["thresholds"]
            },
            dtype=data["dtype"],
            num_samples=int(data["num_samples"]),
            baseline=cls.from_dict(data["baseline"]) if data.get("baseline") else None,
        )

    # -- presentation ------------------------------------------------------------------------------
    def format_table(self) -> str:
        """A plain-text table: one row per layer, one column per variant, then the means."""
        variants = list(self.variants)
        width = max(len("mean"), *(len(name) for name in self.layers))
        lines = [f"{'layer':<{width}}  " + "  ".join(f"{v:>18}" for v in variants)]
        rows = [*zip(self.layers, zip(*self.variants.values(), strict=True), strict=True)]
        rows.append(("mean", tuple(self.means.values())))
        for name, values in rows:
            lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>18.2f}" for v in values))
        return "\n".join(lines) + f"\n(density in % of non-zero activations, dtype {self.dtype})"

    def plot(self, path: str | Path, variants: tuple[str, ...] = ("reference", "masked")) -> Path:
        """Save a per-layer density plot (the baseline dashed, when there is one) to ``path``."""
        from deft.plotting import plot_report

        return plot_report(self, Path(path), variants)
