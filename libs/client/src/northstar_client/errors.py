"""The client's errors: one per gRPC status, with the google.rpc details decoded once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "RETRYABLE_CODES",
    "FieldViolation",
    "NorthstarClientError",
    "RpcError",
    "from_grpc_error",
]

# Transient by contract: ingest stored nothing (UNAVAILABLE) or was asked to slow down
# (RESOURCE_EXHAUSTED); DEADLINE_EXCEEDED of one attempt is retried within the total budget.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
_DETAILS_KEY = "grpc-status-details-bin"


class NorthstarClientError(Exception):
    """Base of every error this package raises."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request (from a google.rpc.BadRequest)."""

    field: str
    description: str


@dataclass
class RpcError(NorthstarClientError):
    """A call failed with a gRPC status; details decoded from google.rpc.Status."""

    code: grpc.StatusCode
    message: str
    method: str = ""
    reason: str = ""
    retry_after: float | None = None
    violations: list[FieldViolation] = field(default_factory=list)
    attempts: int = 1

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.violations:
            text += "; " + "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        return text

    @property
    def retryable(self) -> bool:
        """Whether retrying the same request may succeed."""
        return self.code in RETRYABLE_CODES


def from_grpc_error(error: grpc.RpcError, *, method: str = "") -> RpcError:
    """Translate a grpc (sync or aio) error, decoding ErrorInfo, RetryInfo and BadRequest."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    message = error.details() if callable(getattr(error, "details", None)) else str(error)
    result = RpcError(code=code or grpc.StatusCode.UNKNOWN, message=message or "", method=method)
    trailers = (
        error.trailing_metadata() if callable(getattr(error, "trailing_metadata", None)) else None
    )
    for key, value in _pairs(trailers):
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = _parse_status(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                result.retry_after = info.retry_delay.ToNanoseconds() / 1e9
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                error_info = error_details_pb2.ErrorInfo()
                detail.Unpack(error_info)
                result.reason = error_info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                result.violations = [
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                ]
    return result


def _parse_status(value: bytes) -> status_pb2.Status:
    """The google.rpc.Status of the trailers; empty when malformed (the code still stands)."""
    status = status_pb2.Status()
    try:
        status.ParseFromString(value)
    except DecodeError:
        return status_pb2.Status()
    return status


def _pairs(metadata: object) -> Iterable[tuple[str, object]]:
    if not metadata:
        return ()
    pairs: list[tuple[str, object]] = []
    for item in metadata:  # type: ignore[attr-defined]
        key = getattr(item, "key", None)
        if key is not None:
            pairs.append((str(key), item.value))
        else:
            pairs.append((str(item[0]), item[1]))
    return pairs
