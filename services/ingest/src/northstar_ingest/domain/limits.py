"""Per-tenant rate limiting and the recent-id memory: pure, clock injected."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TenantRateLimiter:
    """A token bucket per tenant: `rate` events per second, bursts up to `burst`."""

    def __init__(self, *, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, tenant: str, n: int) -> float | None:
        """Spend `n` tokens; None when allowed, else the seconds until they would be."""
        if self._rate <= 0:
            return None
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        # A batch larger than the burst passes on a full bucket and leaves a debt
        # that later requests wait out; otherwise it could never pass at all.
        needed = min(n, self._burst)
        if bucket.tokens >= needed:
            bucket.tokens -= n
            return None
        return max((needed - bucket.tokens) / self._rate, 0.001)


class RecentIds:
    """The most recent accepted (tenant, event_id) pairs, bounded (least recent evicted).

    Lets ingest answer DUPLICATE for retries across requests beyond what the
    log's own message dedup sees. Exact dedup happens in the projections; this
    only sharpens the answer.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, key: tuple[str, str]) -> None:
        """Remember a pair, evicting the oldest beyond capacity."""
        self.add_all(key[0], (key[1],))

    # One call per request, not per event: a Python method call costs about as much
    # as the OrderedDict work it wraps, 100k times a second.
    def known(self, tenant: str, event_ids: Iterable[str]) -> set[str]:
        """The ones of `event_ids` remembered for `tenant`."""
        ids = self._ids
        return {event_id for event_id in event_ids if (tenant, event_id) in ids}

    def add_all(self, tenant: str, event_ids: Iterable[str]) -> None:
        """Remember these ids in order, as `add` one by one would, evicting the oldest."""
        if self._capacity <= 0:
            return
        ids = self._ids
        for event_id in event_ids:
            key = (tenant, event_id)
            if key in ids:
                ids.move_to_end(key)
            else:
                ids[key] = None
        # Evicting once at the end keeps the same pairs as evicting after every add:
        # the most recently added `capacity` of them.
        for _ in range(len(ids) - self._capacity):
            ids.popitem(last=False)
