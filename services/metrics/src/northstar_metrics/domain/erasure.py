"""A user's erasure in the metrics read models: the active-user arithmetic.

The policy (which events an erasure drops, how erased users are remembered) is
northstar_runtime.erasure, shared with the experiments service; RELIABILITY.md and
docs/spec-readings.md "Erasure" state it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date

from northstar_metrics.domain.active_users import Deltas, NewDay, coverage_deltas

__all__ = ["coverage_change"]


def _coverage(tenant: str, days: Iterable[date], windows: dict[str, int]) -> Deltas:
    """What one subject with these activity days adds to the difference arrays."""
    return coverage_deltas(
        [NewDay(tenant, "", d, prev=None, next=None) for d in sorted(set(days))], windows
    )


def coverage_change(
    tenant: str, before: Iterable[date], after: Iterable[date], windows: dict[str, int]
) -> Deltas:
    """The difference-array change of one subject whose activity days go from `before`
    to `after` (days removed by an erasure): its whole contribution, old out, new in."""
    out: Deltas = defaultdict(lambda: defaultdict(int))
    for sign, days in ((-1, before), (1, after)):
        for key, values in _coverage(tenant, days, windows).items():
            for name, v in values.items():
                out[key][name] += sign * v
    return out
