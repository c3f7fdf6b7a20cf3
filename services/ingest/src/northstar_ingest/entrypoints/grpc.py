"""The IngestService servicer: proto in, use case, proto out; nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar_ingest.application import (
    EraseUserCommand,
    Ingestor,
    Outcome,
    TrackCommand,
    TrackResult,
)
from northstar_runtime.auth import Scope
from northstar_runtime.grpc_server import check_deadline, current_principal

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
SCOPES = {
    f"/{SERVICE_NAME}/Track": Scope.INGEST,
    f"/{SERVICE_NAME}/TrackStream": Scope.INGEST,
    f"/{SERVICE_NAME}/EraseUser": Scope.ADMIN,
}
# Requests of one stream processed at once; answers still go out in order.
STREAM_PIPELINE = 4

_STATUS = {
    Outcome.ACCEPTED: ingest_pb2.EVENT_STATUS_ACCEPTED,
    Outcome.DUPLICATE: ingest_pb2.EVENT_STATUS_DUPLICATE,
    Outcome.REJECTED: ingest_pb2.EVENT_STATUS_REJECTED,
}


def _sent_at_us(request: Any) -> int | None:
    if not request.HasField("sent_at"):
        return None
    ts: timestamp_pb2.Timestamp = request.sent_at
    if not 0 <= ts.nanos <= 999_999_999:
        return -1  # not a valid Timestamp: refused as an invalid sent_at
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000


def _answer(
    response: ingest_pb2.TrackResponse | ingest_pb2.TrackStreamResponse, track: TrackResult
) -> None:
    """Write the per-event results and their tally into a response."""
    response.accepted = track.accepted
    response.duplicate = track.duplicate
    response.rejected = track.rejected
    # Added in place, field by field: building EventResult messages first and then
    # passing them to the response copies each one, and this runs per event.
    add = response.results.add
    for index, (event_id, outcome) in enumerate(zip(track.event_ids, track.outcomes, strict=True)):
        item = add()
        item.index = index
        item.event_id = event_id
        item.status = _STATUS[outcome]
    for index, rejection in track.rejections.items():
        why = response.results[index].rejection
        why.field = rejection.field
        why.rule = rejection.rule
        why.description = rejection.description


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """Track and TrackStream over the Ingestor use case."""

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor

    async def _track(self, request: Any) -> TrackResult:
        principal = current_principal()
        command = TrackCommand(
            tenant=principal.tenant,
            events=request.events,
            request_bytes=request.ByteSize(),
            sent_at_us=_sent_at_us(request),
            historical_import=request.historical_import,
            may_import=principal.has(Scope.ADMIN),
        )
        return await self._ingestor.track(command, timeout=check_deadline())

    async def Track(  # noqa: N802 - gRPC method name
        self, request: ingest_pb2.TrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ingest_pb2.TrackResponse:
        """Append a batch; one result per event."""
        response = ingest_pb2.TrackResponse()
        _answer(response, await self._track(request))
        return response

    async def EraseUser(  # noqa: N802 - gRPC method name
        self, request: ingest_pb2.EraseUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ingest_pb2.EraseUserResponse:
        """Append a user's erasure; answer its id and log position."""
        command = EraseUserCommand(tenant=current_principal().tenant, user_id=request.user_id)
        erasure = await self._ingestor.erase_user(command, timeout=check_deadline())
        response = ingest_pb2.EraseUserResponse(
            erasure_id=erasure.erasure_id, log_position=erasure.log_position
        )
        response.erased_at.FromMicroseconds(erasure.erased_at_us)
        return response

    async def TrackStream(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[ingest_pb2.TrackStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[ingest_pb2.TrackStreamResponse]:
        """Answer each request in order; at most STREAM_PIPELINE in flight (backpressure)."""
        pending: asyncio.Queue[tuple[str, asyncio.Task[TrackResult]] | None] = asyncio.Queue(
            maxsize=STREAM_PIPELINE
        )

        async def read() -> None:
            try:
                async for request in request_iterator:
                    task = asyncio.create_task(self._track(request))
                    await pending.put((request.request_id, task))
            finally:
                await pending.put(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await pending.get()) is not None:
                request_id, task = item
                response = ingest_pb2.TrackStreamResponse(request_id=request_id)
                _answer(response, await task)
                yield response
            await reader
        finally:
            reader.cancel()
            while not pending.empty():
                left = pending.get_nowait()
                if left is not None:
                    left[1].cancel()
