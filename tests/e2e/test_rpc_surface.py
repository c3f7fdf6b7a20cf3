"""Every RPC of every service, table-driven from the protos: authentication, scopes, bad input.

The table is built from each service's descriptor and its `SCOPES` map, so a method added to a
proto is covered without editing this file:

- no key, or an unknown key -> UNAUTHENTICATED; a key without the method's scope ->
  PERMISSION_DENIED; both with google.rpc details (an ErrorInfo reason);
- random bytes, and messages generated field by field from the descriptor (every scalar type
  with its edge values, unknown enum numbers, NaN and infinities, nested messages, repeated
  fields, maps, huge and non-ASCII strings), sent with an admin key: the answer is OK or a
  documented client-error status with details, never UNKNOWN or INTERNAL, never a crash, and
  the service still answers afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import message_factory, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.alerts.v1 import alerts_pb2
from northstar.experiments.v1 import experiments_pb2, experiments_pb2_grpc
from northstar.ingest.v1 import ingest_pb2
from northstar.metrics.v1 import metrics_pb2, metrics_pb2_grpc
from northstar.reports.v1 import reports_pb2
from northstar_alerts.bootstrap import build_host as build_alerts
from northstar_alerts.entrypoints.grpc import SCOPES as ALERTS_SCOPES
from northstar_alerts.settings import AlertsSettings
from northstar_experiments.bootstrap import build_host as build_experiments
from northstar_experiments.entrypoints.grpc import SCOPES as EXPERIMENTS_SCOPES
from northstar_experiments.settings import ExperimentsSettings
from northstar_harness.eventually import assert_eventually
from northstar_ingest.entrypoints.grpc import SCOPES as INGEST_SCOPES
from northstar_metrics.entrypoints.grpc import SCOPES as METRICS_SCOPES
from northstar_reports.bootstrap import build_host as build_reports
from northstar_reports.entrypoints.grpc import SCOPES as REPORTS_SCOPES
from northstar_reports.settings import ReportsSettings
from northstar_runtime.auth import Scope

from .conftest import (
    ADMIN_KEY,
    OTHER_TENANT_KEY,
    READER_KEY,
    WRITER_KEY,
    Suite,
    auth,
    settings_env,
)

# What a client mistake may be answered with. UNAVAILABLE and DEADLINE_EXCEEDED are not in it:
# on these idle test servers neither may happen.
CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# A key that lacks the scope each method needs (keys of tenant acme unless noted).
WITHOUT_SCOPE = {
    Scope.READ: WRITER_KEY,  # ingest only
    Scope.INGEST: READER_KEY,  # read only
    Scope.ADMIN: OTHER_TENANT_KEY,  # ingest + read
}
CALL_TIMEOUT = 20.0


@dataclass(frozen=True)
class Method:
    """One RPC: its path, types, the scope it needs and the port serving it."""

    service: str
    path: str
    descriptor: d.MethodDescriptor
    scope: Scope
    port: int

    @property
    def streaming(self) -> bool:
        """Client streaming (TrackStream): the request is sent as a one-message stream."""
        return self.descriptor.client_streaming

    def __repr__(self) -> str:
        return self.path


def _methods(file: Any, service: str, scopes: dict[str, Scope], port: int) -> Iterator[Method]:
    for m in file.DESCRIPTOR.services_by_name[service].methods:
        path = f"/{m.containing_service.full_name}/{m.name}"
        # A method missing from SCOPES falls back to admin in the interceptor: the table
        # must name every method, so a forgotten entry fails here rather than hiding.
        assert path in scopes, f"{path} has no scope in its service's SCOPES"
        yield Method(service, path, m, scopes[path], port)


@dataclass
class Surface:
    """The running services' methods, and a channel per port."""

    methods: list[Method]
    channels: dict[int, grpc.aio.Channel]


@pytest.fixture
async def surface(
    suite: Suite, nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[Surface]:
    """Ingest, metrics, experiments, alerts and reports running; every method of each."""
    experiments = build_experiments(
        ExperimentsSettings(**settings_env(nats_url, database_url, namespace)),  # type: ignore[arg-type]
        configure_process=False,
    )
    experiments_port = await experiments.start()
    alerts = build_alerts(
        AlertsSettings(
            **settings_env(nats_url, database_url, namespace),  # type: ignore[arg-type]
            alerts_evaluator_enabled=False,
        ),
        configure_process=False,
    )
    alerts_port = await alerts.start()
    reports = build_reports(
        ReportsSettings(
            **settings_env(nats_url, database_url, namespace),  # type: ignore[arg-type]
            reports_scheduler_enabled=False,
            metrics_service_address=f"127.0.0.1:{suite.metrics_host.port}",
            experiments_service_address=f"127.0.0.1:{experiments_port}",
            alerts_service_address=f"127.0.0.1:{alerts_port}",
            upstream_deadline_seconds=1.0,
        ),
        configure_process=False,
    )
    reports_port = await reports.start()
    ports = {
        "ingest": suite.ingest_host.port,
        "metrics": suite.metrics_host.port,
        "experiments": experiments_port,
        "alerts": alerts_port,
        "reports": reports_port,
    }
    methods = [
        *_methods(ingest_pb2, "IngestService", INGEST_SCOPES, ports["ingest"]),
        *_methods(metrics_pb2, "MetricsService", METRICS_SCOPES, ports["metrics"]),
        *_methods(experiments_pb2, "ExperimentsService", EXPERIMENTS_SCOPES, ports["experiments"]),
        *_methods(alerts_pb2, "AlertsService", ALERTS_SCOPES, ports["alerts"]),
        *_methods(reports_pb2, "ReportsService", REPORTS_SCOPES, ports["reports"]),
    ]
    channels = {p: grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in ports.values()}
    try:
        yield Surface(methods, channels)
    finally:
        for channel in channels.values():
            await channel.close()
        await reports.stop()
        await alerts.stop()
        await experiments.stop()


def _identity(b: bytes) -> bytes:
    return b


@dataclass(frozen=True)
class Answer:
    """How a call ended: the code, the google.rpc.Status details (if any), the message."""

    code: grpc.StatusCode
    status: status_pb2.Status | None = None
    message: str = ""


async def _call(channel: grpc.aio.Channel, method: Method, body: bytes, key: str | None) -> Answer:
    """Send raw request bytes; how the call ended."""
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    try:
        if method.streaming:
            call = channel.stream_stream(
                method.path, request_serializer=_identity, response_deserializer=_identity
            )(iter([body]), metadata=metadata, timeout=CALL_TIMEOUT)
            async for _ in call:
                pass
        elif method.descriptor.server_streaming:
            stream = channel.unary_stream(
                method.path, request_serializer=_identity, response_deserializer=_identity
            )(body, metadata=metadata, timeout=CALL_TIMEOUT)
            async for _ in stream:
                pass
        else:
            await channel.unary_unary(
                method.path, request_serializer=_identity, response_deserializer=_identity
            )(body, metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as e:
        return Answer(e.code(), _details(e.trailing_metadata()), e.details() or "")
    return Answer(grpc.StatusCode.OK)


def _details(trailing: Any) -> status_pb2.Status | None:
    for k, v in trailing or ():
        if k == "grpc-status-details-bin":
            return status_pb2.Status.FromString(v)
    return None


def _reason(status: status_pb2.Status | None) -> str:
    for any_ in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if any_.Unpack(info):
            return info.reason
    return ""


def _ids(methods: list[Method]) -> list[str]:
    return [m.path for m in methods]


async def test_every_method_is_in_the_table(surface: Surface) -> None:
    # 3 ingest + 14 metrics + 11 experiments + 13 alerts + 8 reports RPCs at the time of
    # writing; more is fine.
    assert len(surface.methods) >= 49
    alerts = {m.path.rsplit("/", 1)[1]: m.scope for m in surface.methods if "Alerts" in m.service}
    # Silences: admin to change, read to list.
    assert (alerts["CreateSilence"], alerts["ExpireSilence"], alerts["ListSilences"]) == (
        Scope.ADMIN,
        Scope.ADMIN,
        Scope.READ,
    )
    ingest = {m.path.rsplit("/", 1)[1]: m.scope for m in surface.methods if "Ingest" in m.service}
    # Erasing a user is an admin's act, never an ingest key's.
    assert ingest == {"Track": Scope.INGEST, "TrackStream": Scope.INGEST, "EraseUser": Scope.ADMIN}
    assert {m.service for m in surface.methods} == {
        "IngestService",
        "MetricsService",
        "ExperimentsService",
        "AlertsService",
        "ReportsService",
    }
    reports = {m.path.rsplit("/", 1)[1]: m.scope for m in surface.methods if "Reports" in m.service}
    # Changes and GenerateReport: admin; reads: read.
    assert {name for name, scope in reports.items() if scope is Scope.ADMIN} == {
        "CreateSchedule",
        "UpdateSchedule",
        "DeleteSchedule",
        "GenerateReport",
    }
    assert {name for name, scope in reports.items() if scope is Scope.READ} == {
        "GetSchedule",
        "ListSchedules",
        "GetReport",
        "ListReports",
    }


async def test_no_key_or_unknown_key_is_unauthenticated(surface: Surface) -> None:
    for method in surface.methods:
        channel = surface.channels[method.port]
        for key, reason in ((None, "MISSING_API_KEY"), ("not-a-key-0000", "INVALID_API_KEY")):
            answer = await _call(channel, method, b"", key)
            assert answer.code is grpc.StatusCode.UNAUTHENTICATED, (method, key, answer)
            assert _reason(answer.status) == reason, (method, key)


async def test_a_key_without_the_scope_is_permission_denied(surface: Surface) -> None:
    for method in surface.methods:
        answer = await _call(
            surface.channels[method.port], method, b"", WITHOUT_SCOPE[method.scope]
        )
        assert answer.code is grpc.StatusCode.PERMISSION_DENIED, (method, method.scope, answer)
        assert _reason(answer.status) == "MISSING_SCOPE", method


async def test_the_right_scope_gets_past_authentication(surface: Surface) -> None:
    # An empty request with a key that holds exactly the needed scope: whatever the method
    # answers, it is not an authentication or scope error, nor a server fault.
    exact = {Scope.READ: READER_KEY, Scope.INGEST: WRITER_KEY, Scope.ADMIN: ADMIN_KEY}
    for method in surface.methods:
        answer = await _call(surface.channels[method.port], method, b"", exact[method.scope])
        assert answer.code is grpc.StatusCode.OK or answer.code in CLIENT_ERRORS, (method, answer)


# --- bad input -------------------------------------------------------------------------------

_INT_RANGES = {
    d.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    d.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_TEXT = st.one_of(
    st.sampled_from(
        ["", "x", "user.signup", "workflow.run", "2026-01-01", "' OR 1=1 --", "\x00", "é" * 300]
    ),
    st.text(max_size=40),
    st.just("a" * 70_000),
)


def _scalar(field: d.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        return st.one_of(st.sampled_from([0, 1, -1 if lo < 0 else 2, lo, hi]), st.integers(lo, hi))
    if t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return st.one_of(
            st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e308, float("nan"), float("inf")]),
            st.floats(width=32 if t == d.FieldDescriptor.TYPE_FLOAT else 64),
        )
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == d.FieldDescriptor.TYPE_STRING:
        return _TEXT
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from([b"{}", b'{"a": [1, {', b"\xff"]))
    if t == d.FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-5, 1_000))
    raise AssertionError(f"unhandled field type {t} of {field.full_name}")


def _is_map(field: d.FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@st.composite
def _message(draw: st.DrawFn, desc: d.Descriptor, depth: int = 0) -> Message:
    """A message of `desc` with a random subset of its fields set to random values."""
    cls = message_factory.GetMessageClass(desc)
    msg = cls()
    if depth > 4:
        return msg
    fields = list(desc.fields)
    chosen = (
        draw(st.lists(st.sampled_from(fields), max_size=len(fields), unique=True)) if fields else []
    )
    for field in chosen:
        if _is_map(field):
            key_f, value_f = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            target = getattr(msg, field.name)
            for _ in range(draw(st.integers(0, 3))):
                k = draw(_scalar(key_f))
                if value_f.message_type is not None:
                    target[k].CopyFrom(draw(_message(value_f.message_type, depth + 1)))
                else:
                    target[k] = draw(_scalar(value_f))
        elif field.is_repeated:
            target = getattr(msg, field.name)
            for _ in range(draw(st.integers(0, 4))):
                if field.message_type is not None:
                    target.add().CopyFrom(draw(_message(field.message_type, depth + 1)))
                else:
                    target.append(draw(_scalar(field)))
        elif field.message_type is not None:
            getattr(msg, field.name).CopyFrom(draw(_message(field.message_type, depth + 1)))
        else:
            setattr(msg, field.name, draw(_scalar(field)))
    return msg


def _bodies(method: Method) -> st.SearchStrategy[bytes]:
    generated = _message(method.descriptor.input_type).map(lambda m: m.SerializeToString())
    return st.one_of(generated, st.binary(max_size=256))


def _check_answer(method: Method, answer: Answer) -> None:
    assert answer.code is grpc.StatusCode.OK or answer.code in CLIENT_ERRORS, (method, answer)
    if answer.code is not grpc.StatusCode.OK:
        # Every error carries a google.rpc.Status with a machine-readable reason.
        status = answer.status
        assert status is not None and status.code == answer.code.value[0], (method, answer)
        assert _reason(status), (method, answer)


def _fuzz(method: Method, loop: asyncio.AbstractEventLoop, channel: grpc.aio.Channel) -> None:
    """Run hypothesis in a worker thread; the calls go back to the servers' event loop."""

    def send(body: bytes) -> Answer:
        future = asyncio.run_coroutine_threadsafe(_call(channel, method, body, ADMIN_KEY), loop)
        return future.result(timeout=CALL_TIMEOUT + 10)

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_bodies(method))
    def check(body: bytes) -> None:
        _check_answer(method, send(body))

    check()


def _fuzz_all(surface: Surface) -> Callable[[], None]:
    loop = asyncio.get_running_loop()

    def run() -> None:
        for method in surface.methods:
            _fuzz(method, loop, surface.channels[method.port])

    return run


@pytest.mark.timeout(600)
async def test_generated_and_random_requests_never_fault(surface: Surface) -> None:
    await asyncio.to_thread(_fuzz_all(surface))
    # Still serving: a plain call after the fuzzing is answered.
    for method in surface.methods:
        if method.path.endswith("/ActiveUsers"):
            request = metrics_pb2.ActiveUsersRequest(from_date="2026-01-01", to_date="2026-01-31")
            answer = await _call(
                surface.channels[method.port], method, request.SerializeToString(), READER_KEY
            )
            assert answer.code is grpc.StatusCode.OK, answer


# --- tenant isolation ------------------------------------------------------------------------


async def test_another_tenant_sees_and_changes_nothing(surface: Surface, suite: Suite) -> None:
    # acme creates an experiment and sends activity; globex (its own ingest + read key) asks
    # for the same ids and sees nothing, whatever id it crafts.
    experiments_port = next(m.port for m in surface.methods if m.service == "ExperimentsService")
    acme_exp = experiments_pb2_grpc.ExperimentsServiceStub(surface.channels[experiments_port])
    definition = experiments_pb2.ExperimentDefinition(
        name="isolation",
        variants=[
            experiments_pb2.Variant(key="a", weight=0.5),
            experiments_pb2.Variant(key="b", weight=0.5),
        ],
        coverage=1.0,
        goal_metrics=[
            experiments_pb2.Metric(
                name="signup", kind=experiments_pb2.METRIC_KIND_BINOMIAL, event="user.signup"
            )
        ],
    )
    await acme_exp.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(key="iso", definition=definition),
        metadata=auth(ADMIN_KEY),
    )
    at = timestamp_pb2.Timestamp()
    at.FromJsonString("2026-11-30T12:00:00Z")
    accepted = await suite.ingest.Track(
        ingest_pb2.TrackRequest(
            events=[
                ingest_pb2.Event(
                    event_id=f"iso-{i}", event="page.view", user_id=f"u{i}", timestamp=at
                )
                for i in range(5)
            ]
        ),
        metadata=auth(WRITER_KEY),
    )
    assert [r.status for r in accepted.results] == [ingest_pb2.EVENT_STATUS_ACCEPTED] * 5

    metrics = metrics_pb2_grpc.MetricsServiceStub(
        surface.channels[next(m.port for m in surface.methods if m.service == "MetricsService")]
    )
    day = metrics_pb2.ActiveUsersRequest(from_date="2026-11-30", to_date="2026-11-30")

    async def acme_counts() -> bool:
        r = await metrics.ActiveUsers(day, metadata=auth(READER_KEY))
        return r.days[0].dau == 5

    async def acme_sees_its_experiment() -> bool:
        listed = await acme_exp.ListExperiments(
            experiments_pb2.ListExperimentsRequest(), metadata=auth(READER_KEY)
        )
        return [e.key for e in listed.experiments] == ["iso"]

    # Both are visible to acme first, so globex's empty answers are isolation, not lag.
    await assert_eventually(acme_counts, timeout=30)
    await assert_eventually(acme_sees_its_experiment, timeout=30)
    other = auth(OTHER_TENANT_KEY)
    theirs = await metrics.ActiveUsers(day, metadata=other)
    assert theirs.days[0].dau == 0
    listed = await acme_exp.ListExperiments(
        experiments_pb2.ListExperimentsRequest(), metadata=other
    )
    assert list(listed.experiments) == []
    for call, request in (
        (acme_exp.GetExperiment, experiments_pb2.GetExperimentRequest(key="iso")),
        (acme_exp.GetResults, experiments_pb2.GetResultsRequest(experiment_key="iso")),
        (acme_exp.Assign, experiments_pb2.AssignRequest(experiment_key="iso", user_id="u1")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request, metadata=other)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
