"""What counts as a number in a config or argument check.

numpy and torch scalars count (a sweep tool hands back ``np.int64(8)`` or ``np.float32(0.1)``);
booleans do not, though Python makes ``True`` an ``int``; strings such as ``"1e-3"`` do not.

Example:
    >>> import numpy as np
    >>> is_integer(np.int64(8)), is_integer(True), is_real(np.float32(0.1)), is_real("1e-3")
    (True, False, True, False)
    >>> plain_number(np.float32(0.5)), type(plain_number(np.int64(3))).__name__
    (0.5, 'int')
"""

from __future__ import annotations

import math
import numbers


def is_integer(value: object) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """An int or float (numpy's too), not a bool; possibly infinite or NaN."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_real(value: object) -> bool:
    return is_real(value) and math.isfinite(value)


def plain_number(value: object) -> object:
    """``value`` as a Python int or float when it is a number of another type (JSON writes only
    those); anything else unchanged."""
    if is_integer(value):
        return int(value)
    if is_real(value):
        return float(value)
    return value
