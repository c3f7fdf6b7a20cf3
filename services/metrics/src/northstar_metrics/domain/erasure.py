"""A user's erasure in the metrics read models: the policy's pure parts.

Policy (RELIABILITY.md, docs/spec-readings.md "Erasure"): once a `UserErased` log entry
is applied, every number is as if the user's events that came before it in the log had
never been accepted. A later-arriving event of the same user_id whose timestamp is at or
before the erasure time is erased history retried (a client's late retry, a backfill):
it is dropped. One with a later timestamp is a new history of a user who came back.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import date

from northstar_metrics.domain.active_users import Deltas, NewDay, coverage_deltas

__all__ = ["coverage_change", "is_erased_history", "user_digest"]


def user_digest(tenant: str, user_id: str) -> bytes:
    """The key an erased user is remembered by: a digest, never the id itself."""
    return hashlib.blake2b(f"{tenant}\x1f{user_id}".encode(), digest_size=16).digest()


def is_erased_history(timestamp_us: int, erased_at_us: int | None) -> bool:
    """Whether an event of an erased user belongs to the erased history (and is dropped)."""
    return erased_at_us is not None and timestamp_us <= erased_at_us


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
