"""The report's numbers: means and sample standard deviations over seeds, and how a number is printed.

Only finite numbers count: a field a run lacks (None), a nan or an inf is left out of every statistic, and a
cell with nothing to show holds DASH.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Optional

DASH = "—"


def finite(values: Iterable[Any]) -> list[float]:
    """The finite ints and floats of `values` as floats (booleans are not numbers here)."""
    out = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def mean_std(values: Iterable[Any]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (ddof = 1) of the finite numbers in `values`.

    (None, None) without any; (mean, None) with one, where a standard deviation is undefined.
    """
    xs = finite(values)
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None when either is missing or b is zero."""
    return a / b if a is not None and b else None


def auto_digits(value: Optional[float]) -> int:
    """Decimals that show about three significant figures of `value`, at least two."""
    if value is None or value == 0:
        return 2
    return max(2, 2 - math.floor(math.log10(abs(value))))


def format_mean_std(values: Iterable[Any], digits: Optional[int] = 2) -> str:
    """'2.65 ± 0.07' over several values, '2.65' over one, '—' over none. digits=None: auto_digits of the mean."""
    mean, std = mean_std(values)
    if mean is None:
        return DASH
    if digits is None:
        digits = auto_digits(mean)
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt(value: Any, digits: int = 2) -> str:
    """One number with `digits` decimals; DASH for anything that is not a finite number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return DASH
