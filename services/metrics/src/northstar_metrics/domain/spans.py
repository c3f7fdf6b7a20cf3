"""Counting subjects active in any day range from per-day rollup rows ("spans").

A subject (a workflow, a user) with a sorted set of days adds a few rows of (kind, x,
y): its first and its last day, each gap between consecutive days that has a day
inside, and each day. Summed over subjects, they answer "subjects with a day in
[s, e]" for any range from three range sums, whatever the number of subjects: a
subject that started by e and has no day in [s, e] either ended before s or has
exactly one gap over [s, e]. Adding a day to a subject splits at most one gap and
moves at most its first or last day, so a projection keeps the sums with a few rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date

FIRST_DAY, LAST_DAY, GAP, DAY = 0, 1, 2, 3


def span_rows(days: Sequence[date]) -> dict[tuple[int, date, date], int]:
    """The rows (kind, x, y) one subject with these sorted, distinct days adds."""
    if not days:
        return {}
    rows = {(FIRST_DAY, days[0], days[0]): 1, (LAST_DAY, days[-1], days[-1]): 1}
    for a, b in itertools.pairwise(days):
        if (b - a).days >= 2:
            rows[(GAP, a, b)] = 1
    for d in days:
        rows[(DAY, d, d)] = 1
    return rows


def active_in(first_by_e: int, last_before_s: int, gaps_over: int) -> int:
    """Subjects with a day in [s, e], from the summed rows.

    `first_by_e`: FIRST_DAY rows with y <= e; `last_before_s`: LAST_DAY rows with
    y < s; `gaps_over`: GAP rows with x < s and y > e. (One day: its DAY row.)
    """
    return first_by_e - last_before_s - gaps_over


def spans_delta(before: Sequence[date], after: Sequence[date]) -> dict[tuple[int, date, date], int]:
    """span_rows(after) minus span_rows(before), without the rows that cancel."""
    delta = dict.fromkeys(span_rows(before), -1)
    for row in span_rows(after):
        delta[row] = delta.get(row, 0) + 1
    return {row: n for row, n in delta.items() if n}
