"""Ratios that are absent, never zero or infinite, over an empty denominator."""

from __future__ import annotations


def ratio(numerator: float, denominator: float | None) -> float | None:
    """numerator / denominator; absent (None) over a zero or absent denominator."""
    return numerator / denominator if denominator else None
