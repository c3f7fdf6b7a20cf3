"""A report's sections, gathered from the services that own the numbers, over gRPC.

Every call reads as the report's tenant (a `service`-scope key and `x-northstar-tenant`,
northstar_runtime.upstream), each with the deadline; transient failures are retried a
bounded number of times. Sections are gathered concurrently, and so are the calls inside
one section where they do not depend on each other. A section whose call fails (any way:
UNAVAILABLE, deadline, a refusal, a bug) becomes a SectionError naming the service and why;
the others are still filled. Report.summary and Report.sections are left to the caller.

What each section asks (readings in docs/spec-readings.md, "Reports: sections"):

- KEY_METRICS: ActiveUsers, Retention (cohort sizes: signups per period, exactly as the
  spec counts them), Workflows and Revenue, each once over the sparkline's whole span
  (domain/key_metrics.py computes the numbers);
- ALIGNMENT and PRIORITY_ACTIONS: one Kpis as of the day after the period, shared;
- ALERTS: ListRules, then every rule's AlertHistory (domain/period_activity.py);
- EXPERIMENTS: ListExperiments, then GetResults of those running at the window's end (as of
  its last microsecond) and of those concluded inside it (as of their stop), frequentist
  with the default options; a failing GetResults is the entry's `error`;
- RETENTION: week cohorts, ON_DAY, the 8 cohort weeks ending with the period's last week,
  8 periods, as of the period's last day;
- FUNNEL: the schedule's steps and window (defaults: signup, integration connected,
  workflow created, successful workflow run; 7 days) over the period's dates (no
  subscription step: `subscription.*` events are the org's and need no `user_id`, and a
  funnel counts only events that have one);
- DATA_QUALITY: over the period's dates, the suspected bots' user ids cleared (their
  counts kept): a stored report carries no personal identifier.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import grpc
import structlog
from google.protobuf import struct_pb2

from northstar.alerts.v1 import alerts_pb2, alerts_pb2_grpc
from northstar.experiments.v1 import experiments_pb2, experiments_pb2_grpc
from northstar.metrics.v1 import (
    activation_pb2,
    filters_pb2,
    funnel_pb2,
    kpis_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
    quality_pb2,
    retention_pb2,
    revenue_pb2,
)
from northstar.reports.v1 import reports_pb2
from northstar_reports.domain.key_metrics import (
    ActiveDay,
    MetricsReadings,
    RevenueDay,
    RunCounts,
    Span,
    key_metrics,
    spark_periods,
)
from northstar_reports.domain.period_activity import (
    FIRING,
    RESOLVED,
    RUNNING,
    AlertTransition,
    ExperimentChange,
    Window,
    concluded_in,
    firing_at,
    period_window,
    status_at,
    transitions_in,
)
from northstar_runtime.upstream import ClientTls, TenantCalls, open_channel

log = structlog.get_logger("northstar.reports.sections")

Section = reports_pb2.Section
DEFAULT_FUNNEL_WINDOW_S = 7 * 86_400
PRIORITY_ACTIONS = 5
RETENTION_WEEKS = 8


def _step(event: str, **equals: str) -> filters_pb2.EventMatcher:
    return filters_pb2.EventMatcher(
        event=event,
        filters=[
            filters_pb2.PropertyFilter(
                property=name,
                operator=filters_pb2.FILTER_OPERATOR_EQUALS,
                values=[struct_pb2.Value(string_value=value)],
            )
            for name, value in equals.items()
        ],
    )


DEFAULT_FUNNEL = (
    _step("user.signup"),
    _step("integration.connected"),
    _step("workflow.created"),
    _step("workflow.run", status="success"),
)

# The service that owns each section's numbers, named in its SectionError.
_OWNER = {
    Section.SECTION_KEY_METRICS: "metrics",
    Section.SECTION_ALIGNMENT: "metrics",
    Section.SECTION_PRIORITY_ACTIONS: "metrics",
    Section.SECTION_ALERTS: "alerts",
    Section.SECTION_EXPERIMENTS: "experiments",
    Section.SECTION_RETENTION: "metrics",
    Section.SECTION_FUNNEL: "metrics",
    Section.SECTION_DATA_QUALITY: "metrics",
}

_STATUS_NAME = {
    alerts_pb2.ALERT_STATUS_FIRING: FIRING,
    alerts_pb2.ALERT_STATUS_RESOLVED: RESOLVED,
}
_CHANGE = {FIRING: reports_pb2.ALERT_CHANGE_FIRED, RESOLVED: reports_pb2.ALERT_CHANGE_RESOLVED}


@dataclass(frozen=True, slots=True)
class ReportPeriod:
    """A period as the sections read it: its dates, their unit and their instants."""

    span: Span
    weekly: bool
    window: Window

    @classmethod
    def of(cls, schedule: reports_pb2.Schedule, period: reports_pb2.Period) -> ReportPeriod:
        """The period's dates and window; ValueError for a malformed period."""
        try:
            zone = ZoneInfo(period.time_zone or schedule.time_zone or "UTC")
            span = Span(
                dt.date.fromisoformat(period.start_date), dt.date.fromisoformat(period.end_date)
            )
        except (ValueError, KeyError) as e:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"malformed period {period}: {e}") from e
        weekly = period.unit == reports_pb2.PERIOD_UNIT_WEEK
        return cls(span, weekly, period_window(span.first, span.last, zone))


def describe(service: str, error: BaseException) -> str:
    """A section's failure for people: the service, the status code and its message."""
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{service}: {error.code().name} {error.details() or ''}".rstrip()
    if isinstance(error, TimeoutError):
        return f"{service}: DEADLINE_EXCEEDED"
    return f"{service}: {type(error).__name__}: {error}"


def _day(d: dt.date) -> str:
    return d.isoformat()


class GrpcSectionSource:
    """Gathers reports' sections from metrics, experiments and alerts."""

    def __init__(
        self,
        *,
        metrics_address: str,
        experiments_address: str,
        alerts_address: str,
        service_key: str,
        deadline_s: float,
        tls: ClientTls | None = None,
        attempts: int = 2,
        concurrency: int = 16,
    ) -> None:
        self._channels = [
            open_channel(metrics_address, tls),
            open_channel(experiments_address, tls),
            open_channel(alerts_address, tls),
        ]
        self._metrics = metrics_pb2_grpc.MetricsServiceStub(self._channels[0])
        self._experiments = experiments_pb2_grpc.ExperimentsServiceStub(self._channels[1])
        self._alerts = alerts_pb2_grpc.AlertsServiceStub(self._channels[2])
        self._calls = TenantCalls(service_key, deadline_s=deadline_s, attempts=attempts)
        # Bounds the per-rule and per-experiment calls of one section in flight.
        self._concurrency = concurrency

    async def close(self) -> None:
        """Close the channels."""
        for channel in self._channels:
            await channel.close(None)

    async def gather(
        self,
        *,
        tenant: str,
        schedule: reports_pb2.Schedule,
        period: reports_pb2.Period,
        sections: Sequence[reports_pb2.Section.ValueType],
    ) -> reports_pb2.Report:
        """The asked sections of `tenant`'s report for `period`, and why any is missing.

        Sections are filled in the Report's own fields (unknown or repeated ones are asked
        once); a malformed period (dates, zone) is a ValueError, before any call.
        """
        at = ReportPeriod.of(schedule, period)
        asked = [s for s in dict.fromkeys(sections) if s in _OWNER]
        kpis: asyncio.Task[kpis_pb2.KpisResponse] | None = None
        if Section.SECTION_ALIGNMENT in asked or Section.SECTION_PRIORITY_ACTIONS in asked:
            as_of = _day(at.span.last + dt.timedelta(days=1))
            kpis = asyncio.ensure_future(
                self._calls(self._metrics.Kpis, kpis_pb2.KpisRequest(as_of_date=as_of), tenant)
            )
        report = reports_pb2.Report()

        async def key_metrics_section() -> None:
            report.key_metrics.CopyFrom(await self._key_metrics(tenant, at))

        async def alignment() -> None:
            assert kpis is not None
            answer = await asyncio.shield(kpis)
            report.alignment.CopyFrom(
                reports_pb2.AlignmentSection(as_of_date=answer.as_of_date, kpis=answer)
            )

        async def priority_actions() -> None:
            assert kpis is not None
            answer = await asyncio.shield(kpis)
            report.priority_actions.CopyFrom(
                reports_pb2.PriorityActionsSection(
                    actions=answer.priority_actions[:PRIORITY_ACTIONS]
                )
            )

        async def alerts() -> None:
            report.alerts.CopyFrom(await self._alerts_section(tenant, at))

        async def experiments() -> None:
            report.experiments.CopyFrom(await self._experiments_section(tenant, at))

        async def retention() -> None:
            report.retention.CopyFrom(await self._retention(tenant, at))

        async def funnel() -> None:
            report.funnel.CopyFrom(await self._funnel(tenant, schedule, at))

        async def data_quality() -> None:
            report.data_quality.CopyFrom(await self._data_quality(tenant, at))

        builders: dict[int, Callable[[], Awaitable[None]]] = {
            Section.SECTION_KEY_METRICS: key_metrics_section,
            Section.SECTION_ALIGNMENT: alignment,
            Section.SECTION_PRIORITY_ACTIONS: priority_actions,
            Section.SECTION_ALERTS: alerts,
            Section.SECTION_EXPERIMENTS: experiments,
            Section.SECTION_RETENTION: retention,
            Section.SECTION_FUNNEL: funnel,
            Section.SECTION_DATA_QUALITY: data_quality,
        }
        try:
            failures = await asyncio.gather(*(self._guarded(s, builders[s], tenant) for s in asked))
        finally:
            if kpis is not None and not kpis.done():  # the caller gave up: so does the read
                kpis.cancel()
        report.errors.extend(f for f in failures if f is not None)
        return report

    async def _guarded(
        self,
        section: reports_pb2.Section.ValueType,
        build: Callable[[], Awaitable[None]],
        tenant: str,
    ) -> reports_pb2.SectionError | None:
        """Build one section; its failure as a SectionError."""
        service = _OWNER[section]
        try:
            await build()
        except Exception as e:  # any failure of one section leaves the others standing
            if isinstance(e, grpc.aio.AioRpcError):
                log.warning(
                    "report section failed",
                    tenant=tenant,
                    section=Section.Name(section),
                    service=service,
                    code=e.code().name,
                )
            else:
                log.exception("report section failed", tenant=tenant, section=Section.Name(section))
            return reports_pb2.SectionError(section=section, message=describe(service, e))
        return None

    # --- metrics ----------------------------------------------------------------------

    async def _key_metrics(self, tenant: str, at: ReportPeriod) -> reports_pb2.KeyMetricsSection:
        periods = spark_periods(at.span, weekly=at.weekly)
        first, last = _day(periods[0].first), _day(periods[-1].last)
        granularity = (
            retention_pb2.COHORT_GRANULARITY_WEEK
            if at.weekly
            else retention_pb2.COHORT_GRANULARITY_DAY
        )
        runs_granularity = (
            activation_pb2.WORKFLOWS_GRANULARITY_WEEK
            if at.weekly
            else activation_pb2.WORKFLOWS_GRANULARITY_DAY
        )
        m = self._metrics
        active, cohorts, runs, revenue = await asyncio.gather(
            self._calls(
                m.ActiveUsers, metrics_pb2.ActiveUsersRequest(from_date=first, to_date=last), tenant
            ),
            # Cohort sizes are the signups per period (their first signup), as metrics.md
            # counts them; one cell per cohort keeps the answer small.
            self._calls(
                m.Retention,
                retention_pb2.RetentionRequest(
                    granularity=granularity,
                    from_date=first,
                    to_date=_day(periods[-1].first),
                    periods=1,
                    as_of_date=last,
                ),
                tenant,
            ),
            self._calls(
                m.Workflows,
                activation_pb2.WorkflowsRequest(
                    from_date=first, to_date=last, granularity=runs_granularity
                ),
                tenant,
            ),
            self._calls(
                m.Revenue, revenue_pb2.RevenueRequest(from_date=first, to_date=last), tenant
            ),
        )
        readings = MetricsReadings(
            active={
                dt.date.fromisoformat(d.date): ActiveDay(
                    d.dau, d.wau, d.mau, d.stickiness if d.HasField("stickiness") else None
                )
                for d in active.days
            },
            signups={dt.date.fromisoformat(c.cohort_start): c.size for c in cohorts.cohorts},
            workflows={
                dt.date.fromisoformat(p.period_start): RunCounts(p.runs, p.failed_runs)
                for p in runs.periods
            },
            revenue={
                dt.date.fromisoformat(d.date): RevenueDay(d.mrr, d.paying_orgs)
                for d in revenue.days
            },
        )
        section = reports_pb2.KeyMetricsSection()
        for metric in key_metrics(periods, readings):
            out = section.metrics.add(
                name=metric.name,
                label=metric.label,
                unit=metric.unit,
                higher_is_better=metric.higher_is_better,
            )
            if metric.value is not None:
                out.value = metric.value
            if metric.previous is not None:
                out.previous = metric.previous
            if metric.change is not None:
                out.change = metric.change
            for day, value in metric.points:
                point = out.sparkline.add(date=_day(day))
                if value is not None:
                    point.value = value
        return section

    async def _retention(self, tenant: str, at: ReportPeriod) -> reports_pb2.RetentionSection:
        last_week = at.span.last - dt.timedelta(days=at.span.last.weekday())
        first_week = last_week - dt.timedelta(weeks=RETENTION_WEEKS - 1)
        answer = await self._calls(
            self._metrics.Retention,
            retention_pb2.RetentionRequest(
                granularity=retention_pb2.COHORT_GRANULARITY_WEEK,
                from_date=_day(first_week),
                to_date=_day(last_week),
                periods=RETENTION_WEEKS,
                mode=retention_pb2.RETENTION_MODE_ON_DAY,
                as_of_date=_day(at.span.last),
            ),
            tenant,
        )
        return reports_pb2.RetentionSection(retention=answer)

    async def _funnel(
        self, tenant: str, schedule: reports_pb2.Schedule, at: ReportPeriod
    ) -> reports_pb2.FunnelSection:
        steps = list(schedule.funnel_steps) or list(DEFAULT_FUNNEL)
        window = (
            schedule.funnel_window_seconds
            if schedule.HasField("funnel_window_seconds")
            else DEFAULT_FUNNEL_WINDOW_S
        )
        answer = await self._calls(
            self._metrics.Funnel,
            funnel_pb2.FunnelRequest(
                steps=steps,
                from_date=_day(at.span.first),
                to_date=_day(at.span.last),
                window_seconds=window,
            ),
            tenant,
        )
        return reports_pb2.FunnelSection(steps=steps, funnel=answer)

    async def _data_quality(self, tenant: str, at: ReportPeriod) -> reports_pb2.DataQualitySection:
        answer = await self._calls(
            self._metrics.DataQuality,
            quality_pb2.DataQualityRequest(
                from_date=_day(at.span.first), to_date=_day(at.span.last)
            ),
            tenant,
        )
        for bot in answer.suspected_bot_users:
            bot.ClearField("user_id")
        return reports_pb2.DataQualitySection(quality=answer)

    # --- alerts -----------------------------------------------------------------------

    async def _alerts_section(self, tenant: str, at: ReportPeriod) -> reports_pb2.AlertsSection:
        rules = await self._calls(self._alerts.ListRules, alerts_pb2.ListRulesRequest(), tenant)
        limit = asyncio.Semaphore(self._concurrency)

        async def history(rule_id: str) -> alerts_pb2.AlertHistoryResponse:
            async with limit:
                try:
                    return await self._calls(
                        self._alerts.AlertHistory,
                        alerts_pb2.AlertHistoryRequest(rule_id=rule_id),
                        tenant,
                    )
                except grpc.aio.AioRpcError as e:
                    if e.code() is grpc.StatusCode.NOT_FOUND:  # deleted since it was listed
                        return alerts_pb2.AlertHistoryResponse()
                    raise

        listed = [r.rule for r in rules.rules]
        histories = await asyncio.gather(*(history(r.rule_id) for r in listed))
        transitions: list[AlertTransition] = []
        entries: dict[int, tuple[alerts_pb2.Rule, alerts_pb2.AlertHistoryEntry]] = {}
        for rule, answer in zip(listed, histories, strict=True):
            for entry in answer.entries:
                if entry.kind != alerts_pb2.ALERT_EVENT_KIND_TRANSITION:
                    continue
                ref = len(entries)
                entries[ref] = (rule, entry)
                transitions.append(
                    AlertTransition(
                        rule.rule_id,
                        entry.severity,
                        # Other statuses (pending, inactive) only end a firing.
                        _STATUS_NAME.get(entry.to_status, str(entry.to_status)),
                        entry.at_us,
                        ref,
                    )
                )
        section = reports_pb2.AlertsSection(
            firing_at_end=len(firing_at(transitions, at.window.end_us))
        )
        for t in transitions_in(transitions, at.window):
            rule, entry = entries[t.ref]
            out = section.entries.add(
                rule_id=rule.rule_id,
                rule_name=rule.name,
                severity=entry.severity,
                change=_CHANGE[t.to_status],
            )
            out.at.FromMicroseconds(entry.at_us)
            if entry.HasField("value"):
                out.value = entry.value
            if entry.HasField("threshold"):
                out.threshold = entry.threshold
        return section

    # --- experiments ------------------------------------------------------------------

    async def _experiments_section(
        self, tenant: str, at: ReportPeriod
    ) -> reports_pb2.ExperimentsSection:
        listed = await self._calls(
            self._experiments.ListExperiments, experiments_pb2.ListExperimentsRequest(), tenant
        )
        limit = asyncio.Semaphore(self._concurrency)

        async def entry(
            experiment: experiments_pb2.Experiment, as_of_us: int
        ) -> reports_pb2.ExperimentEntry:
            out = reports_pb2.ExperimentEntry(experiment=experiment)
            request = experiments_pb2.GetResultsRequest(
                experiment_key=experiment.key,
                as_of_us=as_of_us,
                engine=experiments_pb2.STATS_ENGINE_FREQUENTIST,
            )
            async with limit:
                try:
                    out.results.CopyFrom(
                        await self._calls(self._experiments.GetResults, request, tenant)
                    )
                except grpc.aio.AioRpcError as e:
                    out.error = describe("experiments", e)
            return out

        running, concluded = [], []
        for experiment in sorted(listed.experiments, key=lambda x: x.key):
            history = [ExperimentChange(h.type, h.at_us) for h in experiment.history]
            if status_at(history, at.window.end_us) == RUNNING:
                # The window's last microsecond: GetResults' analysis end is inclusive.
                running.append(entry(experiment, at.window.end_us - 1))
            if concluded_in(history, at.window):
                concluded.append(entry(experiment, experiment.stopped_at_us))
        entries = await asyncio.gather(*running, *concluded)
        return reports_pb2.ExperimentsSection(
            running=entries[: len(running)], concluded=entries[len(running) :]
        )
