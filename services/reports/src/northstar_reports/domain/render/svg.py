"""The geometry of the report's inline SVG charts: small pure functions, no markup.

Every coordinate these return is finite and inside the chart's viewBox, whatever the
series: empty, one point, absent points, all equal, or values near the float limits
(scaling halves the operands first, so `hi - lo` never overflows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The alignment status bands of spec/metrics.md: off track < 50 ≤ at risk < 80 ≤ on track.
BAND_AT_RISK = 50.0
BAND_ON_TRACK = 80.0
GREEN = "#1a7f37"
AMBER = "#9a6700"
RED = "#cf222e"
GREY = "#6e7781"


@dataclass(frozen=True)
class Box:
    """A chart's viewBox (origin 0, 0) and the inner padding kept free of geometry."""

    width: float
    height: float
    pad: float = 2.0


def _fmt(x: float) -> str:
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def scale(v: float, lo: float, hi: float) -> float:
    """v's place in [lo, hi] as a fraction in [0, 1]; 0.5 when the range is a point."""
    half_span = hi / 2 - lo / 2
    if not half_span > 0:
        return 0.5
    t = (v / 2 - lo / 2) / half_span
    return min(1.0, max(0.0, t))


def sparkline_points(values: Sequence[float | None], box: Box) -> list[tuple[float, float] | None]:
    """Each value's (x, y) in the box, None where the value is absent (or not finite)."""
    present = _finite(values)
    if not present:
        return [None] * len(values)
    lo, hi = min(present), max(present)
    inner_w = box.width - 2 * box.pad
    inner_h = box.height - 2 * box.pad
    step = inner_w / (len(values) - 1) if len(values) > 1 else 0.0
    out: list[tuple[float, float] | None] = []
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            out.append(None)
            continue
        x = box.pad + (i * step if len(values) > 1 else inner_w / 2)
        y = box.pad + (1.0 - scale(v, lo, hi)) * inner_h
        out.append((x, y))
    return out


def sparkline_path(values: Sequence[float | None], box: Box) -> str:
    """An SVG path `d` through the present values; an absent value breaks the line.

    A point with no neighbour is a zero-length segment (`h0`), drawn as a dot by the
    round line cap. Empty or all-absent series give "".
    """
    parts: list[str] = []
    pen_down = False
    for p in sparkline_points(values, box):
        if p is None:
            pen_down = False
            continue
        x, y = p
        parts.append(f"{'L' if pen_down else 'M'}{_fmt(x)} {_fmt(y)}")
        pen_down = True
    # Lone points (an M not followed by an L) get a zero-length segment to show.
    out: list[str] = []
    for i, part in enumerate(parts):
        out.append(part)
        follows = parts[i + 1] if i + 1 < len(parts) else ""
        if part.startswith("M") and not follows.startswith("L"):
            out.append("h0")
    return " ".join(out)


def gauge_point(fraction: float, cx: float, cy: float, r: float) -> tuple[float, float]:
    """The point at `fraction` (0: left, 1: right) along the upper half circle."""
    f = 0.0 if not math.isfinite(fraction) else min(1.0, max(0.0, fraction))
    angle = math.pi * (1.0 - f)
    return cx + r * math.cos(angle), cy - r * math.sin(angle)


def gauge_arc(start: float, end: float, cx: float, cy: float, r: float) -> str:
    """An SVG path `d` along the upper half circle from fraction `start` to `end`."""
    x0, y0 = gauge_point(start, cx, cy, r)
    x1, y1 = gauge_point(end, cx, cy, r)
    return f"M{_fmt(x0)} {_fmt(y0)} A{_fmt(r)} {_fmt(r)} 0 0 1 {_fmt(x1)} {_fmt(y1)}"


def status_colour(score: float | None) -> str:
    """The colour of the band a score falls in (grey without a score)."""
    if score is None or not math.isfinite(score):
        return GREY
    if score >= BAND_ON_TRACK:
        return GREEN
    if score >= BAND_AT_RISK:
        return AMBER
    return RED


def bar_length(value: float, largest: float, length: float) -> float:
    """A bar's length for `value` when `largest` fills `length` (0 for nothing, 0 ≤ x ≤ length)."""
    if not (math.isfinite(value) and math.isfinite(largest)) or largest <= 0 or value <= 0:
        return 0.0
    return length * min(1.0, value / largest)


def luminance(hex_colour: str) -> float:
    """The WCAG relative luminance of an `#rrggbb` colour."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two colours (1 to 21)."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def heat_colour(value: float | None) -> tuple[str, str]:
    """(background, text colour) of a retention cell: white to deep blue by value in [0, 1].

    The text is black or white, whichever contrasts more with the shade (at least 4.5:1,
    WCAG AA, on every shade); an absent value has no shade.
    """
    if value is None or not math.isfinite(value):
        return "#ffffff", "#1f2328"
    # The square root spreads typical retention (5 to 60 %) over most of the ramp.
    t = math.sqrt(min(1.0, max(0.0, value)))
    light, dark = (240, 246, 255), (9, 64, 142)
    rgb = tuple(round(a + (b - a) * t) for a, b in zip(light, dark, strict=True))
    background = "#{:02x}{:02x}{:02x}".format(*rgb)
    text = max(("#000000", "#ffffff"), key=lambda c: contrast(background, c))
    return background, text
