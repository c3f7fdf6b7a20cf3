"""The metrics service as the evaluator reads it: a rule's series as an Observation.

Calls (northstar_runtime.upstream) carry the alerts service's `service`-scope key and
`x-northstar-tenant` (the rule's tenant), each with its own deadline, retried with jittered
backoff on UNAVAILABLE and DEADLINE_EXCEEDED only; identical reads within `cache_s` seconds
share one call. Any failure yields an Observation with `error` set, which the evaluator
records as an ERROR evaluation and the state machine never takes for a resolve.

What is read, for a rule evaluated at time `at` (readings in docs/spec-readings.md):

- a KPI: its value as of `at`'s UTC day (Kpis, which uses complete windows before it); the
  previous period for relative change is the KPI as of 30 days earlier (signup-window
  KPIs) or as of the previous month (monthly KPIs);
- a daily metric: the last complete UTC day (the day before `at`'s) and its previous day
  (ActiveUsers, Trend day buckets, Workflows; Forecast's history for signups and MRR); for
  an anomaly rule also the values present in the 28 days before it as the baseline
  (Forecast's history for the daily series of metrics.md, ActiveUsers for wau, mau, mao);
- an hourly metric: the last complete UTC hour, the hour before, and the 28 before it
  (Trend hour buckets: events of a name, workflow runs, signups, active users).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar, cast

import grpc
import structlog
from google.protobuf.message import Message

from northstar.metrics.v1 import (
    activation_pb2,
    kpis_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
    series_pb2,
    trend_pb2,
)
from northstar_alerts.domain.rules import Anomaly, RelativeChange, Rule
from northstar_alerts.domain.state import Observation
from northstar_alerts.settings import AlertsSettings
from northstar_runtime.upstream import ClientTls, TenantCalls, open_channel

log = structlog.get_logger("northstar.alerts.metrics")
R = TypeVar("R", bound=Message)
T = TypeVar("T")

BASELINE_DAYS = 28
_MONTHLY_KPIS = ("ltv_to_cac", "mrr_growth_mom", "churn_rate", "viral_coefficient")
_DAILY_SERIES = {
    "dau": series_pb2.DAILY_SERIES_DAU,
    "signups": series_pb2.DAILY_SERIES_SIGNUPS,
    "workflow_runs": series_pb2.DAILY_SERIES_WORKFLOW_RUNS,
    "error_rate": series_pb2.DAILY_SERIES_ERROR_RATE,
    "mrr": series_pb2.DAILY_SERIES_MRR,
    "event_count": series_pb2.DAILY_SERIES_EVENT_COUNT,
}
_ACTIVE_USERS = {
    "dau": metrics_pb2.ACTIVE_USERS_METRIC_DAU,
    "wau": metrics_pb2.ACTIVE_USERS_METRIC_WAU,
    "mau": metrics_pb2.ACTIVE_USERS_METRIC_MAU,
    "mao": metrics_pb2.ACTIVE_USERS_METRIC_MAO,
}
# Hourly series: (event name or "" for every event, measure); the event_count one is the rule's.
_HOURLY = {
    "event_count": ("", trend_pb2.TREND_MEASURE_EVENT_COUNT),
    "workflow_runs": ("workflow.run", trend_pb2.TREND_MEASURE_EVENT_COUNT),
    "signups": ("user.signup", trend_pb2.TREND_MEASURE_UNIQUE_USERS),
    "dau": ("", trend_pb2.TREND_MEASURE_UNIQUE_USERS),
}


def _day(at: float) -> dt.date:
    return dt.datetime.fromtimestamp(at, dt.UTC).date()


def previous_kpi_day(kpi: str, day: dt.date) -> dt.date:
    """The as-of day of a KPI's previous period."""
    if kpi in _MONTHLY_KPIS:
        # Any day of the previous month: its last complete month is the one before.
        return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    return day - dt.timedelta(days=30)


class ReadCache:
    """Answers of identical reads, shared for `ttl_s` seconds.

    Rules of one tenant watching the same KPIs or series at the same time (the five default
    rules all read one Kpis answer) cost one call; a call in flight is shared by everyone
    asking meanwhile. Failures are not kept. At most `max_entries` answers are held, the
    oldest dropped first; `ttl_s` 0 turns sharing off.
    """

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """The answer kept for `key`, or `load()`'s (kept for the next callers)."""
        if self._ttl_s <= 0:
            return await load()
        now = self._clock()
        kept = self._entries.get(key)
        if kept is not None and kept[0] > now:
            future = kept[1]
        else:
            future = asyncio.ensure_future(load())
            self._entries.pop(key, None)
            self._entries[key] = (now + self._ttl_s, future)
            while len(self._entries) > self._max_entries:
                del self._entries[next(iter(self._entries))]
        try:
            # Shielded: one caller's deadline must not cancel the read the others wait for.
            return cast(T, await asyncio.shield(future))
        except Exception:
            if self._entries.get(key, (0.0, None))[1] is future:
                del self._entries[key]
            raise


class MetricsClient:
    """Reads rules' series from the metrics service for any tenant."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        api_key: str,
        *,
        deadline_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.1,
        cache_s: float = 0.0,
    ) -> None:
        self._channel = channel
        self._stub = metrics_pb2_grpc.MetricsServiceStub(channel)
        self._calls = TenantCalls(
            api_key, deadline_s=deadline_s, attempts=attempts, backoff_s=backoff_s
        )
        self._cache = ReadCache(cache_s)

    @classmethod
    def from_settings(cls, s: AlertsSettings) -> MetricsClient:
        """A client of the metrics service the settings name."""
        tls = ClientTls(
            enabled=s.metrics_service_tls,
            ca_file=s.metrics_service_tls_ca_file,
            cert_file=s.metrics_service_tls_cert_file,
            key_file=s.metrics_service_tls_key_file,
        )
        return cls(
            open_channel(s.metrics_service_address, tls),
            s.metrics_service_api_key,
            deadline_s=s.metrics_service_deadline_seconds,
            attempts=s.metrics_service_attempts,
            cache_s=s.metrics_service_cache_seconds,
        )

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    async def _call(self, call: Callable[..., Awaitable[R]], request: Message, tenant: str) -> R:
        # Each RPC has its own request type: the type and the bytes name the read.
        key = (type(request).__name__, tenant, request.SerializeToString(deterministic=True))
        return await self._cache.get(key, lambda: self._calls(call, request, tenant))

    async def observe(self, rule: Rule, at: float) -> Observation:
        """The rule's series as of `at`; on any failure, an Observation with `error`."""
        try:
            if rule.series.kind == "kpi":
                return await self._kpi(rule, at)
            if rule.series.granularity == "hour":
                return await self._hourly(rule, at)
            return await self._daily(rule, at)
        except grpc.aio.AioRpcError as e:
            log.warning(
                "metrics read failed", tenant=rule.tenant, rule_id=rule.rule_id, code=e.code().name
            )
            return Observation(at=at, error=f"metrics {e.code().name}: {e.details()}")

    async def _kpi_value(self, tenant: str, name: str, day: dt.date) -> float | None:
        response: kpis_pb2.KpisResponse = await self._call(
            self._stub.Kpis, kpis_pb2.KpisRequest(as_of_date=day.isoformat()), tenant
        )
        for kpi in response.kpis:
            if kpi.name == name:
                return kpi.value if kpi.HasField("value") else None
        return None

    async def _kpi(self, rule: Rule, at: float) -> Observation:
        name, day = rule.series.name, _day(at)
        value = await self._kpi_value(rule.tenant, name, day)
        previous = None
        if isinstance(rule.condition, RelativeChange):
            previous = await self._kpi_value(rule.tenant, name, previous_kpi_day(name, day))
        return Observation(at=at, value=value, previous=previous)

    async def _daily(self, rule: Rule, at: float) -> Observation:
        day = _day(at) - dt.timedelta(days=1)
        name = rule.series.name
        anomaly = isinstance(rule.condition, Anomaly)
        # An anomaly needs its 28-day baseline with the series' own absent days (Forecast's
        # history); a threshold or a relative change needs the day and the one before,
        # read from the cheaper per-day answers where metrics has one.
        start = day - dt.timedelta(days=BASELINE_DAYS if anomaly else 1)
        first, last = start.isoformat(), day.isoformat()
        values: dict[str, float | None]
        if name in _ACTIVE_USERS and not (anomaly and name == "dau"):
            au: metrics_pb2.ActiveUsersResponse = await self._call(
                self._stub.ActiveUsers,
                metrics_pb2.ActiveUsersRequest(
                    from_date=first, to_date=last, metric=_ACTIVE_USERS[name]
                ),
                rule.tenant,
            )
            values = {d.date: d.value if d.HasField("value") else None for d in au.days}
        elif name == "event_count" and not anomaly:
            values = await self._trend(
                rule.tenant,
                trend_pb2.TrendRequest(
                    from_date=first,
                    to_date=last,
                    interval=trend_pb2.TREND_INTERVAL_DAY,
                    event=rule.series.event_name,
                    measure=trend_pb2.TREND_MEASURE_EVENT_COUNT,
                ),
            )
        elif name in ("workflow_runs", "error_rate") and not anomaly:
            wf: activation_pb2.WorkflowsResponse = await self._call(
                self._stub.Workflows,
                activation_pb2.WorkflowsRequest(from_date=first, to_date=last),
                rule.tenant,
            )
            values = {
                p.period_start: float(p.runs)
                if name == "workflow_runs"
                else (p.error_rate if p.HasField("error_rate") else None)
                for p in wf.periods
            }
        else:
            selector = series_pb2.SeriesSelector(
                series=_DAILY_SERIES[name],
                event_name=rule.series.event_name if name == "event_count" else "",
            )
            fc: series_pb2.ForecastResponse = await self._call(
                self._stub.Forecast,
                series_pb2.ForecastRequest(
                    selector=selector,
                    as_of_date=last,
                    horizon_days=1,
                    fit_days=BASELINE_DAYS + 1,
                ),
                rule.tenant,
            )
            values = {v.date: v.value if v.HasField("value") else None for v in fc.history}
        keys = [(start + dt.timedelta(days=i)).isoformat() for i in range((day - start).days + 1)]
        return _observation(rule, at, [values.get(k) for k in keys])

    async def _trend(self, tenant: str, request: trend_pb2.TrendRequest) -> dict[str, float | None]:
        """Each bucket's value of a trend without breakdown; a missing bucket is 0."""
        response: trend_pb2.TrendResponse = await self._call(self._stub.Trend, request, tenant)
        points: dict[str, float | None] = {b.start: 0.0 for b in response.buckets}
        for series in response.series[:1]:
            points.update(
                {p.bucket: p.value if p.HasField("value") else None for p in series.points}
            )
        return points

    async def _hourly(self, rule: Rule, at: float) -> Observation:
        name = rule.series.name
        if name not in _HOURLY:
            return Observation(at=at, error=f"metrics has no hourly {name}")
        event, measure = _HOURLY[name]
        hour = dt.datetime.fromtimestamp(at - at % 3600 - 3600, dt.UTC)
        start = hour - dt.timedelta(hours=BASELINE_DAYS)
        points = await self._trend(
            rule.tenant,
            trend_pb2.TrendRequest(
                from_date=start.date().isoformat(),
                to_date=hour.date().isoformat(),
                interval=trend_pb2.TREND_INTERVAL_HOUR,
                event=rule.series.event_name if name == "event_count" else event,
                measure=measure,
            ),
        )
        keys = [
            (start + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H:00:00Z")
            for i in range(BASELINE_DAYS + 1)
        ]
        return _observation(rule, at, [points.get(k) for k in keys])


def _observation(rule: Rule, at: float, values: Sequence[float | None]) -> Observation:
    """From the baseline periods then the current one: value, previous and baseline."""
    *before, value = values
    baseline: tuple[float, ...] = ()
    if isinstance(rule.condition, Anomaly):
        baseline = tuple(v for v in before if v is not None)
    return Observation(at=at, value=value, previous=before[-1], baseline=baseline)
