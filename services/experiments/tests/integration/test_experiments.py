"""Experiments over gRPC: lifecycle with OCC, assignment, exposures once, results."""

from __future__ import annotations

import asyncio
import random
import time

import grpc
import orjson
import pytest

from northstar.experiments.v1 import experiments_pb2 as pb
from northstar.log.v1 import log_pb2
from northstar_experiments.domain.assignment import assign
from northstar_harness.eventually import assert_eventually
from northstar_runtime.codec import encode_batch
from northstar_runtime.log import OutgoingMessage

from .conftest import ADMIN_KEY, INGEST_KEY, READ_KEY, ExperimentsUnderTest, auth

ADMIN, READ, INGEST = auth(ADMIN_KEY), auth(READ_KEY), auth(INGEST_KEY)


def definition(**overrides: object) -> pb.ExperimentDefinition:
    d = pb.ExperimentDefinition(
        name="Checkout button",
        hypothesis="green converts better",
        variants=[
            pb.Variant(key="control", name="Control", weight=0.5),
            pb.Variant(key="green", name="Green", weight=0.5),
        ],
        coverage=1.0,
        goal_metrics=[
            pb.Metric(name="purchase", kind=pb.METRIC_KIND_BINOMIAL, event="order.completed"),
            pb.Metric(
                name="revenue",
                kind=pb.METRIC_KIND_CONTINUOUS,
                event="order.completed",
                property="amount",
            ),
        ],
        guardrail_metrics=[
            pb.Metric(name="errors", kind=pb.METRIC_KIND_BINOMIAL, event="app.error", inverse=True)
        ],
    )
    for k, v in overrides.items():
        if k == "analysis_start_us":
            d.analysis_start_us = int(v)  # type: ignore[call-overload]
        else:
            setattr(d, k, v)
    return d


async def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call  # type: ignore[misc]
    return e.value.code()


async def test_lifecycle_with_versions_history_and_errors(service: ExperimentsUnderTest) -> None:
    s = service.stub
    created = (
        await s.CreateExperiment(
            pb.CreateExperimentRequest(key="btn", definition=definition()), metadata=ADMIN
        )
    ).experiment
    assert created.status == pb.EXPERIMENT_STATUS_DRAFT
    assert created.effective_seed == "btn"
    v1 = created.version
    assert (
        await code_of(
            s.CreateExperiment(
                pb.CreateExperimentRequest(key="btn", definition=definition()), metadata=ADMIN
            )
        )
        == grpc.StatusCode.ALREADY_EXISTS
    )
    assert (
        await code_of(
            s.CreateExperiment(
                pb.CreateExperimentRequest(key="x", definition=definition()), metadata=READ
            )
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )
    bad = definition()
    bad.variants[0].weight = 0.6
    assert (
        await code_of(
            s.CreateExperiment(
                pb.CreateExperimentRequest(key="bad", definition=bad), metadata=ADMIN
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    one = definition()
    del one.variants[1:]
    assert (
        await code_of(
            s.CreateExperiment(
                pb.CreateExperimentRequest(key="bad", definition=one), metadata=ADMIN
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    # 0 would read as "never started" (no analysis at all): a start is after the epoch.
    epoch = definition()
    epoch.analysis_start_us = 0
    assert (
        await code_of(
            s.CreateExperiment(
                pb.CreateExperimentRequest(key="bad", definition=epoch), metadata=ADMIN
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )

    started = (
        await s.StartExperiment(
            pb.StartExperimentRequest(key="btn", expected_version=v1), metadata=ADMIN
        )
    ).experiment
    assert started.status == pb.EXPERIMENT_STATUS_RUNNING and started.version > v1
    assert (
        await code_of(
            s.StopExperiment(
                pb.StopExperimentRequest(key="btn", expected_version=v1), metadata=ADMIN
            )
        )
        == grpc.StatusCode.ABORTED
    )
    moved = definition()
    moved.variants[0].weight, moved.variants[1].weight = 0.4, 0.6
    assert (
        await code_of(
            s.UpdateExperiment(
                pb.UpdateExperimentRequest(
                    key="btn", expected_version=started.version, definition=moved
                ),
                metadata=ADMIN,
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    renamed = (
        await s.UpdateExperiment(
            pb.UpdateExperimentRequest(
                key="btn", expected_version=started.version, definition=definition(name="Renamed")
            ),
            metadata=ADMIN,
        )
    ).experiment
    assert renamed.definition.name == "Renamed"
    assert (
        await code_of(
            s.ArchiveExperiment(
                pb.ArchiveExperimentRequest(key="btn", expected_version=renamed.version),
                metadata=ADMIN,
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    stopped = (
        await s.StopExperiment(
            pb.StopExperimentRequest(key="btn", expected_version=renamed.version), metadata=ADMIN
        )
    ).experiment
    assert (
        await code_of(
            s.ConcludeExperiment(
                pb.ConcludeExperimentRequest(
                    key="btn", expected_version=stopped.version, winner="nope"
                ),
                metadata=ADMIN,
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    concluded = (
        await s.ConcludeExperiment(
            pb.ConcludeExperimentRequest(
                key="btn", expected_version=stopped.version, winner="green", reason="won"
            ),
            metadata=ADMIN,
        )
    ).experiment
    assert concluded.winner == "green"
    archived = (
        await s.ArchiveExperiment(
            pb.ArchiveExperimentRequest(key="btn", expected_version=concluded.version),
            metadata=ADMIN,
        )
    ).experiment
    assert archived.status == pb.EXPERIMENT_STATUS_ARCHIVED

    async def projected() -> pb.Experiment:
        try:
            answer = await s.GetExperiment(pb.GetExperimentRequest(key="btn"), metadata=READ)
        except grpc.aio.AioRpcError as e:
            # The read model may not hold the experiment yet: not found until projected.
            assert e.code() != grpc.StatusCode.NOT_FOUND, "not projected yet"
            raise
        got = answer.experiment
        assert got.version == archived.version
        return got

    got = await assert_eventually(projected)
    assert [h.type for h in got.history] == [
        "ExperimentCreated",
        "ExperimentStarted",
        "ExperimentUpdated",
        "ExperimentStopped",
        "ExperimentConcluded",
        "ExperimentArchived",
    ]
    listed = await s.ListExperiments(
        pb.ListExperimentsRequest(status=pb.EXPERIMENT_STATUS_ARCHIVED), metadata=READ
    )
    assert [e.key for e in listed.experiments] == ["btn"]
    assert not (
        await s.ListExperiments(
            pb.ListExperimentsRequest(status=pb.EXPERIMENT_STATUS_RUNNING), metadata=READ
        )
    ).experiments
    assert (
        await code_of(s.GetExperiment(pb.GetExperimentRequest(key="missing"), metadata=READ))
        == grpc.StatusCode.NOT_FOUND
    )


async def test_two_conflicting_edits_exactly_one_wins(service: ExperimentsUnderTest) -> None:
    s = service.stub
    v = (
        await s.CreateExperiment(
            pb.CreateExperimentRequest(key="race", definition=definition()), metadata=ADMIN
        )
    ).experiment.version
    calls = [
        s.UpdateExperiment(
            pb.UpdateExperimentRequest(
                key="race", expected_version=v, definition=definition(name=f"edit {i}")
            ),
            metadata=ADMIN,
        )
        for i in range(2)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 1 and len(failed) == 1
    assert failed[0].code() == grpc.StatusCode.ABORTED


async def test_assign_matches_domain_and_logs_exposure_once(service: ExperimentsUnderTest) -> None:
    s = service.stub
    d = definition(coverage=0.6)
    v = (
        await s.CreateExperiment(
            pb.CreateExperimentRequest(key="asg", definition=d), metadata=ADMIN
        )
    ).experiment.version
    not_running = (
        await s.AssignBatch(
            pb.AssignBatchRequest(queries=[pb.AssignmentQuery(experiment_key="asg", user_id="u1")]),
            metadata=INGEST,
        )
    ).assignments[0]
    assert not not_running.in_experiment
    await s.StartExperiment(
        pb.StartExperimentRequest(key="asg", expected_version=v), metadata=ADMIN
    )

    async def running() -> bool:
        try:
            r = await s.GetExperiment(pb.GetExperimentRequest(key="asg"), metadata=READ)
        except grpc.aio.AioRpcError as e:
            # The read model may not have projected the creation yet.
            assert e.code() is grpc.StatusCode.NOT_FOUND, e
            return False
        return r.experiment.status == pb.EXPERIMENT_STATUS_RUNNING

    await assert_eventually(running)
    users = [f"user-{i}" for i in range(300)]
    batch = await s.AssignBatch(
        pb.AssignBatchRequest(
            queries=[
                pb.AssignmentQuery(experiment_key="asg", user_id=u, idempotency_key="k")
                for u in users
            ],
            log_exposure=True,
        ),
        metadata=INGEST,
    )
    for u, a in zip(users, batch.assignments, strict=True):
        index, n = assign("asg", u, [0.5, 0.5], 0.6)
        assert (a.variant_index, a.hash_value, a.in_experiment) == (index, n, index >= 0)
    inside = [a for a in batch.assignments if a.in_experiment]
    assert 0 < len(inside) < 300
    # The same calls again: the same exposures, stored once.
    for _ in range(2):
        again = await s.Assign(
            pb.AssignRequest(
                experiment_key="asg",
                user_id=inside[0].user_id,
                log_exposure=True,
                idempotency_key="k",
            ),
            metadata=INGEST,
        )
        assert again.assignment.exposure_event_id == inside[0].exposure_event_id
    assert (
        await code_of(
            s.Assign(pb.AssignRequest(experiment_key="nope", user_id="u"), metadata=INGEST)
        )
        == grpc.StatusCode.NOT_FOUND
    )
    too_many = pb.AssignBatchRequest(
        queries=[pb.AssignmentQuery(experiment_key="asg", user_id="u")] * 1001
    )
    assert (
        await code_of(s.AssignBatch(too_many, metadata=INGEST)) == grpc.StatusCode.INVALID_ARGUMENT
    )

    async def counted() -> pb.GetResultsResponse:
        r = await s.GetResults(pb.GetResultsRequest(experiment_key="asg"), metadata=READ)
        assert sum(r.srm.users) == len(inside)
        return r

    result = await assert_eventually(counted)
    assert result.multiple_exposures == 0


def _event(
    event_id: str, name: str, user: str, ts: int, props: dict[str, object]
) -> log_pb2.StoredEvent:
    return log_pb2.StoredEvent(
        event_id=event_id,
        event=name,
        user_id=user,
        timestamp_us=ts,
        original_timestamp_us=ts,
        received_at_us=ts,
        properties_json=orjson.dumps(props),
    )


async def _feed(service: ExperimentsUnderTest, events: list[log_pb2.StoredEvent]) -> None:
    topology = service.log.topology
    messages = []
    for i in range(0, len(events), 200):
        payload, headers = encode_batch("acme", 0, events[i : i + 200])
        messages.append(
            OutgoingMessage(topology.events_subject("acme", 0), payload, headers=headers)
        )
    await service.log.publish_many(messages, timeout=30)


async def test_results_detect_lift_and_flag_srm(service: ExperimentsUnderTest) -> None:
    s = service.stub
    start = time.time_ns() // 1000 - 3_600_000_000
    d = definition(analysis_start_us=start)
    v = (
        await s.CreateExperiment(
            pb.CreateExperimentRequest(key="sim", definition=d), metadata=ADMIN
        )
    ).experiment.version
    await s.StartExperiment(
        pb.StartExperimentRequest(key="sim", expected_version=v), metadata=ADMIN
    )
    rng = random.Random(5)
    events = []
    users = 0
    for i in range(4000):
        uid = f"sim-{i}"
        index, _n = assign("sim", uid, [0.5, 0.5], 1.0)
        # Inject a sample ratio mismatch: drop a fifth of the control's users.
        if index == 0 and i % 5 == 0:
            continue
        users += 1
        ts = start + 1_000_000 + i
        variant = ["control", "green"][index]
        events.append(
            _event(
                f"x-{i}", "experiment.exposure", uid, ts, {"experiment": "sim", "variant": variant}
            )
        )
        if rng.random() < (0.10 if index == 0 else 0.16):
            events.append(
                _event(f"o-{i}", "order.completed", uid, ts + 10, {"amount": rng.randint(10, 100)})
            )
        # Before exposure: does not count.
        events.append(_event(f"p-{i}", "order.completed", uid, ts - 10, {"amount": 5}))
    events.append(
        _event(
            "multi-1",
            "experiment.exposure",
            "sim-1",
            start + 2_000_000,
            {"experiment": "sim", "variant": "control"},
        )
    )
    events.append(
        _event(
            "multi-2",
            "experiment.exposure",
            "sim-1",
            start + 2_000_001,
            {"experiment": "sim", "variant": "green"},
        )
    )
    events.append(
        _event(
            "unknown",
            "experiment.exposure",
            "sim-x",
            start + 2_000_000,
            {"experiment": "sim", "variant": "blue"},
        )
    )
    await _feed(service, events)

    async def done() -> pb.GetResultsResponse:
        try:
            r = await s.GetResults(pb.GetResultsRequest(experiment_key="sim"), metadata=READ)
        except grpc.aio.AioRpcError as e:
            raise AssertionError("not projected yet") from e
        assert r.unknown_variant_exposures == 1
        assert sum(r.srm.users) + r.multiple_exposures == users
        return r

    # A bound, not a measure: 9,000 events take seconds, longer on a loaded machine.
    r = await assert_eventually(done, timeout=90)
    assert r.multiple_exposures == 1
    assert r.srm.mismatch and r.srm.p_value < 0.001
    purchase = r.metrics[0]
    assert purchase.metric == "purchase" and purchase.role == pb.METRIC_ROLE_GOAL
    green = purchase.variants[1]
    assert green.lift > 0.2 and green.p_value < 0.01
    assert green.adjusted_p_value >= green.p_value
    assert r.decision.kind == pb.DECISION_KIND_KEEP_RUNNING  # SRM blocks shipping
    assert r.log_position > 0
    bayes = await s.GetResults(
        pb.GetResultsRequest(experiment_key="sim", engine=pb.STATS_ENGINE_BAYESIAN), metadata=READ
    )
    assert bayes.metrics[0].variants[1].chance_to_win > 0.99
    cuped = await s.GetResults(
        pb.GetResultsRequest(experiment_key="sim", cuped=True, sequential=True), metadata=READ
    )
    assert cuped.metrics[1].variants[1].ci_upper > cuped.metrics[1].variants[1].ci_lower
