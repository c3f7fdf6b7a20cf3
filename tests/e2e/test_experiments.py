"""Experiments end to end: exposures and conversions through ingest, results detect the lift."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import timestamp_pb2

from northstar.experiments.v1 import experiments_pb2 as pb
from northstar.experiments.v1 import experiments_pb2_grpc
from northstar.ingest.v1 import ingest_pb2
from northstar_experiments.bootstrap import build_host as build_experiments
from northstar_experiments.domain.assignment import assign
from northstar_experiments.settings import ExperimentsSettings
from northstar_harness.eventually import assert_eventually

from .conftest import ADMIN_KEY, READER_KEY, WRITER_KEY, Suite, auth, settings_env


@pytest.fixture
async def experiments(
    suite: Suite, nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[experiments_pb2_grpc.ExperimentsServiceStub]:
    """The experiments service beside the suite's ingest."""
    host = build_experiments(
        ExperimentsSettings(**settings_env(nats_url, database_url, namespace)),  # type: ignore[arg-type]
        configure_process=False,
    )
    port = await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield experiments_pb2_grpc.ExperimentsServiceStub(channel)
    finally:
        await channel.close()
        await host.stop()


def _ts(us: int) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(us)
    return t


async def test_simulated_experiment_through_ingest(
    suite: Suite, experiments: experiments_pb2_grpc.ExperimentsServiceStub
) -> None:
    start = time.time_ns() // 1000 - 3_600_000_000
    d = pb.ExperimentDefinition(
        name="signup copy",
        variants=[pb.Variant(key="a", weight=0.5), pb.Variant(key="b", weight=0.5)],
        coverage=1.0,
        goal_metrics=[pb.Metric(name="signup", kind=pb.METRIC_KIND_BINOMIAL, event="user.signup")],
        analysis_start_us=start,
    )
    created = await experiments.CreateExperiment(
        pb.CreateExperimentRequest(key="copy", definition=d), metadata=auth(ADMIN_KEY)
    )
    await experiments.StartExperiment(
        pb.StartExperimentRequest(key="copy", expected_version=created.experiment.version),
        metadata=auth(ADMIN_KEY),
    )
    rng = random.Random(11)
    events = []
    for i in range(3000):
        uid = f"e2e-{i}"
        index, _n = assign("copy", uid, [0.5, 0.5], 1.0)
        ts = start + 1_000_000 + i * 100
        events.append(
            ingest_pb2.Event(
                event_id=f"exp-{i}",
                event="experiment.exposure",
                user_id=uid,
                timestamp=_ts(ts),
                properties_json=f'{{"experiment":"copy","variant":"{"ab"[index]}"}}',
            )
        )
        if rng.random() < (0.20 if index == 0 else 0.30):  # true relative lift: +50 %
            events.append(
                ingest_pb2.Event(
                    event_id=f"sig-{i}", event="user.signup", user_id=uid, timestamp=_ts(ts + 50)
                )
            )
    for i in range(0, len(events), 500):
        r = await suite.ingest.Track(
            ingest_pb2.TrackRequest(events=events[i : i + 500]), metadata=auth(WRITER_KEY)
        )
        assert r.rejected == 0

    async def analysed() -> pb.GetResultsResponse:
        try:
            r = await experiments.GetResults(
                pb.GetResultsRequest(experiment_key="copy"), metadata=auth(READER_KEY)
            )
        except grpc.aio.AioRpcError as e:
            raise AssertionError("not projected yet") from e
        assert sum(r.srm.users) == 3000
        return r

    r = await assert_eventually(analysed, timeout=60)
    b = r.metrics[0].variants[1]
    assert b.p_value < 0.001 and 0.3 < b.lift < 0.8
    assert b.ci_lower < 0.5 < b.ci_upper
    assert not r.srm.mismatch
    assert r.decision.kind == pb.DECISION_KIND_SHIP and r.decision.variant_key == "b"
