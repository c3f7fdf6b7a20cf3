"""TrackStream answers each request in order; health and reflection answer as standard."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from northstar.ingest.v1 import ingest_pb2

from .conftest import (
    ACCEPTED,
    DUPLICATE,
    REJECTED,
    SERVICE_NAME,
    WRITER_KEY,
    IngestUnderTest,
    auth,
    error_details,
    event,
    statuses,
)


def stream_request(request_id: str, *events: ingest_pb2.Event) -> ingest_pb2.TrackStreamRequest:
    return ingest_pb2.TrackStreamRequest(events=events, request_id=request_id)


async def test_one_response_per_request_in_order(ingest: IngestUnderTest) -> None:
    # More requests than the service keeps in flight, of very different sizes, so a
    # small late request would overtake a large early one if order were not kept.
    requests = []
    for n in range(10):
        size = 400 if n % 3 == 0 else 1
        requests.append(
            stream_request(f"req-{n}", *[event(f"s{n}-{i}", user_id=f"u-{i}") for i in range(size)])
        )
    requests.append(stream_request("req-dup", event("s1-0", user_id="u-0")))
    requests.append(
        stream_request("req-mixed", event("m-ok", user_id="u-1"), event("m-bad", "bad name"))
    )
    requests.append(stream_request("", event("no-request-id", user_id="u-1")))

    call = ingest.stub.TrackStream(iter(requests), metadata=auth(WRITER_KEY), timeout=30)
    responses = [r async for r in call]

    assert [r.request_id for r in responses] == [r.request_id for r in requests]
    for request, response in zip(requests[:10], responses[:10], strict=True):
        assert [r.event_id for r in response.results] == [e.event_id for e in request.events]
        assert [r.index for r in response.results] == list(range(len(request.events)))
        assert statuses(response) == [ACCEPTED] * len(request.events)
        assert (response.accepted, response.duplicate, response.rejected) == (
            len(request.events),
            0,
            0,
        )
    assert statuses(responses[10]) == [DUPLICATE]
    assert statuses(responses[11]) == [ACCEPTED, REJECTED]
    assert responses[11].results[1].rejection.rule == "pattern"
    assert statuses(responses[12]) == [ACCEPTED]
    assert await call.code() == grpc.StatusCode.OK

    accepted = {e.event_id for r in requests[:10] for e in r.events} | {"m-ok", "no-request-id"}
    assert set(await ingest.logged_by_id()) == accepted


async def test_responses_come_as_requests_arrive(ingest: IngestUnderTest) -> None:
    call = ingest.stub.TrackStream(metadata=auth(WRITER_KEY), timeout=30)
    for n in range(3):
        await call.write(stream_request(f"live-{n}", event(f"live-{n}", user_id="u-1")))
        response = await call.read()
        assert response.request_id == f"live-{n}"
        assert statuses(response) == [ACCEPTED]
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_an_invalid_request_ends_the_stream_after_the_answers_before_it(
    ingest: IngestUnderTest,
) -> None:
    call = ingest.stub.TrackStream(metadata=auth(WRITER_KEY), timeout=30)
    await call.write(stream_request("good", event("good-1", user_id="u-1")))
    first = await call.read()
    assert (first.request_id, statuses(first)) == ("good", [ACCEPTED])
    await call.write(stream_request("empty"))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call.read()
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(failed.value).violated_fields == ["events"]


async def test_health_is_serving_once_started(ingest: IngestUnderTest) -> None:
    assert await ingest.health() == health_pb2.HealthCheckResponse.SERVING
    assert await ingest.health(SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await ingest.health("no.such.Service")
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_ingest_service(ingest: IngestUnderTest) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(ingest.channel)
    call = stub.ServerReflectionInfo(
        iter(
            [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME),
            ]
        ),
        timeout=10,
    )
    answers = [a async for a in call]
    listed = {s.name for s in answers[0].list_services_response.service}
    assert SERVICE_NAME in listed
    assert "grpc.health.v1.Health" in listed
    assert answers[1].file_descriptor_response.file_descriptor_proto
