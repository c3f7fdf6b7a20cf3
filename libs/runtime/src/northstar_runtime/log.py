"""The log client: JetStream streams, publishing with dedup ids, and trace headers.

Driver errors are translated here, once, into LogUnavailable / LogConflict.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api
from opentelemetry import propagate
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from northstar_runtime.config import ServiceSettings
from northstar_runtime.tls import client_ssl_context
from northstar_runtime.topology import Topology

log = structlog.get_logger("northstar.log")
# JetStream errors that pass: a server error (500, e.g. "error creating store for stream"
# while its disk or file handles are short) or JetStream unavailable. Provisioning retries them.
_PASSING_JS_ERRORS: tuple[type[Exception], ...] = (
    nats.js.errors.ServerError,
    nats.js.errors.ServiceUnavailableError,
)
_PROVISIONING_ERRORS: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    *_PASSING_JS_ERRORS,
)

# JetStream's "wrong last sequence" error: an optimistic-concurrency conflict.
_WRONG_LAST_SEQUENCE = 10071


class LogError(Exception):
    """Base of the log client's errors."""


class LogUnavailable(LogError):
    """The log could not be reached or did not confirm in time; nothing is known stored."""


class LogConflict(LogError):
    """An expected-version publish found another version: nothing was written."""

    def __init__(self, subject: str, expected: int) -> None:
        super().__init__(f"{subject}: expected version {expected} is stale")
        self.subject = subject
        self.expected = expected


@dataclass(frozen=True, slots=True)
class Stored:
    """Where the log stored a message, and whether it was a duplicate of an earlier one."""

    stream: str
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to append: subject, payload, dedup id and extra headers."""

    subject: str
    payload: bytes
    msg_id: str | None = None
    headers: Mapping[str, str] | None = None


def trace_headers() -> dict[str, str]:
    """W3C trace context of the current span, for NATS headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """How the log connection proves itself and checks the server: TLS and credentials."""

    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    credentials_file: Path | None = None
    nkey_seed_file: Path | None = None

    @classmethod
    def from_settings(cls, s: ServiceSettings) -> NatsAuth:
        """The NATS_* security settings of a service."""
        return cls(
            tls_ca_file=s.nats_tls_ca_file,
            tls_cert_file=s.nats_tls_cert_file,
            tls_key_file=s.nats_tls_key_file,
            credentials_file=s.nats_credentials_file,
            nkey_seed_file=s.nats_nkey_seed_file,
        )

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of `nats.connect` for these settings."""
        options: dict[str, Any] = {}
        if self.tls_ca_file is not None or self.tls_cert_file is not None:
            options["tls"] = client_ssl_context(
                self.tls_ca_file, self.tls_cert_file, self.tls_key_file
            )
        if self.credentials_file is not None:
            options["user_credentials"] = str(self.credentials_file)
        if self.nkey_seed_file is not None:
            options["nkeys_seed"] = str(self.nkey_seed_file)
        return options


class LogClient:
    """One NATS connection and its JetStream context, shared by a process."""

    def __init__(self, nc: NatsClient, topology: Topology) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(publish_async_max_pending=20_000)
        self.topology = topology

    @classmethod
    async def connect(
        cls,
        url: str,
        topology: Topology,
        *,
        name: str,
        connect_timeout: float = 30.0,
        on_state: Callable[[bool], Awaitable[None]] | None = None,
        auth: NatsAuth | None = None,
    ) -> LogClient:
        """Connect, retrying with backoff for up to `connect_timeout` seconds.

        User and password travel in the URL (`nats://user:pass@host:4222`); TLS, client
        certificates, credentials files and NKey seeds come with `auth`.
        """
        security = (auth or NatsAuth()).connect_options()

        async def disconnected() -> None:
            log.warning("nats disconnected")
            if on_state:
                await on_state(False)

        async def reconnected() -> None:
            log.info("nats reconnected")
            if on_state:
                await on_state(True)

        async def error(e: Exception) -> None:
            log.warning("nats error", error=repr(e))

        nc: NatsClient | None = None
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((OSError, nats.errors.Error, asyncio.TimeoutError)),
            wait=wait_exponential_jitter(multiplier=0.1, max=2.0),
            stop=stop_after_delay(connect_timeout),
            reraise=True,
        ):
            with attempt:
                nc = await nats.connect(
                    url,
                    name=name,
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    # Notice a server that stopped answering within seconds, not the
                    # default two minutes: readiness and fast UNAVAILABLE depend on it.
                    ping_interval=2,
                    max_outstanding_pings=2,
                    # Bounded client-side buffer while disconnected: publishes fail fast
                    # instead of queueing without limit (DESIGN.md rule 4).
                    pending_size=8 * 1024 * 1024,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                    allow_reconnect=True,
                    **security,
                )
        assert nc is not None
        return cls(nc, topology)

    @property
    def connected(self) -> bool:
        """True while the connection is up."""
        return bool(self.nc.is_connected)

    async def close(self) -> None:
        """Flush and close the connection."""
        if not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), timeout=5)
            except (TimeoutError, nats.errors.Error):
                await self.nc.close()

    async def ensure_streams(
        self, *, replicas: int = 1, sync_always: bool = False, duplicate_window: float = 600.0
    ) -> None:
        """Create or update the EVENTS, DOMAIN and DEADLETTER streams (idempotent)."""
        t = self.topology

        def stream(name: str, subjects: str) -> api.StreamConfig:
            return api.StreamConfig(
                name=name,
                subjects=[subjects],
                storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS,
                num_replicas=replicas,
                duplicate_window=duplicate_window,
                max_msg_size=8 * 1024 * 1024,
                allow_direct=True,
            )

        configs = [
            stream(t.events_stream, t.events_subjects),
            stream(t.domain_stream, t.domain_subjects),
            stream(t.deadletter_stream, t.deadletter_subjects),
        ]
        for config in configs:
            if sync_always:
                config.sync_always = True  # type: ignore[attr-defined]
            await self._ensure_stream(config)

    async def _ensure_stream(self, config: api.StreamConfig) -> None:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_PASSING_JS_ERRORS),
                wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
                stop=stop_after_delay(15),
                reraise=True,
            ):
                with attempt:
                    try:
                        await self.js.add_stream(config)
                    except nats.js.errors.BadRequestError:
                        # Exists with another configuration (e.g. replicas changed).
                        await self.js.update_stream(config)
        except _PROVISIONING_ERRORS as e:
            raise LogUnavailable(f"could not provision stream {config.name}: {e!r}") from e

    async def publish_many(
        self, messages: Sequence[OutgoingMessage], *, timeout: float
    ) -> list[Stored]:
        """Append messages concurrently; all must be stored within `timeout` seconds.

        Raises LogUnavailable when any one is not confirmed: the caller then
        reports failure for the whole request and the client retries; the
        dedup ids make that retry safe.
        """
        if not self.nc.is_connected:
            raise LogUnavailable("the log is not connected")
        deadline = time.monotonic() + timeout
        base = trace_headers()
        futures: list[asyncio.Future[api.PubAck]] = []
        try:
            for m in messages:
                headers = dict(base)
                if m.headers:
                    headers.update(m.headers)
                if m.msg_id:
                    headers[api.Header.MSG_ID] = m.msg_id
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LogUnavailable("the log did not accept the messages in time")
                futures.append(
                    await self.js.publish_async(
                        m.subject, m.payload, wait_stall=remaining, headers=headers or None
                    )
                )
            remaining = max(0.0, deadline - time.monotonic())
            acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=remaining)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError) as e:
            for f in futures:
                f.cancel()
            if isinstance(e, nats.js.errors.APIError) and not isinstance(
                e, nats.js.errors.ServiceUnavailableError
            ):
                raise LogError(f"the log refused a message: {e}") from e
            raise LogUnavailable(f"the log did not confirm the messages in time: {e!r}") from e
        return [Stored(a.stream, a.seq, bool(a.duplicate)) for a in acks]

    async def append(
        self,
        subject: str,
        payload: bytes,
        *,
        expected_version: int | None = None,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Stored:
        """Append one message; with `expected_version`, only if the subject's last
        sequence equals it (0: the subject must be empty). Raises LogConflict otherwise.
        """
        if not self.nc.is_connected:
            raise LogUnavailable("the log is not connected")
        hdrs = trace_headers()
        if headers:
            hdrs.update(headers)
        if msg_id:
            hdrs[api.Header.MSG_ID] = msg_id
        if expected_version is not None:
            hdrs[api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(expected_version)
        try:
            ack = await self.js.publish(subject, payload, timeout=timeout, headers=hdrs)
        except nats.js.errors.APIError as e:
            if e.err_code == _WRONG_LAST_SEQUENCE and expected_version is not None:
                raise LogConflict(subject, expected_version) from e
            if isinstance(e, nats.js.errors.ServiceUnavailableError):
                raise LogUnavailable(str(e)) from e
            raise LogError(f"the log refused the message: {e}") from e
        except (TimeoutError, nats.errors.Error, OSError) as e:
            raise LogUnavailable(f"the log did not confirm the message: {e!r}") from e
        return Stored(ack.stream, ack.seq, bool(ack.duplicate))
