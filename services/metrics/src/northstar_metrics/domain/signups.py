"""Signups and cohorts (spec/metrics.md, Common rules): a user's earliest user.signup."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from northstar_metrics.domain.events import EventRow


@dataclass(frozen=True, slots=True)
class Signup:
    """A user's signup: its earliest `user.signup` event and the cohort attributes."""

    user_id: str
    ts_us: int
    day: date
    plan: str | None
    channel: str | None
    org_id: str
    event_id: str


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def signups(rows: Iterable[EventRow]) -> dict[str, Signup]:
    """Each user's signup, from its earliest `user.signup` (timestamp, then event_id)."""
    first: dict[str, EventRow] = {}
    for r in rows:
        if r.event != "user.signup" or not r.user_id:
            continue
        seen = first.get(r.user_id)
        if seen is None or r.order_key < seen.order_key:
            first[r.user_id] = r
    return {
        user: Signup(
            user_id=user,
            ts_us=r.ts_us,
            day=r.day,
            plan=_text(r.properties.get("plan")),
            channel=_text(r.properties.get("channel")),
            org_id=r.org_id,
            event_id=r.event_id,
        )
        for user, r in first.items()
    }
