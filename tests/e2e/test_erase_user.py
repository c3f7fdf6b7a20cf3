"""EraseUser end to end: after the erasure every read model answers as if the user's
events had never been accepted, and a rebuild from the log keeps the user erased.

The reference is the suite itself on a second tenant that was sent only the other
user's events (and the org's own): every metrics answer of the erasing tenant must equal
that tenant's, field for field. The experiment's results are checked against the plain
counts of the one exposed user left.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import message as pb_message
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from northstar.experiments.v1 import experiments_pb2 as xpb
from northstar.experiments.v1 import experiments_pb2_grpc
from northstar.ingest.v1 import ingest_pb2
from northstar.metrics.v1 import (
    activation_pb2,
    filters_pb2,
    funnel_pb2,
    kpis_pb2,
    metrics_pb2_grpc,
    quality_pb2,
    retention_pb2,
    revenue_pb2,
    series_pb2,
    trend_pb2,
)
from northstar.metrics.v1 import metrics_pb2 as mpb
from northstar_experiments.bootstrap import build_host as build_experiments
from northstar_experiments.settings import ExperimentsSettings
from northstar_harness.eventually import assert_eventually
from northstar_metrics.bootstrap import build_host as build_metrics
from northstar_metrics.settings import MetricsSettings
from northstar_runtime.service import ServiceHost

from .conftest import (
    ADMIN_KEY,
    OTHER_TENANT_KEY,
    READER_KEY,
    WRITER_KEY,
    Suite,
    auth,
    settings_env,
)

ERASED = "erase-me-4d1c"
KEPT = "keep-b-77"
ORG = "org-shared"
DAY_US = 86_400_000_000
TODAY_US = time.time_ns() // 1000 // DAY_US * DAY_US
START_US = TODAY_US - 20 * DAY_US


def _ts(us: int) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(us)
    return t


def _event(event_id: str, name: str, user: str, day: int, props: str = "{}", *, org: str = ORG):
    return ingest_pb2.Event(
        event_id=event_id,
        event=name,
        user_id=user,
        org_id=org,
        timestamp=_ts(START_US + day * DAY_US + 3_600_000_000),
        properties_json=props,
    )


def user_events(user: str, *, channel: str, plan: str, variant: str, first_day: int) -> list:
    """A user's history: signup, onboarding, workflow runs, activity, exposure, purchase."""
    d = first_day
    return [
        _event(f"{user}-s", "user.signup", user, d, f'{{"channel":"{channel}","plan":"{plan}"}}'),
        _event(f"{user}-i", "integration.connected", user, d),
        _event(f"{user}-w", "workflow.created", user, d + 1, '{"workflow_id":"wf-' + user + '"}'),
        _event(
            f"{user}-r1",
            "workflow.run",
            user,
            d + 1,
            '{"status":"success","workflow_id":"wf-' + user + '"}',
        ),
        _event(
            f"{user}-r2",
            "workflow.run",
            user,
            d + 4,
            '{"status":"failed","workflow_id":"wf-' + user + '"}',
        ),
        *(_event(f"{user}-v{n}", "page.view", user, d + n) for n in (2, 3, 8, 9)),
        _event(
            f"{user}-x",
            "experiment.exposure",
            user,
            d + 2,
            f'{{"experiment":"erase-exp","variant":"{variant}"}}',
        ),
        _event(f"{user}-c", "checkout.completed", user, d + 3, '{"amount":42}'),
    ]


# The org's own subscription events (no user_id) stay; one carrying the erased user's id
# goes with the user.
ORG_EVENTS = [
    _event("org-sub-1", "subscription.started", "", 2, '{"mrr":100}'),
    _event("org-sub-2", "subscription.changed", "", 9, '{"mrr":150}'),
]
ERASED_EVENTS = [
    *user_events(ERASED, channel="ads", plan="pro", variant="a", first_day=0),
    _event(f"{ERASED}-sub", "subscription.changed", ERASED, 5, '{"mrr":400}'),
]
KEPT_EVENTS = user_events(KEPT, channel="seo", plan="free", variant="b", first_day=1)
# What holds the erased id once it came back: its one new event, in both tenants (the
# reference is sent it too), with its id, its activity day and its receive day.
NEW_HISTORY = {"events": 2, "events_seen": 2, "user_days": 2, "user_received_days": 2}


@pytest.fixture
async def experiments_host(
    suite: Suite, nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[tuple[ServiceHost, int]]:
    """The experiments service beside the suite's ingest, and its port."""
    host = build_experiments(
        ExperimentsSettings(**settings_env(nats_url, database_url, namespace)),  # type: ignore[arg-type]
        configure_process=False,
    )
    port = await host.start()
    try:
        yield host, port
    finally:
        await host.stop()


def _stub(port: int, stub: Callable[[grpc.aio.Channel], Any]) -> Any:
    return stub(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))


def _plain(response: pb_message.Message) -> pb_message.Message:
    """The answer without the fields that say where the log was (they differ by tenant)."""
    copy = type(response)()
    copy.CopyFrom(response)

    def clear(m: pb_message.Message) -> None:
        for field, value in m.ListFields():
            if field.name in ("log_position", "domain_log_position", "freshness_seconds"):
                m.ClearField(field.name)
            elif field.message_type is not None:
                if field.is_repeated:
                    if not field.message_type.GetOptions().map_entry:
                        for item in value:
                            clear(item)
                else:
                    clear(value)

    clear(copy)
    return copy


def _day(n: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime((START_US + n * DAY_US) // 1_000_000))


def metric_calls(
    stub: metrics_pb2_grpc.MetricsServiceStub,
) -> dict[str, Callable[[str], Awaitable[pb_message.Message]]]:
    """Every read the erasure must leave equal to the reference, by name."""
    first, last = _day(0), _day(21)
    steps = [
        filters_pb2.EventMatcher(event=e)
        for e in ("user.signup", "integration.connected", "workflow.created", "workflow.run")
    ]

    def call(method: str, request: pb_message.Message) -> Callable[[str], Awaitable[Any]]:
        return lambda key: getattr(stub, method)(request, metadata=auth(key), timeout=10)

    return {
        "dau": call(
            "ActiveUsers",
            mpb.ActiveUsersRequest(
                from_date=first, to_date=last, metric=mpb.ACTIVE_USERS_METRIC_DAU
            ),
        ),
        "mau": call(
            "ActiveUsers",
            mpb.ActiveUsersRequest(
                from_date=first, to_date=last, metric=mpb.ACTIVE_USERS_METRIC_MAU
            ),
        ),
        "mao": call(
            "ActiveUsers",
            mpb.ActiveUsersRequest(
                from_date=first, to_date=last, metric=mpb.ACTIVE_USERS_METRIC_MAO
            ),
        ),
        "retention": call(
            "Retention",
            retention_pb2.RetentionRequest(
                granularity=retention_pb2.COHORT_GRANULARITY_DAY,
                from_date=first,
                to_date=last,
                periods=10,
                mode=retention_pb2.RETENTION_MODE_ON_OR_AFTER,
            ),
        ),
        "retention_trend": call(
            "RetentionTrend",
            retention_pb2.RetentionTrendRequest(
                granularity=retention_pb2.COHORT_GRANULARITY_DAY,
                from_date=first,
                to_date=last,
                period=2,
                mode=retention_pb2.RETENTION_MODE_ON_DAY,
            ),
        ),
        "kpis": call("Kpis", kpis_pb2.KpisRequest(as_of_date=last)),
        **{
            f"anomalies_{name}": call(
                "Anomalies",
                series_pb2.AnomaliesRequest(
                    selector=series_pb2.SeriesSelector(series=series),
                    from_date=first,
                    to_date=last,
                ),
            )
            for name, series in (
                ("dau", series_pb2.DAILY_SERIES_DAU),
                ("signups", series_pb2.DAILY_SERIES_SIGNUPS),
                ("runs", series_pb2.DAILY_SERIES_WORKFLOW_RUNS),
                ("mrr", series_pb2.DAILY_SERIES_MRR),
            )
        },
        "forecast": call(
            "Forecast",
            series_pb2.ForecastRequest(
                selector=series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_DAU),
                as_of_date=last,
                horizon_days=7,
                fit_days=21,
            ),
        ),
        "activation": call(
            "Activation",
            activation_pb2.ActivationRequest(
                from_date=first, to_date=last, breakdown=activation_pb2.ACTIVATION_BREAKDOWN_CHANNEL
            ),
        ),
        "workflows": call(
            "Workflows",
            activation_pb2.WorkflowsRequest(
                from_date=first, to_date=last, granularity=activation_pb2.WORKFLOWS_GRANULARITY_DAY
            ),
        ),
        "funnel": call(
            "Funnel", funnel_pb2.FunnelRequest(steps=steps, from_date=first, to_date=last)
        ),
        "trend": call(
            "Trend",
            trend_pb2.TrendRequest(
                from_date=first,
                to_date=last,
                interval=trend_pb2.TREND_INTERVAL_DAY,
                event="page.view",
                measure=trend_pb2.TREND_MEASURE_UNIQUE_USERS,
            ),
        ),
        "revenue": call("Revenue", revenue_pb2.RevenueRequest(from_date=first, to_date=last)),
        "quality": call(
            "DataQuality", quality_pb2.DataQualityRequest(from_date=first, to_date=last)
        ),
    }


async def answers(
    stub: metrics_pb2_grpc.MetricsServiceStub, key: str
) -> dict[str, pb_message.Message]:
    """Every read of `metric_calls`, as the tenant of `key` sees it."""
    return {name: _plain(await call(key)) for name, call in metric_calls(stub).items()}


async def same_as_reference(stub: metrics_pb2_grpc.MetricsServiceStub) -> bool:
    """The erasing tenant's answers equal the reference tenant's, read by read."""
    try:
        mine, reference = await answers(stub, READER_KEY), await answers(stub, OTHER_TENANT_KEY)
    except grpc.aio.AioRpcError as e:
        raise AssertionError(f"not answering yet: {e.code()}") from e
    for name in mine:
        assert mine[name] == reference[name], name
    return True


async def rows_holding(database_url: str, schema: str, text: str) -> dict[str, int]:
    """Rows of every table of a schema whose text form holds `text` (bytea as hex too)."""
    conn = await asyncpg.connect(database_url)
    try:
        names = [
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
                schema,
            )
        ]
        found = {}
        for name in names:
            n = await conn.fetchval(
                f'SELECT count(*) FROM "{schema}"."{name}" t'
                " WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0",
                text,
                text.encode().hex(),
            )
            if n:
                found[name] = n
        return found
    finally:
        await conn.close()


async def results(stub: experiments_pb2_grpc.ExperimentsServiceStub) -> xpb.GetResultsResponse:
    try:
        return await stub.GetResults(
            xpb.GetResultsRequest(experiment_key="erase-exp"), metadata=auth(READER_KEY)
        )
    except grpc.aio.AioRpcError as e:
        raise AssertionError(f"no results yet: {e.code()}") from e


def counts(r: xpb.GetResultsResponse) -> tuple[list[int], list[list[tuple[int, float]]]]:
    """Exposed users per variant; users and sum per variant of each metric."""
    return list(r.srm.users), [[(v.users, v.sum) for v in m.variants] for m in r.metrics]


async def track(suite: Suite, key: str, events: list, *, retried: int = 0) -> None:
    """Send events; all accepted but `retried` ones ingest may answer DUPLICATE."""
    r = await suite.ingest.Track(ingest_pb2.TrackRequest(events=events), metadata=auth(key))
    assert r.rejected == 0 and r.accepted + r.duplicate == len(events), r
    assert r.duplicate <= retried, r


async def test_an_erased_user_leaves_no_trace_in_any_answer_even_after_a_rebuild(
    suite: Suite,
    experiments_host: tuple[ServiceHost, int],
    nats_url: str,
    database_url: str,
    namespace: str,
) -> None:
    experiments = _stub(experiments_host[1], experiments_pb2_grpc.ExperimentsServiceStub)
    definition = xpb.ExperimentDefinition(
        name="erasure",
        variants=[xpb.Variant(key="a", weight=0.5), xpb.Variant(key="b", weight=0.5)],
        coverage=1.0,
        goal_metrics=[
            xpb.Metric(name="bought", kind=xpb.METRIC_KIND_BINOMIAL, event="checkout.completed"),
            xpb.Metric(
                name="amount",
                kind=xpb.METRIC_KIND_CONTINUOUS,
                event="checkout.completed",
                property="amount",
            ),
        ],
        analysis_start_us=START_US,
    )
    created = await experiments.CreateExperiment(
        xpb.CreateExperimentRequest(key="erase-exp", definition=definition),
        metadata=auth(ADMIN_KEY),
    )
    await experiments.StartExperiment(
        xpb.StartExperimentRequest(key="erase-exp", expected_version=created.experiment.version),
        metadata=auth(ADMIN_KEY),
    )
    await track(suite, WRITER_KEY, [*ERASED_EVENTS, *KEPT_EVENTS, *ORG_EVENTS])
    await track(suite, OTHER_TENANT_KEY, [*KEPT_EVENTS, *ORG_EVENTS])

    async def both_exposed() -> xpb.GetResultsResponse:
        r = await results(experiments)
        assert list(r.srm.users) == [1, 1]
        return r

    await assert_eventually(both_exposed, timeout=30)

    # Before the erasure the user counts: the answers differ from the reference.
    async def differs() -> bool:
        with pytest.raises(AssertionError):
            await same_as_reference(suite.metrics)
        return bool(await rows_holding(database_url, f"{namespace}_metrics", ERASED))

    await assert_eventually(differs, timeout=30)

    # Only an admin key erases, and only a valid user id.
    request = ingest_pb2.EraseUserRequest(user_id=ERASED)
    for metadata, code in (
        ((), grpc.StatusCode.UNAUTHENTICATED),
        (auth(WRITER_KEY), grpc.StatusCode.PERMISSION_DENIED),
        (auth(READER_KEY), grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await suite.ingest.EraseUser(request, metadata=metadata)
        assert refused.value.code() == code
    for bad in ("", "x" * 201, "a\x00b"):
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await suite.ingest.EraseUser(
                ingest_pb2.EraseUserRequest(user_id=bad), metadata=auth(ADMIN_KEY)
            )
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = status_pb2.Status.FromString(
            dict(invalid.value.trailing_metadata())["grpc-status-details-bin"]
        )
        bad_request = error_details_pb2.BadRequest()
        assert any(d.Unpack(bad_request) for d in status.details)
        assert [v.field for v in bad_request.field_violations] == ["user_id"]

    erased = await suite.ingest.EraseUser(request, metadata=auth(ADMIN_KEY))
    again = await suite.ingest.EraseUser(request, metadata=auth(ADMIN_KEY))
    assert erased.erasure_id and again.erasure_id == erased.erasure_id
    assert again.log_position == erased.log_position  # deduplicated by the log
    assert erased.erased_at.ToMicroseconds() <= time.time_ns() // 1000

    await assert_eventually(lambda: same_as_reference(suite.metrics), timeout=30)

    async def only_the_kept_user() -> bool:
        r = await results(experiments)
        # Variant a had only the erased user; b keeps its one buyer of 42.
        assert counts(r) == ([0, 1], [[(0, 0.0), (1, 1.0)], [(0, 0.0), (1, 42.0)]])
        return True

    await assert_eventually(only_the_kept_user, timeout=30)
    for service in ("metrics", "experiments"):
        assert await rows_holding(database_url, f"{namespace}_{service}", ERASED) == {}, service

    # A late retry of the erased history (timestamps before the erasure) is dropped; an
    # event after the erasure is a new history. One request, so one log message: once
    # the new event is seen, the old one was applied (dropped) too.
    now_us = time.time_ns() // 1000
    late = [
        _event(f"{ERASED}-v2", "page.view", ERASED, 2),
        _event(f"{ERASED}-late", "checkout.completed", ERASED, 6, '{"amount":9}'),
    ]
    came_back = ingest_pb2.Event(
        event_id=f"{ERASED}-back",
        event="page.view",
        user_id=ERASED,
        timestamp=_ts(now_us),
    )
    await track(suite, WRITER_KEY, [*late, came_back], retried=1)
    # The reference gets the new history alone.
    await track(suite, OTHER_TENANT_KEY, [came_back])

    async def new_history_seen() -> bool:
        assert await rows_holding(database_url, f"{namespace}_metrics", ERASED) == NEW_HISTORY
        held = await rows_holding(database_url, f"{namespace}_experiments", ERASED)
        assert held == {"user_events": 2}
        return await same_as_reference(suite.metrics)

    await assert_eventually(new_history_seen, timeout=30)
    await only_the_kept_user()

    # A rebuild (what `northstar-metrics rebuild` does: drop the schema; the next start
    # migrates and replays the whole log) ends in the same answers, the user still erased.
    await suite.metrics_host.stop()
    await experiments_host[0].stop()
    conn = await asyncpg.connect(database_url)
    try:
        for service in ("metrics", "experiments"):
            await conn.execute(f'DROP SCHEMA "{namespace}_{service}" CASCADE')
    finally:
        await conn.close()
    common = settings_env(nats_url, database_url, namespace)
    metrics_host = build_metrics(
        MetricsSettings(**common, projector_batch_size=3),  # type: ignore[arg-type]
        configure_process=False,
    )
    rebuilt_experiments = build_experiments(
        ExperimentsSettings(**common),  # type: ignore[arg-type]
        configure_process=False,
    )
    metrics_port = await metrics_host.start()
    experiments_port = await rebuilt_experiments.start()
    try:
        metrics = _stub(metrics_port, metrics_pb2_grpc.MetricsServiceStub)
        experiments = _stub(experiments_port, experiments_pb2_grpc.ExperimentsServiceStub)
        await assert_eventually(new_history_seen_by(metrics, database_url, namespace), timeout=60)
        await assert_eventually(only_the_kept_user, timeout=30)
    finally:
        await rebuilt_experiments.stop()
        await metrics_host.stop()


def new_history_seen_by(
    metrics: metrics_pb2_grpc.MetricsServiceStub, database_url: str, namespace: str
) -> Callable[[], Awaitable[bool]]:
    """After the replay: the same answers as the reference, and only the new history."""

    async def check() -> bool:
        await same_as_reference(metrics)
        assert await rows_holding(database_url, f"{namespace}_metrics", ERASED) == NEW_HISTORY
        held = await rows_holding(database_url, f"{namespace}_experiments", ERASED)
        assert held == {"user_events": 2}
        return True

    return check
