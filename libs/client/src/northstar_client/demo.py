"""A small, realistic, seeded SaaS data set for `northstar demo`, and its loader."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from northstar.ingest.v1 import ingest_pb2
from northstar.metrics.v1 import trend_pb2
from northstar_client.clients import AsyncIngestClient, AsyncMetricsClient
from northstar_client.config import ClientConfig
from northstar_client.events import to_timestamp

__all__ = ["DemoLoad", "DemoShape", "generate_demo", "load_demo"]

DAY = 86_400.0
PLANS = (("free", 0.70), ("starter", 0.15), ("pro", 0.10), ("enterprise", 0.05))
PLAN_MRR = {"starter": 2_900, "pro": 9_900, "enterprise": 49_900}
CHANNELS = (("seo", 0.30), ("paid", 0.25), ("referral", 0.15), ("organic", 0.20), ("social", 0.10))
INTEGRATIONS = ("shopify", "gmail", "slack", "stripe", "hubspot")
PAGES = ("dashboard", "workflows", "settings", "billing", "reports", "integrations")


@dataclass(frozen=True, slots=True)
class DemoShape:
    """How much data: signups over `days` days ending at `now`; a launch-day spike."""

    now: datetime
    users: int = 1_500
    days: int = 60
    seed: int = 7
    launch_days_ago: int = 12


@dataclass(frozen=True, slots=True)
class DemoLoad:
    """What loading the demo did."""

    events: int
    accepted: int
    duplicate: int
    rejected: int
    first_day: date
    last_day: date
    visible: bool


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    x = rng.random()
    for value, weight in weighted:
        x -= weight
        if x < 0:
            return value
    return weighted[-1][0]


def generate_demo(shape: DemoShape) -> list[ingest_pb2.Event]:
    """Every demo event up to `shape.now`, in time order; ids stable for a given day."""
    today = shape.now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = (today - timedelta(days=shape.days - 1)).timestamp()
    end = today.timestamp() + DAY
    launch = today.timestamp() - shape.launch_days_ago * DAY
    prefix = f"demo-{today:%Y%m%d}-"
    rows = sorted(_events(shape, start, end, launch), key=lambda r: r[1])
    cutoff = shape.now.timestamp()
    events: list[ingest_pb2.Event] = []
    for n, (name, ts, user, org, props) in enumerate(rows):
        if ts > cutoff:
            continue
        event = ingest_pb2.Event(event_id=f"{prefix}{n}", event=name, user_id=user, org_id=org)
        event.timestamp.CopyFrom(to_timestamp(ts))
        if props:
            event.properties_json = json.dumps(props, separators=(",", ":"))
        events.append(event)
    return events


Row = tuple[str, float, str, str, dict[str, Any]]


def _events(shape: DemoShape, start: float, end: float, launch: float) -> Iterator[Row]:
    rng = random.Random(shape.seed)
    orgs: dict[str, tuple[float, str]] = {}
    n_orgs = max(1, shape.users // 3)
    for u in range(shape.users):
        user = f"user-{u:04d}"
        # Growth: later days see more signups; the launch day a burst of them.
        if rng.random() < 0.06:
            signup = launch + rng.uniform(0, DAY)
            channel = "social"
        else:
            signup = start + shape.days * DAY * (rng.random() ** 0.7)
            channel = _pick(rng, CHANNELS)
        plan = _pick(rng, PLANS)
        org = f"org-{rng.randrange(n_orgs):03d}" if rng.random() < 0.85 else ""
        if org and (org not in orgs or signup < orgs[org][0]):
            orgs[org] = (signup, plan)
        yield "user.signup", signup, user, org, {"plan": plan, "channel": channel}
        engaged = rng.random()
        if rng.random() < 0.65:
            t = signup + rng.expovariate(1 / 1800)
            yield "integration.connected", t, user, org, {"integration": rng.choice(INTEGRATIONS)}
        workflows: list[str] = []
        if rng.random() < 0.45 + 0.4 * engaged:
            for w in range(1 + int(engaged * 2.5)):
                t = signup + rng.expovariate(1 / (0.5 * DAY))
                wid = f"{user}-wf{w}"
                workflows.append(wid)
                yield "workflow.created", t, user, org, {"workflow_id": wid}
        lifetime = rng.expovariate(1 / (4 + 40 * engaged))
        k = 0
        while True:
            day = signup + k * DAY
            if day >= end or k > lifetime:
                break
            if rng.random() < 0.2 + 0.6 * engaged:
                for _ in range(rng.randrange(1, 5)):
                    t = day + rng.uniform(0, DAY)
                    yield "page.view", t, user, org, {"page": rng.choice(PAGES)}
                for wid in workflows:
                    if rng.random() < 0.6:
                        t = day + rng.uniform(0, DAY)
                        status = "success" if rng.random() < 0.93 else "failed"
                        yield "workflow.run", t, user, org, {"status": status, "workflow_id": wid}
            k += 1 + int(rng.expovariate(1 / (1 + 3 * (1 - engaged))))
    yield from _billing(rng, orgs, end)
    for d in range(shape.days):
        for channel in ("paid", "social", "seo"):
            t = start + d * DAY + 12 * 3600
            yield (
                "marketing.spend",
                t,
                "",
                "",
                {
                    "channel": channel,
                    "amount": int(rng.uniform(5_000, 40_000)),
                },
            )


def _billing(rng: random.Random, orgs: dict[str, tuple[float, str]], end: float) -> Iterator[Row]:
    for org, (first, plan) in sorted(orgs.items()):
        paid = plan if plan != "free" else ("starter" if rng.random() < 0.25 else "")
        if not paid:
            continue
        t = first + rng.expovariate(1 / (6 * DAY))
        mrr = PLAN_MRR[paid]
        seq = 0
        while t < end:
            seq += 1
            name = "subscription.started" if seq == 1 else "subscription.changed"
            yield name, t, "", org, {"plan": paid, "mrr": mrr}
            t += rng.uniform(12, 30) * DAY
            r = rng.random()
            if r < 0.1:
                if t < end:
                    yield "subscription.canceled", t, "", org, {}
                break
            if r < 0.35:
                mrr = int(mrr * rng.choice((0.5, 1.5, 2)))


async def load_demo(
    config: ClientConfig,
    shape: DemoShape,
    *,
    batch_size: int = 1_000,
    concurrency: int = 4,
    wait_seconds: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> DemoLoad:
    """Send the demo events, then wait until metrics has projected them."""
    events = generate_demo(shape)
    totals = {"accepted": 0, "duplicate": 0, "rejected": 0}
    slots = asyncio.Semaphore(concurrency)
    async with AsyncIngestClient(config) as ingest:

        async def send(batch: list[ingest_pb2.Event]) -> None:
            async with slots:
                response = await ingest.track(batch)
            totals["accepted"] += response.accepted
            totals["duplicate"] += response.duplicate
            totals["rejected"] += response.rejected
            if on_progress is not None:
                on_progress(len(batch))

        async with asyncio.TaskGroup() as group:
            for i in range(0, len(events), batch_size):
                group.create_task(send(events[i : i + batch_size]))

    first = datetime.fromtimestamp(events[0].timestamp.seconds, UTC).date()
    last = datetime.fromtimestamp(events[-1].timestamp.seconds, UTC).date()
    stored = len(events) - totals["rejected"]
    visible = await _wait_visible(config, first, last, stored, wait_seconds)
    return DemoLoad(len(events), first_day=first, last_day=last, visible=visible, **totals)


async def _wait_visible(
    config: ClientConfig, first: date, last: date, stored: int, wait_seconds: float
) -> bool:
    """Poll the event count of the range until it covers what was stored (or time is up)."""
    request = trend_pb2.TrendRequest(from_date=first.isoformat(), to_date=last.isoformat())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    async with AsyncMetricsClient(config) as metrics:
        while True:
            response = await metrics.trend(request)
            total = sum(s.total for s in response.series if s.HasField("total"))
            if total >= stored:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.25)
