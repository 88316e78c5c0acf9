"""Percentiles and summaries of the benchmark figures."""

from __future__ import annotations

import math
import statistics
from typing import Any

# ---------------------------------------------------------------------------------------------
# statistics


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": r3(pct(values, 50)),
        "p90": r3(pct(values, 90)),
        "p99": r3(pct(values, 99)),
        "mean": r3(statistics.fmean(values)),
        "min": r3(min(values)),
        "max": r3(max(values)),
    }


def across(rounds: list[dict[str, Any]], *path: str) -> dict[str, Any]:
    """Median of a figure over rounds, with its spread (min..max)."""
    values = []
    for item in rounds:
        for key in path:
            item = item.get(key) if isinstance(item, dict) else None
        if isinstance(item, int | float):
            values.append(float(item))
    if not values:
        return {"median": None, "min": None, "max": None, "rounds": 0}
    return {
        "median": r3(statistics.median(values)),
        "min": r3(min(values)),
        "max": r3(max(values)),
        "rounds": len(values),
    }


def raw(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]
