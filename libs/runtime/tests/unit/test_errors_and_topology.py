"""Error mapping to google.rpc statuses, and the naming of streams and schemas."""

from __future__ import annotations

import asyncpg
import grpc
from google.rpc import code_pb2, error_details_pb2

from northstar_runtime.db import unreachable
from northstar_runtime.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    to_rpc_status,
)
from northstar_runtime.topology import Topology


def test_invalid_argument_carries_bad_request_details() -> None:
    error = InvalidArgument(
        "bad", reason="X", violations=[FieldViolation("from_date", "must be a date")]
    )
    status = to_rpc_status(error)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert status.code == code_pb2.INVALID_ARGUMENT
    bad = error_details_pb2.BadRequest()
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "X"
    assert status.details[1].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("from_date", "must be a date")
    ]


def test_resource_exhausted_carries_retry_info() -> None:
    status = to_rpc_status(ResourceExhausted("slow down", retry_after_seconds=1.5))
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)
    assert retry.retry_delay.ToNanoseconds() == 1_500_000_000


def test_a_database_that_cannot_be_reached_is_unavailable_not_a_crash() -> None:
    # What asyncpg raises while PostgreSQL restarts: the caller is told to retry.
    for driver_error in (
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        ),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation"),
    ):
        error = unreachable(driver_error)
        assert error is not None, driver_error
        assert error.code is grpc.StatusCode.UNAVAILABLE and error.reason == "DB_UNAVAILABLE"
        retry = error_details_pb2.RetryInfo()
        assert any(d.Unpack(retry) for d in to_rpc_status(error).details)
    # A bug or a constraint stays what it is (INTERNAL, or the adapter's own mapping).
    assert unreachable(ValueError("a bug")) is None
    assert unreachable(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None


def test_not_found_names_the_resource() -> None:
    status = to_rpc_status(NotFound("no", resource_type="experiment", resource_name="exp-1"))
    info = error_details_pb2.ResourceInfo()
    assert any(d.Unpack(info) for d in status.details)
    assert (info.resource_type, info.resource_name) == ("experiment", "exp-1")


def test_topology_names() -> None:
    prod = Topology()
    assert prod.events_stream == "EVENTS"
    assert prod.events_subject("acme", 3) == "events.acme.3"
    assert prod.events_partition_filter(3) == "events.*.3"
    assert prod.domain_subject("metrics", "acme", "kpi_config") == "domain.metrics.acme.kpi_config"
    assert prod.schema("metrics") == "metrics"
    test = Topology("t0a")
    assert test.events_stream == "T0A_EVENTS"
    assert test.events_subjects == "t0a.events.>"
    assert test.schema("metrics") == "t0a_metrics"
    assert test.consumer("metrics", "activity") == "T0A_metrics_activity"
