"""Domain errors and their one mapping to gRPC statuses with google.rpc details."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request and what is wrong with it."""

    field: str
    description: str


@dataclass
class NorthstarError(Exception):
    """Base of every error a service answers on purpose; carries its gRPC code."""

    message: str
    code: grpc.StatusCode = field(default=grpc.StatusCode.INTERNAL, init=False)
    reason: str = ""

    def __str__(self) -> str:
        return self.message

    def details(self) -> list[any_pb2.Any]:
        """google.rpc detail messages for the status."""
        # Every status carries an ErrorInfo (AIP-193): the specific reason, or the code's name.
        info = error_details_pb2.ErrorInfo(reason=self.reason or self.code.name, domain="northstar")
        return [_pack(info)]


@dataclass
class InvalidArgument(NorthstarError):
    """The request is malformed; `violations` name each bad field."""

    violations: Sequence[FieldViolation] = ()
    code: grpc.StatusCode = field(default=grpc.StatusCode.INVALID_ARGUMENT, init=False)

    def details(self) -> list[any_pb2.Any]:
        """A BadRequest with one FieldViolation per problem."""
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=clip(v.field), description=clip(v.description)
                )
                for v in self.violations
            ]
        )
        return [*super().details(), _pack(bad)]


@dataclass
class NotFound(NorthstarError):
    """The named resource does not exist for this tenant."""

    resource_type: str = ""
    resource_name: str = ""
    code: grpc.StatusCode = field(default=grpc.StatusCode.NOT_FOUND, init=False)

    def details(self) -> list[any_pb2.Any]:
        """A ResourceInfo naming what was not found."""
        info = error_details_pb2.ResourceInfo(
            resource_type=self.resource_type, resource_name=clip(self.resource_name)
        )
        return [*super().details(), _pack(info)]


@dataclass
class AlreadyExists(NorthstarError):
    """The resource exists already."""

    code: grpc.StatusCode = field(default=grpc.StatusCode.ALREADY_EXISTS, init=False)


@dataclass
class FailedPrecondition(NorthstarError):
    """The system is not in a state that allows the operation."""

    subject: str = ""
    code: grpc.StatusCode = field(default=grpc.StatusCode.FAILED_PRECONDITION, init=False)

    def details(self) -> list[any_pb2.Any]:
        """A PreconditionFailure naming the violated condition."""
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=self.reason or "STATE",
                    subject=clip(self.subject),
                    description=clip(self.message),
                )
            ]
        )
        return [*super().details(), _pack(failure)]


@dataclass
class Aborted(NorthstarError):
    """A concurrency conflict: the stated version is stale; nothing was written."""

    code: grpc.StatusCode = field(default=grpc.StatusCode.ABORTED, init=False)


@dataclass
class Unauthenticated(NorthstarError):
    """No valid API key."""

    code: grpc.StatusCode = field(default=grpc.StatusCode.UNAUTHENTICATED, init=False)


@dataclass
class PermissionDenied(NorthstarError):
    """The key lacks the scope the operation needs."""

    code: grpc.StatusCode = field(default=grpc.StatusCode.PERMISSION_DENIED, init=False)


@dataclass
class ResourceExhausted(NorthstarError):
    """A limit was hit; `retry_after_seconds` says when to come back."""

    retry_after_seconds: float = 1.0
    code: grpc.StatusCode = field(default=grpc.StatusCode.RESOURCE_EXHAUSTED, init=False)

    def details(self) -> list[any_pb2.Any]:
        """A RetryInfo with the delay."""
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_seconds * 1e9))
        return [*super().details(), _pack(error_details_pb2.RetryInfo(retry_delay=delay))]


@dataclass
class Unavailable(NorthstarError):
    """A dependency (the log, the database) is unreachable; retry with backoff."""

    retry_after_seconds: float = 0.5
    code: grpc.StatusCode = field(default=grpc.StatusCode.UNAVAILABLE, init=False)

    def details(self) -> list[any_pb2.Any]:
        """A RetryInfo with the suggested delay."""
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_seconds * 1e9))
        return [*super().details(), _pack(error_details_pb2.RetryInfo(retry_delay=delay))]


@dataclass
class DeadlineExceeded(NorthstarError):
    """The caller's deadline passed before the work was done."""

    code: grpc.StatusCode = field(default=grpc.StatusCode.DEADLINE_EXCEEDED, init=False)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


# Messages often quote what the client sent. gRPC clients refuse trailing metadata over 16 KiB
# (the status travels there twice: grpc-message and grpc-status-details-bin), so a quoted
# 70 KB string would turn a clear INVALID_ARGUMENT into a transport error on the client.
MAX_TEXT_CHARS = 1_000


def clip(text: str) -> str:
    """`text`, cut to MAX_TEXT_CHARS characters with an ellipsis when longer."""
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def to_rpc_status(error: NorthstarError) -> status_pb2.Status:
    """The google.rpc.Status of an error (code, message, details), texts clipped."""
    code_value = getattr(code_pb2, error.code.name)
    return status_pb2.Status(code=code_value, message=clip(error.message), details=error.details())
