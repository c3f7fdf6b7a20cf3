"""The log's envelope: how product events and domain events are encoded.

Product events travel as `northstar.log.v1.EventBatch` protobuf messages, one
per (request, partition); a user's erasure travels on the same subjects as a
`northstar.log.v1.UserErased` message, in order with the user's events. Headers
say what a message is and in which schema version, so readers can upcast old
versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from northstar.log.v1 import log_pb2

TYPE_HEADER = "Northstar-Type"
SCHEMA_HEADER = "Northstar-Schema"
EVENT_BATCH = "EventBatch"
EVENT_BATCH_SCHEMA = "1"
USER_ERASED = "UserErased"
USER_ERASED_SCHEMA = "1"


class UnknownRecord(ValueError):
    """A log entry of a type or schema version this reader does not know."""


def encode_batch(
    tenant: str, partition: int, events: Sequence[log_pb2.StoredEvent]
) -> tuple[bytes, dict[str, str]]:
    """Payload and headers of one EventBatch message."""
    return encode_built_batch(log_pb2.EventBatch(tenant=tenant, partition=partition, events=events))


def new_batch(tenant: str, partition: int) -> log_pb2.EventBatch:
    """An empty EventBatch; add its StoredEvents in place with `batch.events.add(...)`.

    Cheaper than building StoredEvents for `encode_batch`, which copies each of them
    into the batch: the same bytes come out either way.
    """
    return log_pb2.EventBatch(tenant=tenant, partition=partition)


def encode_built_batch(batch: log_pb2.EventBatch) -> tuple[bytes, dict[str, str]]:
    """Payload and headers of one EventBatch message built in place (`new_batch`)."""
    return batch.SerializeToString(), {TYPE_HEADER: EVENT_BATCH, SCHEMA_HEADER: EVENT_BATCH_SCHEMA}


def encode_erasure(erasure: log_pb2.UserErased) -> tuple[bytes, dict[str, str]]:
    """Payload and headers of one UserErased message."""
    headers = {TYPE_HEADER: USER_ERASED, SCHEMA_HEADER: USER_ERASED_SCHEMA}
    return erasure.SerializeToString(), headers


def decode_events_entry(
    data: bytes, headers: Mapping[str, str]
) -> log_pb2.EventBatch | log_pb2.UserErased:
    """Decode an entry of the events stream: an EventBatch or a UserErased.

    Raises UnknownRecord for anything else.
    """
    if headers.get(TYPE_HEADER) == USER_ERASED:
        schema = headers.get(SCHEMA_HEADER, USER_ERASED_SCHEMA)
        if schema != USER_ERASED_SCHEMA:
            raise UnknownRecord(f"not a UserErased v1: v{schema}")
        return log_pb2.UserErased.FromString(data)
    return decode_batch(data, headers)


def decode_batch(data: bytes, headers: Mapping[str, str]) -> log_pb2.EventBatch:
    """Decode an EventBatch; raises UnknownRecord for anything else."""
    kind = headers.get(TYPE_HEADER, EVENT_BATCH)
    schema = headers.get(SCHEMA_HEADER, EVENT_BATCH_SCHEMA)
    if kind != EVENT_BATCH or schema != EVENT_BATCH_SCHEMA:
        raise UnknownRecord(f"not an EventBatch v1: {kind} v{schema}")
    return log_pb2.EventBatch.FromString(data)
