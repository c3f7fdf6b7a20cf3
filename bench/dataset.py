"""`python -m bench.dataset`: a seeded, realistic SaaS event set (make dataset).

About 200k users over 365 days and ~10M events by default: signups with plan
and channel, organizations, integrations, workflows created and run (with
failures), page views, subscriptions that start, change and cancel, daily
marketing spend per channel, and experiment exposures. The same seed gives
the same events, byte for byte, so benchmarks and cross-checks are repeatable.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

US = 1_000_000
DAY_US = 86_400 * US
PLANS = (("free", 0.70), ("starter", 0.15), ("pro", 0.10), ("enterprise", 0.05))
PLAN_MRR = {"starter": 2_900, "pro": 9_900, "enterprise": 49_900}
CHANNELS = (("seo", 0.30), ("paid", 0.25), ("referral", 0.15), ("organic", 0.20), ("social", 0.10))
INTEGRATIONS = ("shopify", "wave", "gmail", "slack", "stripe", "hubspot")
PAGES = ("dashboard", "workflows", "settings", "billing", "reports", "integrations")


@dataclass(frozen=True)
class Shape:
    """How big a data set: users, days and the last day."""

    users: int = 200_000
    days: int = 365
    end: datetime = datetime(2026, 10, 31, tzinfo=UTC)
    seed: int = 42


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    x = rng.random()
    for value, weight in weighted:
        x -= weight
        if x < 0:
            return value
    return weighted[-1][0]


def _event(
    event_id: str, name: str, ts_us: int, user: str = "", org: str = "", **props: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event": name,
        "user_id": user,
        "org_id": org,
        "timestamp_us": ts_us,
        "properties": props,
    }


def generate(shape: Shape) -> Iterator[dict[str, Any]]:
    """Every event of the data set, user by user, then orgs' billing, then spend."""
    rng = random.Random(shape.seed)
    start_us = int((shape.end - timedelta(days=shape.days - 1)).timestamp()) * US
    end_us = int(shape.end.timestamp()) * US + DAY_US
    orgs: dict[str, tuple[int, str, str]] = {}  # org -> (first signup ts, plan, channel)
    n_orgs = max(1, shape.users // 3)
    for u in range(shape.users):
        user = f"u{u:07d}"
        # Growth: later days see more signups (density rising linearly).
        day = int(shape.days * (rng.random() ** 0.7))
        signup_us = start_us + day * DAY_US + rng.randrange(DAY_US)
        plan = _pick(rng, PLANS)
        channel = _pick(rng, CHANNELS)
        org = f"o{rng.randrange(n_orgs):06d}" if rng.random() < 0.8 else ""
        if org and org not in orgs:
            orgs[org] = (signup_us, plan, channel)
        yield _event(f"{user}-s", "user.signup", signup_us, user, org, plan=plan, channel=channel)
        n = 0
        engaged = rng.random()
        if rng.random() < 0.6:
            n += 1
            t = signup_us + int(rng.expovariate(1 / 3600) * US)
            yield _event(
                f"{user}-i",
                "integration.connected",
                t,
                user,
                org,
                integration=rng.choice(INTEGRATIONS),
            )
        workflows = []
        if rng.random() < 0.5 + 0.3 * engaged:
            for w in range(1 + int(engaged * 3)):
                t = signup_us + int(rng.expovariate(1 / (2 * 86_400)) * US)
                wid = f"{user}-w{w}"
                workflows.append(wid)
                yield _event(f"{wid}-c", "workflow.created", t, user, org, workflow_id=wid)
        # Activity decays: the chance to come back on day k after signup.
        lifetime = rng.expovariate(1 / (5 + 120 * engaged))
        k = 0
        while True:
            t_day = signup_us + k * DAY_US
            if t_day >= end_us or k > lifetime:
                break
            if rng.random() < 0.15 + 0.6 * engaged:
                for _ in range(rng.randrange(2, 8)):
                    n += 1
                    t = t_day + rng.randrange(DAY_US)
                    if t < end_us:
                        yield _event(
                            f"{user}-{n}", "page.view", t, user, org, page=rng.choice(PAGES)
                        )
                for wid in workflows:
                    if rng.random() < 0.5:
                        n += 1
                        t = t_day + rng.randrange(DAY_US)
                        if t < end_us:
                            status = "success" if rng.random() < 0.92 else "failed"
                            yield _event(
                                f"{user}-{n}",
                                "workflow.run",
                                t,
                                user,
                                org,
                                status=status,
                                workflow_id=wid,
                            )
            k += 1 + int(rng.expovariate(1 / (1 + 6 * (1 - engaged))))
    yield from _billing(rng, orgs, end_us)
    yield from _spend(rng, start_us, shape.days)


def _billing(
    rng: random.Random, orgs: dict[str, tuple[int, str, str]], end_us: int
) -> Iterator[dict[str, Any]]:
    for org, (first_us, plan, _) in sorted(orgs.items()):
        paid_plan = plan if plan != "free" else ("starter" if rng.random() < 0.12 else "")
        if not paid_plan:
            continue
        t = first_us + int(rng.expovariate(1 / (10 * 86_400)) * US)
        seq = 0
        mrr = PLAN_MRR[paid_plan]
        while t < end_us:
            seq += 1
            yield _event(
                f"{org}-b{seq}",
                "subscription.started" if seq == 1 else "subscription.changed",
                t,
                "",
                org,
                plan=paid_plan,
                mrr=mrr,
            )
            t += int(rng.uniform(20, 90) * DAY_US)
            r = rng.random()
            if r < 0.12:
                if t < end_us:
                    yield _event(f"{org}-b{seq}x", "subscription.canceled", t, "", org)
                break
            if r < 0.35:
                mrr = int(mrr * rng.choice((0.5, 1.5, 2)))


def _spend(rng: random.Random, start_us: int, days: int) -> Iterator[dict[str, Any]]:
    for d in range(days):
        for channel in ("paid", "social", "seo"):
            amount = int(rng.uniform(5_000, 60_000))
            yield _event(
                f"spend-{d}-{channel}",
                "marketing.spend",
                start_us + d * DAY_US + 12 * 3600 * US,
                channel=channel,
                amount=amount,
            )


def main(argv: list[str] | None = None) -> int:
    """Write the data set as gzipped JSON Lines and print where and how many."""
    parser = argparse.ArgumentParser(prog="bench.dataset", description=__doc__)
    parser.add_argument("--users", type=int, default=Shape.users)
    parser.add_argument("--days", type=int, default=Shape.days)
    parser.add_argument("--seed", type=int, default=Shape.seed)
    parser.add_argument("--out", type=Path, default=Path("bench/results/dataset"))
    args = parser.parse_args(argv)
    shape = Shape(users=args.users, days=args.days, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"events-u{shape.users}-d{shape.days}-s{shape.seed}.jsonl.gz"
    count = 0
    with gzip.open(path, "wb", compresslevel=3) as f:
        for e in generate(shape):
            f.write(orjson.dumps(e) + b"\n")
            count += 1
            if count % 1_000_000 == 0:
                sys.stderr.write(f"{count:,} events\n")
    sys.stdout.write(f"{count:,} events -> {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
