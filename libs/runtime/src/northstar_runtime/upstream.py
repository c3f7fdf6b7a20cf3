"""Calls from one Northstar service to another, as a tenant.

A service that reads other services' numbers for many tenants (alerts reading metrics,
reports reading metrics, experiments and alerts) holds a key with the `service` scope and
sends `x-northstar-tenant` on every call; auth.py then serves it as that tenant with the
`read` scope only. Every call has its own deadline; only UNAVAILABLE and
DEADLINE_EXCEEDED are retried, with jittered backoff and a bounded number of tries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from northstar_runtime.auth import TENANT_HEADER
from northstar_runtime.tls import channel_credentials

R = TypeVar("R", bound=Message)

TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How a client reaches an upstream: plain, or TLS (system CAs unless `ca_file`),
    with a client certificate for a server that requires mutual TLS."""

    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate and its key go together")

    @property
    def in_use(self) -> bool:
        """True when the channel is TLS (asked for, or implied by a CA file)."""
        return self.enabled or self.ca_file is not None


def open_channel(address: str, tls: ClientTls | None = None) -> grpc.aio.Channel:
    """A channel to `address` (host:port), kept alive across idle periods."""
    options = [("grpc.keepalive_time_ms", 30_000)]
    if tls is not None and tls.in_use:
        creds = channel_credentials(tls.ca_file, tls.cert_file, tls.key_file)
        return grpc.aio.secure_channel(address, creds, options=options)
    return grpc.aio.insecure_channel(address, options=options)


def tenant_metadata(service_key: str, tenant: str) -> tuple[tuple[str, str], ...]:
    """Call metadata reading as `tenant` with a `service`-scope key."""
    return (("authorization", f"Bearer {service_key}"), (TENANT_HEADER, tenant))


def is_transient(error: BaseException) -> bool:
    """True for a call failure worth another try (UNAVAILABLE, DEADLINE_EXCEEDED)."""
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in TRANSIENT


class TenantCalls:
    """Unary calls made with a service key as a given tenant, each with the deadline,
    transient failures retried up to `attempts` tries in all."""

    def __init__(
        self, service_key: str, *, deadline_s: float, attempts: int = 1, backoff_s: float = 0.1
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._service_key = service_key
        self._deadline_s = deadline_s
        self._attempts = attempts
        self._backoff_s = backoff_s

    async def __call__(self, call: Callable[..., Awaitable[R]], request: Message, tenant: str) -> R:
        """`call(request)` as `tenant`; the last failure is raised as it came."""
        metadata = tenant_metadata(self._service_key, tenant)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=self._backoff_s, max=2.0),
            reraise=True,
        ):
            with attempt:
                return await call(request, metadata=metadata, timeout=self._deadline_s)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
