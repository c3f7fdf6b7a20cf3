"""GrpcSectionSource's calls and failure handling, with stand-in stubs for the upstreams.

The integration tests run the real services; these pin what only a stand-in can show: how
many calls each section makes and with which requests, a GetResults failure kept in its
entry, a bug in one section leaving the others, the tenant on every call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from northstar.alerts.v1 import alerts_pb2
from northstar.experiments.v1 import experiments_pb2 as xp
from northstar.metrics.v1 import (
    activation_pb2,
    funnel_pb2,
    kpis_pb2,
    metrics_pb2,
    quality_pb2,
    retention_pb2,
    revenue_pb2,
)
from northstar.reports.v1 import reports_pb2 as rp
from northstar_reports.adapters.sections import GrpcSectionSource, describe
from northstar_runtime.auth import TENANT_HEADER

S = rp.Section


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class Upstream:
    """Records every call (method, request, tenant) and answers from `answers`."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.calls: list[tuple[str, Message, str]] = []
        self._answers = answers

    def __getattr__(self, method: str) -> Any:
        async def call(request: Message, *, metadata: Any, timeout: float) -> Message:
            tenant = dict(metadata)[TENANT_HEADER]
            self.calls.append((method, request, tenant))
            answer = self._answers[method]
            if callable(answer):
                answer = answer(request)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call

    def count(self) -> Counter[str]:
        """Calls per method."""
        return Counter(m for m, _, _ in self.calls)


METRICS = {
    "ActiveUsers": metrics_pb2.ActiveUsersResponse(),
    "Retention": retention_pb2.RetentionResponse(),
    "Workflows": activation_pb2.WorkflowsResponse(),
    "Revenue": revenue_pb2.RevenueResponse(),
    "Kpis": kpis_pb2.KpisResponse(
        as_of_date="2026-12-02",
        priority_actions=[kpis_pb2.PriorityAction(kpi=f"k{i}") for i in range(7)],
    ),
    "Funnel": funnel_pb2.FunnelResponse(),
    "DataQuality": quality_pb2.DataQualityResponse(
        suspected_bots=1,
        suspected_bot_users=[quality_pb2.SuspectedBot(user_id="bot-1", max_events_in_window=700)],
    ),
}


def _experiment(key: str, *history: tuple[str, int], stopped: int = 0) -> xp.Experiment:
    return xp.Experiment(
        key=key,
        stopped_at_us=stopped,
        history=[xp.HistoryEntry(type=t, at_us=at) for t, at in history],
    )


# 2026-12-01 in UTC: [1796083200 s, 1796169600 s).
START_US, END_US = 1_796_083_200_000_000, 1_796_169_600_000_000
DAY = rp.Period(
    unit=rp.PERIOD_UNIT_DAY, start_date="2026-12-01", end_date="2026-12-01", time_zone="UTC"
)


@pytest.fixture
async def source() -> AsyncIterator[GrpcSectionSource]:
    """A source whose channels go nowhere; the tests put stand-ins in place of its stubs."""
    s = GrpcSectionSource(
        metrics_address="127.0.0.1:1",
        experiments_address="127.0.0.1:1",
        alerts_address="127.0.0.1:1",
        service_key="k",
        deadline_s=1.0,
    )
    try:
        yield s
    finally:
        await s.close()


async def test_one_call_per_metrics_query_and_one_kpis_for_two_sections(
    source: GrpcSectionSource,
) -> None:
    metrics = Upstream(METRICS)
    source._metrics = metrics  # type: ignore[assignment]
    report = await source.gather(
        tenant="acme",
        schedule=rp.Schedule(),
        period=DAY,
        sections=[
            S.SECTION_KEY_METRICS,
            S.SECTION_ALIGNMENT,
            S.SECTION_PRIORITY_ACTIONS,
            S.SECTION_DATA_QUALITY,
        ],
    )
    assert list(report.errors) == []
    assert metrics.count() == Counter(
        ActiveUsers=1, Retention=1, Workflows=1, Revenue=1, Kpis=1, DataQuality=1
    )
    assert {tenant for _, _, tenant in metrics.calls} == {"acme"}
    requests = {m: r for m, r, _ in metrics.calls}
    assert requests["ActiveUsers"] == metrics_pb2.ActiveUsersRequest(
        from_date="2026-11-18", to_date="2026-12-01"
    )
    assert requests["Retention"] == retention_pb2.RetentionRequest(
        granularity=retention_pb2.COHORT_GRANULARITY_DAY,
        from_date="2026-11-18",
        to_date="2026-12-01",
        periods=1,
        as_of_date="2026-12-01",
    )
    assert requests["Kpis"] == kpis_pb2.KpisRequest(as_of_date="2026-12-02")
    assert [a.kpi for a in report.priority_actions.actions] == ["k0", "k1", "k2", "k3", "k4"]
    assert report.alignment.as_of_date == "2026-12-02"
    # Metrics answered no day: every number absent, the points still dated.
    dau = report.key_metrics.metrics[0]
    assert not dau.HasField("value") and len(dau.sparkline) == 14
    [bot] = report.data_quality.quality.suspected_bot_users
    assert (bot.user_id, bot.max_events_in_window) == ("", 700)


async def test_a_week_reads_weeks_over_eight_of_them(source: GrpcSectionSource) -> None:
    metrics = Upstream(METRICS)
    source._metrics = metrics  # type: ignore[assignment]
    week = rp.Period(unit=rp.PERIOD_UNIT_WEEK, start_date="2026-11-23", end_date="2026-11-29")
    await source.gather(
        tenant="acme",
        schedule=rp.Schedule(),
        period=week,
        sections=[S.SECTION_KEY_METRICS, S.SECTION_RETENTION],
    )
    requests = [(m, r) for m, r, _ in metrics.calls]
    assert (
        "Workflows",
        activation_pb2.WorkflowsRequest(
            from_date="2026-10-05",
            to_date="2026-11-29",
            granularity=activation_pb2.WORKFLOWS_GRANULARITY_WEEK,
        ),
    ) in requests
    retention = [r for m, r in requests if m == "Retention"]
    assert (
        retention_pb2.RetentionRequest(
            granularity=retention_pb2.COHORT_GRANULARITY_WEEK,
            from_date="2026-10-05",
            to_date="2026-11-23",
            periods=1,
            as_of_date="2026-11-29",
        )
        in retention
    )
    assert (
        retention_pb2.RetentionRequest(
            granularity=retention_pb2.COHORT_GRANULARITY_WEEK,
            from_date="2026-10-05",
            to_date="2026-11-23",
            periods=8,
            mode=retention_pb2.RETENTION_MODE_ON_DAY,
            as_of_date="2026-11-29",
        )
        in retention
    )


async def test_a_failing_get_results_is_the_entrys_error(source: GrpcSectionSource) -> None:
    listed = xp.ListExperimentsResponse(
        experiments=[
            _experiment("b-run", ("ExperimentCreated", 1), ("ExperimentStarted", 2)),
            _experiment(
                "a-done",
                ("ExperimentCreated", 1),
                ("ExperimentStarted", 2),
                ("ExperimentStopped", START_US + 5),
                ("ExperimentConcluded", START_US + 9),
                stopped=START_US + 5,
            ),
            _experiment("c-later", ("ExperimentCreated", 1), ("ExperimentStarted", END_US)),
        ]
    )

    def results(request: xp.GetResultsRequest) -> Message | BaseException:
        if request.experiment_key == "b-run":
            return _error(grpc.StatusCode.INTERNAL, "stats failed")
        return xp.GetResultsResponse(experiment_key=request.experiment_key)

    experiments = Upstream({"ListExperiments": listed, "GetResults": results})
    source._experiments = experiments  # type: ignore[assignment]
    report = await source.gather(
        tenant="acme", schedule=rp.Schedule(), period=DAY, sections=[S.SECTION_EXPERIMENTS]
    )
    assert list(report.errors) == []
    [running] = report.experiments.running
    [concluded] = report.experiments.concluded
    assert (running.experiment.key, running.error) == (
        "b-run",
        "experiments: INTERNAL stats failed",
    )
    assert not running.HasField("results")
    assert (concluded.experiment.key, concluded.error) == ("a-done", "")
    asked = {r.experiment_key: r for m, r, _ in experiments.calls if m == "GetResults"}
    assert asked["b-run"].as_of_us == END_US - 1
    assert asked["a-done"].as_of_us == START_US + 5
    assert asked["a-done"].engine == xp.STATS_ENGINE_FREQUENTIST


async def test_a_bug_in_one_section_leaves_the_others(source: GrpcSectionSource) -> None:
    source._metrics = Upstream({**METRICS, "DataQuality": ValueError("no")})  # type: ignore[assignment]
    history = alerts_pb2.AlertHistoryResponse(
        entries=[
            alerts_pb2.AlertHistoryEntry(
                kind=alerts_pb2.ALERT_EVENT_KIND_TRANSITION,
                severity=alerts_pb2.SEVERITY_WARNING,
                from_status=alerts_pb2.ALERT_STATUS_INACTIVE,
                to_status=alerts_pb2.ALERT_STATUS_FIRING,
                at_us=START_US,
                value=3.0,
            ),
            alerts_pb2.AlertHistoryEntry(
                kind=alerts_pb2.ALERT_EVENT_KIND_ACKNOWLEDGEMENT,
                to_status=alerts_pb2.ALERT_STATUS_FIRING,
                at_us=START_US + 1,
            ),
        ]
    )

    def rule_history(request: alerts_pb2.AlertHistoryRequest) -> Message | BaseException:
        if request.rule_id == "gone":  # deleted after ListRules
            return _error(grpc.StatusCode.NOT_FOUND, "no such rule")
        return history

    rules = alerts_pb2.ListRulesResponse(
        rules=[
            alerts_pb2.GetRuleResponse(rule=alerts_pb2.Rule(rule_id="r1", name="One")),
            alerts_pb2.GetRuleResponse(rule=alerts_pb2.Rule(rule_id="gone", name="Gone")),
        ]
    )
    source._alerts = Upstream({"ListRules": rules, "AlertHistory": rule_history})  # type: ignore[assignment]
    report = await source.gather(
        tenant="acme",
        schedule=rp.Schedule(),
        period=DAY,
        sections=[S.SECTION_DATA_QUALITY, S.SECTION_ALERTS],
    )
    assert [(e.section, e.message) for e in report.errors] == [
        (S.SECTION_DATA_QUALITY, "metrics: ValueError: no")
    ]
    [entry] = report.alerts.entries
    assert (entry.rule_id, entry.rule_name, entry.change, entry.value) == (
        "r1",
        "One",
        rp.ALERT_CHANGE_FIRED,
        3.0,
    )
    assert not entry.HasField("threshold")
    assert report.alerts.firing_at_end == 1


def test_a_failure_is_described_by_service_code_and_message() -> None:
    assert describe("alerts", _error(grpc.StatusCode.UNAVAILABLE, "down")) == (
        "alerts: UNAVAILABLE down"
    )
    assert describe("metrics", _error(grpc.StatusCode.DEADLINE_EXCEEDED, "")) == (
        "metrics: DEADLINE_EXCEEDED"
    )
    assert describe("metrics", TimeoutError()) == "metrics: DEADLINE_EXCEEDED"
