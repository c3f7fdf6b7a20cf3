"""Kpis from the read models equal `kpi_values` over every event: late, duplicated, per tenant."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections import defaultdict
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import kpis_pb2
from northstar_harness.eventually import assert_eventually
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.kpi_values import kpi_values

from ..reference import Ev, dedup
from .conftest import TENANTS, MetricsUnderTest, auth
from .test_kpis import _generated


def expected(events: list[Ev], as_of: date) -> dict[str, float | None]:
    rows = [
        EventRow(e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, json.loads(e.properties))
        for e in dedup(events)
    ]
    days: dict[str, set[date]] = defaultdict(set)
    for r in rows:
        if r.user_id:
            days[r.user_id].add(r.day)
    values = kpi_values(as_of, rows, {u: sorted(d) for u, d in days.items()})
    return {n: v.value for n, v in values.items()}


def disturbed(events: list[Ev], seed: int) -> list[Ev]:
    """The events in another order, with some repeated (a repeat may differ: the first stands)."""
    rng = random.Random(seed)
    out = list(events)
    rng.shuffle(out)
    for e in rng.sample(events, k=len(events) // 10):
        shift = rng.choice([0, 0, 86_400_000_000 * rng.randint(-20, 20)])
        out.insert(
            rng.randrange(len(out) + 1), dataclasses.replace(e, timestamp_us=e.timestamp_us + shift)
        )
    return out


async def test_kpis_equal_the_whole_history_reference(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS[150:])
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        seed=st.integers(0, 10_000),
        other=st.integers(0, 10_000),
        as_of=st.integers(40, 125).map(lambda n: date(2026, 1, 1) + timedelta(days=n)),
        per_message=st.integers(1, 40),
    )
    def check_one(seed: int, other: int, as_of: date, per_message: int) -> None:
        a, b = next(tenants), next(tenants)
        events = disturbed(_generated(seed), seed)
        neighbour = disturbed(_generated(other), other)

        async def check() -> None:
            await metrics.append(b, neighbour, per_message=per_message)
            position = await metrics.append(a, events, per_message=per_message)

            async def settled() -> kpis_pb2.KpisResponse:
                answer = await metrics.stub.Kpis(
                    kpis_pb2.KpisRequest(as_of_date=as_of.isoformat()), metadata=auth(a), timeout=10
                )
                assert answer.log_position >= position
                return answer

            answer = await assert_eventually(settled, timeout=30)
            got = {k.name: (k.value if k.HasField("value") else None) for k in answer.kpis}
            assert got == pytest.approx(expected(events, as_of)), as_of

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=90)

    await asyncio.to_thread(check_one)
