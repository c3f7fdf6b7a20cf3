"""The gRPC server shell every service runs.

One interceptor authenticates the caller, binds request and trace ids into
structlog's context, starts a span (continuing the caller's trace from the
metadata), turns undecodable requests into INVALID_ARGUMENT and maps domain
errors to statuses with google.rpc details, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from northstar_runtime.auth import TENANT_HEADER, ApiKeyStore, Principal, Scope
from northstar_runtime.db import unreachable
from northstar_runtime.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NorthstarError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    to_rpc_status,
)

log = structlog.get_logger("northstar.grpc")
_tracer = trace.get_tracer("northstar.grpc")
_meter = metrics.get_meter("northstar.grpc")
_SECONDS_BUCKETS = [
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
]
# RED per RPC: rate and errors from the counter (by status code), duration from the histogram.
_requests = _meter.create_counter(
    "northstar_rpc_requests", unit="1", description="RPCs served, by method and status code"
)
_duration = _meter.create_histogram(
    "northstar_rpc_duration",
    unit="s",
    description="time to serve an RPC, by method and status code",
    explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
)

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


class TenantInFlight:
    """Bounds the RPCs each tenant has in flight, so one tenant cannot take a replica.

    `admit` raises RESOURCE_EXHAUSTED (with a retry delay) beyond `limit`; every admitted
    call is `release`d exactly once. A limit of 0 admits everything.
    """

    def __init__(self, limit: int, *, retry_after_seconds: float = 0.25) -> None:
        self._limit = limit
        self._retry_after = retry_after_seconds
        self._in_flight: dict[str, int] = {}

    def in_flight(self, tenant: str) -> int:
        """The tenant's RPCs admitted and not yet released."""
        return self._in_flight.get(tenant, 0)

    def admit(self, tenant: str) -> None:
        """Count one more RPC of `tenant`, or refuse it when the tenant is at its limit."""
        n = self._in_flight.get(tenant, 0)
        if self._limit and n >= self._limit:
            raise ResourceExhausted(
                f"this tenant already has {n} requests in flight on this replica; "
                "retry after the delay",
                reason="TENANT_CONCURRENCY",
                retry_after_seconds=self._retry_after,
            )
        self._in_flight[tenant] = n + 1

    def release(self, tenant: str) -> None:
        """One admitted RPC of `tenant` finished."""
        n = self._in_flight.get(tenant, 0) - 1
        if n > 0:
            self._in_flight[tenant] = n
        else:
            self._in_flight.pop(tenant, None)


PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
# Larger than any valid request so that oversize requests reach the service and get
# INVALID_ARGUMENT with the limit named (spec), not a bare transport error.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def current_principal() -> Principal:
    """The authenticated caller of the request being served."""
    return _principal.get()


def time_remaining(default: float) -> float:
    """Seconds left before the caller's deadline (`default` when it set none)."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return min(default, deadline - time.monotonic())


def require(scope: Scope) -> Principal:
    """The caller, if it holds `scope`; else PERMISSION_DENIED."""
    principal = current_principal()
    if not principal.has(scope):
        raise PermissionDenied(f"this operation needs the '{scope}' scope", reason="MISSING_SCOPE")
    return principal


@dataclass
class _Outcome:
    """The status code an RPC ended with, as the interceptor saw it."""

    code: grpc.StatusCode = grpc.StatusCode.OK


@contextlib.contextmanager
def _measured(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Iterator[_Outcome]:
    """Count the RPC and record its duration, labelled by method and final status code."""
    outcome = _Outcome()
    started = time.perf_counter()
    try:
        yield outcome
    except (asyncio.CancelledError, GeneratorExit):
        outcome.code = grpc.StatusCode.CANCELLED
        raise
    except (grpc.aio.AbortError, grpc.aio.UsageError):
        if outcome.code is grpc.StatusCode.OK:
            outcome.code = _aborted_code(context)
        raise
    except BaseException:
        if outcome.code is grpc.StatusCode.OK:
            outcome.code = grpc.StatusCode.UNKNOWN
        raise
    finally:
        attributes = {"method": method, "code": outcome.code.name}
        _requests.add(1, attributes)
        _duration.record(time.perf_counter() - started, attributes)


def _aborted_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """The code a servicer aborted with itself (grpcio keeps it on the context)."""
    with contextlib.suppress(Exception):
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            return code
    return grpc.StatusCode.UNKNOWN


class _Undecodable:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, UnicodeDecodeError) as e:
            return _Undecodable(e)

    return parse


def _check_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            "the request could not be parsed as the method's protobuf message",
            reason="UNPARSEABLE",
            violations=(),
        ) from request.error


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Authentication, request context, tracing and error mapping for every RPC."""

    def __init__(
        self, keys: ApiKeyStore, scopes: Mapping[str, Scope], in_flight: TenantInFlight
    ) -> None:
        self._keys = keys
        self._scopes = scopes
        self._in_flight = in_flight

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Wrap the method's handler; public health and reflection pass untouched."""
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        scope = self._scopes.get(method, Scope.ADMIN)
        return _wrap(
            handler, method, metadata, self._authenticate, scope, in_flight=self._in_flight
        )

    def _authenticate(self, metadata: Mapping[str, str], scope: Scope) -> Principal:
        header = metadata.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated(
                "missing API key: send metadata 'authorization: Bearer <key>'",
                reason="MISSING_API_KEY",
            )
        principal = self._keys.authenticate(key.strip())
        if principal is None:
            raise Unauthenticated("unknown or revoked API key", reason="INVALID_API_KEY")
        acting_for = metadata.get(TENANT_HEADER)
        if acting_for is not None:
            principal = principal.acting_for(acting_for)
        if not principal.has(scope):
            raise PermissionDenied(f"this method needs the '{scope}' scope", reason="MISSING_SCOPE")
        return principal


def _wrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    method: str,
    metadata: Mapping[str, str],
    authenticate: Callable[[Mapping[str, str], Scope], Principal],
    scope: Scope,
    *,
    in_flight: TenantInFlight,
) -> grpc.RpcMethodHandler[Any, Any]:
    request_id = metadata.get("x-request-id") or uuid.uuid4().hex

    async def enter(context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """Authenticate and admit the call; answers the tenant to release at the end."""
        principal = authenticate(metadata, scope)
        in_flight.admit(principal.tenant)
        _principal.set(principal)
        remaining = context.time_remaining()
        _deadline.set(None if remaining is None else time.monotonic() + remaining)
        structlog.contextvars.bind_contextvars(tenant=principal.tenant)
        return principal.tenant

    async def fail(
        context: grpc.aio.ServicerContext[Any, Any],
        error: Exception,
        span: trace.Span,
        outcome: _Outcome,
    ) -> None:
        error = unreachable(error) or error
        if isinstance(error, NorthstarError):
            status = to_rpc_status(error)
            level = "warning" if error.code is grpc.StatusCode.INTERNAL else "info"
            getattr(log, level)("rpc failed", code=error.code.name, error=status.message)
        else:
            log.exception("rpc crashed")
            error = NorthstarError("internal error; see the service logs", reason="INTERNAL")
            status = to_rpc_status(error)
        span.set_status(Status(StatusCode.ERROR, status.message))
        outcome.code = error.code
        await context.abort(
            error.code,
            status.message,
            trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
        )

    def span_for() -> Any:
        ctx = propagate.extract(metadata)
        structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
        return _tracer.start_as_current_span(method, context=ctx, kind=SpanKind.SERVER)

    if handler.unary_unary:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with _measured(method, context) as outcome, span_for() as span:
                tenant = None
                try:
                    _check_decoded(request)
                    tenant = await enter(context)
                    return await inner_uu(request, context)
                except Exception as e:
                    if isinstance(e, (grpc.aio.AbortError, grpc.aio.UsageError)):
                        raise
                    await fail(context, e, span, outcome)
                finally:
                    if tenant is not None:
                        in_flight.release(tenant)
                    structlog.contextvars.unbind_contextvars("request_id", "method", "tenant")
            return None

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    if handler.stream_stream:
        inner_ss: Any = handler.stream_stream

        async def stream_stream(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            with _measured(method, context) as outcome, span_for() as span:
                tenant = None
                try:
                    tenant = await enter(context)

                    async def decoded() -> AsyncIterator[Any]:
                        async for request in requests:
                            _check_decoded(request)
                            yield request

                    async for response in inner_ss(decoded(), context):
                        yield response
                except Exception as e:
                    if isinstance(e, (grpc.aio.AbortError, grpc.aio.UsageError)):
                        raise
                    await fail(context, e, span, outcome)
                finally:
                    if tenant is not None:
                        in_flight.release(tenant)
                    structlog.contextvars.unbind_contextvars("request_id", "method", "tenant")

        return grpc.stream_stream_rpc_method_handler(
            stream_stream,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    if handler.unary_stream:
        inner_us: Any = handler.unary_stream

        async def unary_stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            with _measured(method, context) as outcome, span_for() as span:
                tenant = None
                try:
                    _check_decoded(request)
                    tenant = await enter(context)
                    async for response in inner_us(request, context):
                        yield response
                except Exception as e:
                    if isinstance(e, (grpc.aio.AbortError, grpc.aio.UsageError)):
                        raise
                    await fail(context, e, span, outcome)
                finally:
                    if tenant is not None:
                        in_flight.release(tenant)
                    structlog.contextvars.unbind_contextvars("request_id", "method", "tenant")

        return grpc.unary_stream_rpc_method_handler(
            unary_stream,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler


def check_deadline(default: float = 30.0) -> float:
    """Seconds left for the current request; DEADLINE_EXCEEDED when none are."""
    remaining = time_remaining(default)
    if remaining <= 0:
        raise DeadlineExceeded("the request's deadline passed", reason="DEADLINE_EXCEEDED")
    return remaining


@dataclass
class GrpcServer:
    """A started gRPC server, its bound port and its health service."""

    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health's aio HealthServicer
    service_names: Sequence[str]

    async def set_serving(self, serving: bool) -> None:
        """Flip every service's health (and the overall "" entry)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, then drain in-flight calls for up to `grace` seconds."""
        await self.set_serving(False)
        await self.server.stop(grace)


class LateHandlers(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Method handlers registered after the server started.

    The server must answer health checks (NOT_SERVING) while the service is
    still connecting to NATS and PostgreSQL, but grpcio takes handlers only
    before `start()`. This handler is registered up front and answers
    UNIMPLEMENTED until the servicers are installed.
    """

    def __init__(self) -> None:
        self._methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The handler of a method, once installed."""
        return self._methods.get(details.method)

    def install(self, register: Sequence[Callable[[Any], None]]) -> None:
        """Run generated `add_*Servicer_to_server` functions against this table."""
        methods = self._methods

        class _Capture:
            def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
                """Generated code registers every method here too; the table below has them."""

            def add_registered_method_handlers(
                self, service_name: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
            ) -> None:
                for name, handler in handlers.items():
                    methods[f"/{service_name}/{name}"] = handler

        capture = _Capture()
        for add in register:
            add(capture)


async def create_server(
    address: str,
    *,
    keys: ApiKeyStore,
    scopes: Mapping[str, Scope],
    service_names: Sequence[str],
    credentials: grpc.ServerCredentials | None = None,
    tenant_max_in_flight: int = 0,
    max_concurrent_rpcs: int | None = None,
) -> tuple[GrpcServer, LateHandlers]:
    """Start a server on `address` (port 0 picks one) answering health (NOT_SERVING)
    and reflection at once; the servicers go into the returned LateHandlers. With
    `credentials` the port speaks TLS only (tls.server_credentials). Each tenant may have
    `tenant_max_in_flight` RPCs in flight (0: any number), and the server serves at most
    `max_concurrent_rpcs` at once; both answer RESOURCE_EXHAUSTED beyond."""
    late = LateHandlers()
    server = grpc.aio.server(
        interceptors=[ServerInterceptor(keys, scopes, TenantInFlight(tenant_max_in_flight))],
        handlers=[late],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ],
    )
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = (
        server.add_insecure_port(address)
        if credentials is None
        else server.add_secure_port(address, credentials)
    )
    if port == 0:
        raise OSError(f"could not bind gRPC address {address}")
    await server.start()
    grpc_server = GrpcServer(server, port, health_servicer, service_names)
    await grpc_server.set_serving(False)
    return grpc_server, late
