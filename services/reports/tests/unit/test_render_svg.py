"""The chart geometry: any series gives a valid path inside the viewBox, never NaN."""

from __future__ import annotations

import math
import re

from hypothesis import given
from hypothesis import strategies as st

from northstar_reports.domain.render import svg

BOX = svg.Box(width=120, height=28, pad=3)
COMMAND = re.compile(r"([MLAh])([^MLAh]*)")

values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e308, max_value=1e308),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
)
series = st.lists(values, max_size=60)


def commands(d: str) -> list[tuple[str, list[float]]]:
    """A path `d` as (command, numbers); fails on anything else in it."""
    out = []
    pos = 0
    for m in COMMAND.finditer(d):
        assert d[pos : m.start()].strip() == "", f"stray text in {d!r}"
        pos = m.end()
        out.append((m.group(1), [float(x) for x in m.group(2).split()]))
    assert d[pos:].strip() == ""
    return out


@given(series)
def test_a_sparkline_path_is_valid_and_inside_its_box(vs: list[float | None]) -> None:
    d = svg.sparkline_path(vs, BOX)
    present = [v for v in vs if v is not None and math.isfinite(v)]
    if not present:
        assert d == ""
        return
    cmds = commands(d)
    assert cmds[0][0] == "M"
    drawn = 0
    for name, nums in cmds:
        if name == "h":
            assert nums == [0.0]
            continue
        assert name in "ML" and len(nums) == 2
        x, y = nums
        assert math.isfinite(x) and math.isfinite(y)
        assert BOX.pad - 0.01 <= x <= BOX.width - BOX.pad + 0.01
        assert BOX.pad - 0.01 <= y <= BOX.height - BOX.pad + 0.01
        drawn += 1
    assert drawn == len(present)  # one vertex per present value, none for the absent


@given(series)
def test_sparkline_points_keep_the_series_order_and_gaps(vs: list[float | None]) -> None:
    points = svg.sparkline_points(vs, BOX)
    assert len(points) == len(vs)
    xs = []
    for v, p in zip(vs, points, strict=True):
        assert (p is None) == (v is None or not math.isfinite(v))
        if p is not None:
            xs.append(p[0])
    assert xs == sorted(xs)


def test_a_higher_value_is_drawn_higher() -> None:
    points = svg.sparkline_points([1.0, 3.0, 2.0], BOX)
    ys = [p[1] for p in points if p is not None]
    assert ys[1] < ys[2] < ys[0]  # SVG's y grows downwards
    assert ys[1] == BOX.pad and ys[0] == BOX.height - BOX.pad


def test_an_absent_point_breaks_the_line_and_a_lone_point_is_a_dot() -> None:
    assert svg.sparkline_path([1.0, None, 2.0, 3.0], BOX) == "M3 25 h0 M79 14 L117 3"
    assert svg.sparkline_path([7.0], BOX) == "M60 14 h0"


def test_an_all_equal_series_is_a_flat_line_through_the_middle() -> None:
    assert svg.sparkline_path([5.0, 5.0, 5.0], BOX) == "M3 14 L60 14 L117 14"


FINITE = st.floats(min_value=-1e308, max_value=1e308)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)


@given(FINITE, FINITE, FINITE)
def test_scale_is_a_fraction_across_the_whole_float_range(v: float, a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    t = svg.scale(v, lo, hi)
    assert 0.0 <= t <= 1.0


@given(ANY_FLOAT, ANY_FLOAT)
def test_a_gauge_arc_stays_on_the_upper_half_circle(a: float, b: float) -> None:
    d = svg.gauge_arc(a, b, 110, 100, 90)
    cmds = commands(d)
    assert [c for c, _ in cmds] == ["M", "A"]
    (x0, y0), arc = cmds[0][1], cmds[1][1]
    x1, y1 = arc[-2:]
    for x, y in ((x0, y0), (x1, y1)):
        assert math.isfinite(x) and math.isfinite(y)
        assert 20 - 0.01 <= x <= 200 + 0.01
        assert 10 - 0.01 <= y <= 100 + 0.01
        assert math.isclose(math.hypot(x - 110, y - 100), 90, abs_tol=0.02)


def test_the_gauge_runs_left_to_right_over_the_top() -> None:
    x, y = svg.gauge_point(0.0, 110, 100, 90)
    assert math.isclose(x, 20) and math.isclose(y, 100)
    x, y = svg.gauge_point(0.5, 110, 100, 90)
    assert math.isclose(x, 110, abs_tol=1e-9) and math.isclose(y, 10)
    x, y = svg.gauge_point(1.0, 110, 100, 90)
    assert math.isclose(x, 200) and math.isclose(y, 100, abs_tol=1e-9)


def test_status_colours_follow_the_alignment_bands() -> None:
    assert svg.status_colour(80.0) == svg.GREEN
    assert svg.status_colour(79.99) == svg.AMBER
    assert svg.status_colour(50.0) == svg.AMBER
    assert svg.status_colour(49.99) == svg.RED
    assert svg.status_colour(None) == svg.GREY
    assert svg.status_colour(math.nan) == svg.GREY


@given(ANY_FLOAT, ANY_FLOAT)
def test_a_bar_fits_its_track(value: float, largest: float) -> None:
    n = svg.bar_length(value, largest, 400)
    assert math.isfinite(n) and 0 <= n <= 400


def test_bars_are_proportional() -> None:
    assert svg.bar_length(50, 200, 400) == 100
    assert svg.bar_length(200, 200, 400) == 400
    assert svg.bar_length(0, 0, 400) == 0


@given(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_a_heat_colour_is_a_hex_pair_with_readable_text(v: float | None) -> None:
    background, text = svg.heat_colour(v)
    assert re.fullmatch(r"#[0-9a-f]{6}", background)
    assert text in ("#ffffff", "#000000", "#1f2328")


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


@given(st.floats(min_value=0, max_value=1))
def test_heat_cells_keep_text_contrast_of_at_least_4_5(v: float) -> None:
    background, text = svg.heat_colour(v)
    hi, lo = sorted((_luminance(background), _luminance(text)), reverse=True)
    assert (hi + 0.05) / (lo + 0.05) >= 4.5  # WCAG AA for normal text
