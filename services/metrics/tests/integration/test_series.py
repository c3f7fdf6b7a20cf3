"""Anomalies and Forecast through gRPC equal the references on generated event sets."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from northstar.metrics.v1 import series_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev
from ..reference_series import anomalies as reference_anomalies
from ..reference_series import day_of, ols_forecast
from ..reference_series import series as reference_series
from .conftest import MetricsUnderTest, auth

START = date(2026, 3, 2)
WEEK = [3, 9, 4, 7, 12, 1, 0]  # events per weekday, Monday first
US = 1_000_000
KINDS = {
    "dau": series_pb2.DAILY_SERIES_DAU,
    "signups": series_pb2.DAILY_SERIES_SIGNUPS,
    "workflow_runs": series_pb2.DAILY_SERIES_WORKFLOW_RUNS,
    "error_rate": series_pb2.DAILY_SERIES_ERROR_RATE,
    "mrr": series_pb2.DAILY_SERIES_MRR,
    "event_count": series_pb2.DAILY_SERIES_EVENT_COUNT,
}


def at(day: date, seconds: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + seconds) * US


def generated_events(seed: int, n_days: int = 64) -> list[Ev]:
    """A product's days: signups (some twice, some never), views, runs, subscriptions."""
    rng = random.Random(seed)
    events: list[Ev] = []
    ids = iter(range(1_000_000))

    def add(event: str, user: str, org: str, day: date, props: dict[str, object]) -> None:
        seconds = rng.choice([0, 1, 43_200, 86_399, rng.randrange(86_400)])
        events.append(Ev(f"e{next(ids)}", event, user, org, at(day, seconds), json.dumps(props)))

    for u in range(30):
        user = f"u{u}"
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            signup_day = START + timedelta(days=rng.randrange(n_days))
            add("user.signup", user, f"o{u % 5}", signup_day, {"plan": "free"})
    for i in range(n_days):
        day = START + timedelta(days=i)
        views = rng.randrange(3, 12) + (40 if i in (45, 52) else 0)
        for _ in range(views):
            add("page.view", f"u{rng.randrange(30)}", "", day, {})
        for _ in range(rng.randrange(0, 6)):
            status = rng.choice(["success", "success", "failed", None, "bogus"])
            add(
                "workflow.run",
                f"u{rng.randrange(30)}",
                f"o{rng.randrange(5)}",
                day,
                {} if status is None else {"status": status},
            )
        if rng.random() < 0.3:
            event = rng.choice(
                ["subscription.started", "subscription.changed", "subscription.canceled"]
            )
            mrr = rng.choice([1000, 2500, 0, -5, 12.5, 4000])
            add(event, "", f"o{rng.randrange(5)}", day, {"mrr": mrr})
        if rng.random() < 0.2:
            add("marketing.spend", "", "", day, {"amount": 100})
    # Repeated ids with other content: the first stored stands.
    for e in rng.sample(events, 15):
        events.append(Ev(e.event_id, "page.view", "intruder", "", e.timestamp_us, "{}"))
    rng.shuffle(events)  # late arrivals: the log order is not the time order
    return events


async def anomalies_call(
    m: MetricsUnderTest, tenant: str, request: series_pb2.AnomaliesRequest, position: int
) -> series_pb2.AnomaliesResponse:
    async def caught_up() -> series_pb2.AnomaliesResponse:
        answer = await m.stub.Anomalies(request, metadata=auth(tenant), timeout=20)
        assert answer.log_position >= position
        return answer

    return await assert_eventually(caught_up, timeout=60)


async def forecast_call(
    m: MetricsUnderTest, tenant: str, request: series_pb2.ForecastRequest, position: int
) -> series_pb2.ForecastResponse:
    async def caught_up() -> series_pb2.ForecastResponse:
        answer = await m.stub.Forecast(request, metadata=auth(tenant), timeout=20)
        assert answer.log_position >= position
        return answer

    return await assert_eventually(caught_up, timeout=60)


def selector(kind: str) -> series_pb2.SeriesSelector:
    return series_pb2.SeriesSelector(
        series=KINDS[kind], event_name="page.view" if kind == "event_count" else ""
    )


async def test_anomalies_of_every_series_equal_the_reference(metrics: MetricsUnderTest) -> None:
    tenant = "t150"
    events = generated_events(7)
    position = await metrics.append(tenant, events)
    start_day = min(day_of(e.timestamp_us) for e in events)
    first, last = START + timedelta(days=10), START + timedelta(days=70)
    for kind in KINDS:
        for z, r in ((3.0, None), (1.5, 0.3)):
            request = series_pb2.AnomaliesRequest(
                selector=selector(kind),
                from_date=first.isoformat(),
                to_date=last.isoformat(),
                z_threshold=z,
            )
            if r is not None:
                request.relative_threshold = r
            answer = await anomalies_call(metrics, tenant, request, position)
            values = reference_series(
                events, kind, first - timedelta(days=28), last, name="page.view"
            )
            expected, judged = reference_anomalies(
                values, first, last, Fraction(str(z)), None if r is None else Fraction(str(r))
            )
            assert answer.days_judged == judged, kind
            assert answer.series_start_date == start_day.isoformat()
            assert [a.date for a in answer.anomalies] == [e.day.isoformat() for e in expected], (
                kind,
                z,
            )
            for got, want in zip(answer.anomalies, expected, strict=True):
                assert got.value == float(want.value)
                assert got.baseline_mean == float(want.mean)
                assert got.baseline_days == want.n
                assert got.deviation == float(want.value - want.mean)
                assert got.baseline_stddev == pytest.approx(math.sqrt(want.variance))
                rules = []
                if want.z_rule:
                    rules.append(series_pb2.ANOMALY_RULE_Z_SCORE)
                if want.relative_rule:
                    rules.append(series_pb2.ANOMALY_RULE_RELATIVE)
                assert list(got.rules) == rules
                assert got.direction == (
                    series_pb2.ANOMALY_DIRECTION_SPIKE
                    if want.value > want.mean
                    else series_pb2.ANOMALY_DIRECTION_DROP
                )
                if want.variance == 0:
                    assert got.infinite_z and math.isinf(got.z)
                else:
                    assert got.z == pytest.approx(
                        float(want.value - want.mean) / math.sqrt(want.variance)
                    )


async def test_series_start_days_before_are_absent_not_zero(metrics: MetricsUnderTest) -> None:
    tenant = "t151"
    first_day = START + timedelta(days=20)
    # 14 quiet days of one view, then a spike; the 28 days before first_day do not exist.
    events = [
        Ev(f"v{i}", "page.view", "u1", "", at(first_day + timedelta(days=i), 60)) for i in range(14)
    ]
    events += [
        Ev(f"s{i}", "page.view", "u1", "", at(first_day + timedelta(days=14), i)) for i in range(5)
    ]
    position = await metrics.append(tenant, events)
    answer = await anomalies_call(
        metrics,
        tenant,
        series_pb2.AnomaliesRequest(
            selector=selector("event_count"),
            from_date=START.isoformat(),
            to_date=(first_day + timedelta(days=20)).isoformat(),
        ),
        position,
    )
    assert answer.series_start_date == first_day.isoformat()
    assert answer.z_threshold == 3.0 and not answer.HasField("relative_threshold")
    # Day 14 has 14 baseline values (all 1): s = 0, x = 5 -> infinite z. Days 15..20 are 0
    # against baselines with s > 0.
    spike = answer.anomalies[0]
    assert (spike.date, spike.value, spike.baseline_days, spike.infinite_z, spike.z) == (
        (first_day + timedelta(days=14)).isoformat(),
        5.0,
        14,
        True,
        math.inf,
    )
    values = reference_series(
        events,
        "event_count",
        START - timedelta(days=28),
        first_day + timedelta(days=20),
        "page.view",
    )
    expected, judged = reference_anomalies(values, START, first_day + timedelta(days=20))
    assert answer.days_judged == judged == 7
    assert [a.date for a in answer.anomalies] == [e.day.isoformat() for e in expected]


async def test_forecast_continues_a_line_and_a_weekly_pattern_exactly(
    metrics: MetricsUnderTest,
) -> None:
    linear, weekly = "t152", "t153"
    line = []
    pattern = []
    for i in range(45):
        day = START + timedelta(days=i)
        line += [Ev(f"l{i}-{k}", "lead", "", "", at(day, k)) for k in range(5 + 2 * i)]
        count = WEEK[day.weekday()]
        pattern += [Ev(f"w{i}-{k}", "lead", "", "", at(day, k)) for k in range(count)]
    p1 = await metrics.append(linear, line, per_message=50)
    request = series_pb2.ForecastRequest(
        selector=series_pb2.SeriesSelector(
            series=series_pb2.DAILY_SERIES_EVENT_COUNT, event_name="lead"
        ),
        horizon_days=10,
    )
    answer = await forecast_call(metrics, linear, request, p1)
    last = START + timedelta(days=44)
    assert answer.as_of_date == last.isoformat()
    assert [(p.date, p.value) for p in answer.points] == [
        ((last + timedelta(days=h)).isoformat(), float(5 + 2 * (44 + h))) for h in range(1, 11)
    ]
    assert all(p.lower_95 == p.upper_95 == p.value for p in answer.points)
    assert answer.model.method == series_pb2.FORECAST_METHOD_LINEAR_TREND_WEEKLY
    assert answer.model.slope_per_day == 2.0
    assert answer.accuracy.overall.mae == 0.0
    assert answer.accuracy.origins == 28
    assert len(answer.history) == 56
    assert [h.HasField("value") for h in answer.history] == [False] * 11 + [True] * 45

    p2 = await metrics.append(weekly, pattern, per_message=50)
    request = series_pb2.ForecastRequest(
        selector=series_pb2.SeriesSelector(
            series=series_pb2.DAILY_SERIES_EVENT_COUNT, event_name="lead"
        ),
        as_of_date=last.isoformat(),
        horizon_days=21,
    )
    answer = await forecast_call(metrics, weekly, request, p2)
    assert [(p.date, p.value) for p in answer.points] == [
        (d.isoformat(), float(WEEK[d.weekday()]))
        for d in (last + timedelta(days=h) for h in range(1, 22))
    ]
    assert answer.model.slope_per_day == 0.0
    assert list(answer.model.weekday_effects) == [float(w - Fraction(sum(WEEK), 7)) for w in WEEK]


async def test_forecast_of_generated_series_equals_numpy_least_squares(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t154"
    events = generated_events(11)
    position = await metrics.append(tenant, events)
    as_of = START + timedelta(days=60)
    for kind in KINDS:
        request = series_pb2.ForecastRequest(
            selector=selector(kind), as_of_date=as_of.isoformat(), horizon_days=7, fit_days=28
        )
        answer = await forecast_call(metrics, tenant, request, position)
        values = reference_series(events, kind, as_of - timedelta(days=27), as_of, name="page.view")
        expected = ols_forecast(values, as_of, 28, 7)
        assert expected is not None, kind
        assert [p.value for p in answer.points] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert [h.value if h.HasField("value") else None for h in answer.history] == [
            None if values[d] is None else float(values[d]) for d in sorted(values)
        ]
        for p in answer.points:
            assert p.lower_95 <= p.lower_80 <= p.value <= p.upper_80 <= p.upper_95


async def test_a_tenant_without_events_gets_empty_answers(metrics: MetricsUnderTest) -> None:
    answer = await metrics.stub.Forecast(
        series_pb2.ForecastRequest(selector=selector("dau")), metadata=auth("t155"), timeout=20
    )
    assert (answer.as_of_date, list(answer.points)) == ("", [])
    anomalies = await metrics.stub.Anomalies(
        series_pb2.AnomaliesRequest(
            selector=selector("signups"), from_date="2026-01-01", to_date="2026-03-01"
        ),
        metadata=auth("t155"),
        timeout=20,
    )
    assert (list(anomalies.anomalies), anomalies.days_judged) == ([], 0)
    assert not anomalies.HasField("series_start_date")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            series_pb2.AnomaliesRequest(from_date="2026-01-01", to_date="2026-01-02"),
            "selector.series",
        ),
        (
            series_pb2.AnomaliesRequest(
                selector=series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_EVENT_COUNT),
                from_date="2026-01-01",
                to_date="2026-01-02",
            ),
            "selector.event_name",
        ),
        (
            series_pb2.AnomaliesRequest(
                selector=series_pb2.SeriesSelector(
                    series=series_pb2.DAILY_SERIES_DAU, event_name="x"
                ),
                from_date="2026-01-01",
                to_date="2026-01-02",
            ),
            "selector.event_name",
        ),
        (
            series_pb2.AnomaliesRequest(
                selector=series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_DAU),
                from_date="2026-01-01",
                to_date="2026-01-02",
                z_threshold=0,
            ),
            "z_threshold",
        ),
        (
            series_pb2.AnomaliesRequest(
                selector=series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_DAU),
                from_date="2026-01-01",
                to_date="2026-01-02",
                relative_threshold=-0.5,
            ),
            "relative_threshold",
        ),
        (
            series_pb2.AnomaliesRequest(
                selector=series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_DAU),
                from_date="2026-01-03",
                to_date="2026-01-02",
            ),
            "to_date",
        ),
        (
            series_pb2.ForecastRequest(
                selector=series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_DAU),
                horizon_days=366,
            ),
            "horizon_days",
        ),
        (
            series_pb2.ForecastRequest(
                selector=series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_DAU),
                fit_days=13,
            ),
            "fit_days",
        ),
        (
            series_pb2.ForecastRequest(
                selector=series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_DAU),
                as_of_date="2026-1-1",
            ),
            "as_of_date",
        ),
    ],
)
async def test_invalid_requests_name_the_field(
    metrics: MetricsUnderTest,
    request_: series_pb2.AnomaliesRequest | series_pb2.ForecastRequest,
    field: str,
) -> None:
    call = (
        metrics.stub.Anomalies
        if isinstance(request_, series_pb2.AnomaliesRequest)
        else metrics.stub.Forecast
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(request_, metadata=auth("t156"), timeout=20)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    assert fields == [field]
