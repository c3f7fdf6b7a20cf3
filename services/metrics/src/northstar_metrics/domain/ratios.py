"""Ratios that are absent, never zero or infinite, over an empty denominator."""

from __future__ import annotations

from fractions import Fraction


def ratio(numerator: float, denominator: float | None) -> float | None:
    """numerator / denominator; absent (None) over a zero or absent denominator."""
    return numerator / denominator if denominator else None


def exact_ratio(numerator: int | Fraction, denominator: int | Fraction | None) -> Fraction | None:
    """numerator / denominator as an exact fraction; absent over a zero or absent one.

    Ratios of ratios (LTV = ARPU / churn, LTV:CAC, payback) are built from these and
    rounded to a float once, so that a value which is exactly 2 by hand is 2.0, and a
    comparison with a threshold or a status boundary decides as it does by hand.
    """
    return Fraction(numerator) / Fraction(denominator) if denominator else None


def decimal(x: float) -> Fraction:
    """A configured number as the decimal it is written as: 0.05 is 1/20, not the binary
    double nearest to it (Python's repr is the shortest decimal that reads back as x)."""
    return Fraction(repr(x))


def as_float(x: Fraction | None) -> float | None:
    """An exact value rounded once to the nearest double; absent stays absent."""
    return None if x is None else float(x)
