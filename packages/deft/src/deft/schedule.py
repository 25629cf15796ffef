"""λ over training: hold the density loss off until the task is learned, then ramp it in.

With the paper's constant λ = 1 and a LoRA-sized step size, the density term can win from the
first step: on MiniLM + LoRA at lr 2e-3 the task loss never leaves ln 2 (see the package README).
A schedule lets the task settle first, then brings the density term in gradually, the way
ProSparse raises its L1 factor progressively::

    λ(p) = 0                                    p < delay
           weight · (p − delay) / ramp          delay ≤ p < delay + ramp
           weight                               p ≥ delay + ramp

where ``p = step / total_steps`` is the fraction of training done. Everything is a function of
the step, so a resumed run continues on the same curve.

Example:
    >>> schedule = DensityWeightSchedule(1.0, delay=0.5, ramp=0.25)
    >>> [schedule.at(p) for p in (0.0, 0.5, 0.625, 0.75, 1.0)]
    [0.0, 0.0, 0.5, 1.0, 1.0]
    >>> schedule.for_step(75, total_steps=100)
    1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DensityWeightSchedule:
    """The density weight λ as a function of training progress.

    Args:
        weight: λ once the ramp is over (the paper's constant λ is ``delay = ramp = 0``).
        delay: fraction of the training steps trained with λ = 0 (0 ≤ delay < 1).
        ramp: fraction of the training steps over which λ rises linearly from 0 to ``weight``
            after the delay (0 ≤ ramp, delay + ramp ≤ 1).
    """

    weight: float
    delay: float = 0.0
    ramp: float = 0.0

    def __post_init__(self) -> None:
        _check_fraction("delay", self.delay, upper=1.0, closed=False)
        _check_fraction("ramp", self.ramp, upper=1.0, closed=True)
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)):
            raise ValueError(f"weight must be a non-negative number, got {self.weight!r}")
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise ValueError(f"weight must be a non-negative finite number, got {self.weight!r}")
        if self.delay + self.ramp > 1.0 + 1e-12:
            raise ValueError(
                f"delay + ramp must be at most 1 (the whole run), got {self.delay} + {self.ramp}"
            )

    @property
    def is_constant(self) -> bool:
        return self.delay == 0 and self.ramp == 0

    def at(self, progress: float) -> float:
        """λ after ``progress`` (0 - 1) of the training steps."""
        if progress < self.delay:
            return 0.0
        if self.ramp and progress < self.delay + self.ramp:
            return float(self.weight) * (progress - self.delay) / self.ramp
        return float(self.weight)

    def for_step(self, step: int, total_steps: int) -> float:
        """λ for the optimizer step with 0-based index ``step`` of ``total_steps``."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be at least 1, got {total_steps!r}")
        return self.at(step / total_steps)


def as_schedule(weight: float | DensityWeightSchedule) -> DensityWeightSchedule:
    """A constant λ as a schedule; a schedule as itself."""
    if isinstance(weight, DensityWeightSchedule):
        return weight
    return DensityWeightSchedule(weight)


def _check_fraction(name: str, value: float, *, upper: float, closed: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    ok = ok and (value <= upper if closed else value < upper)
    if not ok:
        bound = f"≤ {upper:g}" if closed else f"< {upper:g}"
        raise ValueError(
            f"{name} is a fraction of the training steps, 0 ≤ {name} {bound}; got {value!r}"
        )
