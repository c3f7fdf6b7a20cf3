"""Event-sourced aggregates in the log: one subject per aggregate, versions are positions.

An aggregate's events live on `domain.<service>.<tenant>.<aggregate>.<key>`; its version
is the sequence of the subject's last message. A change states the version it saw and is
appended with JetStream's expected-last-subject-sequence header, so two concurrent changes
cannot both win (DESIGN.md rule 1). The command side folds the subject's own messages,
never a read model, so it cannot decide on a stale copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import nats.errors
import nats.js.errors

from northstar_runtime.codec import SCHEMA_HEADER, TYPE_HEADER
from northstar_runtime.errors import Aborted, AlreadyExists, Unavailable
from northstar_runtime.log import LogClient, LogConflict, LogError


class AggregateEvent(Protocol):
    """What the store needs of a domain event: its aggregate's key and its type name."""

    @property
    def key(self) -> str:
        """The aggregate's key."""
        ...

    @property
    def type(self) -> str:
        """The event's type name (the type header)."""
        ...


E = TypeVar("E", bound=AggregateEvent)
S = TypeVar("S")


class AggregateStore(Generic[E, S]):
    """Loads an aggregate by folding its subject; appends changes with OCC."""

    def __init__(
        self,
        log: LogClient,
        *,
        service: str,
        aggregate: str,
        noun: str,
        exists_reason: str,
        schema_version: str,
        decode: Callable[[bytes, dict[str, str] | None], E],
        encode: Callable[[E], bytes],
        evolve: Callable[[S | None, E, int], S | None],
    ) -> None:
        self._log = log
        self._service = service
        self._aggregate = aggregate
        self._noun = noun  # how messages name the aggregate: "experiment", "alert rule"
        self._exists_reason = exists_reason
        self._schema_version = schema_version
        self._decode = decode
        self._encode = encode
        self._evolve = evolve

    def subject(self, tenant: str, key: str) -> str:
        """The aggregate's subject."""
        return self._log.topology.domain_subject(self._service, tenant, self._aggregate, key)

    async def keys(self, tenant: str) -> list[str]:
        """The keys of every aggregate of this kind the tenant ever had (the stream's subjects)."""
        prefix = self.subject(tenant, "")
        try:
            info = await self._log.js.stream_info(
                self._log.topology.domain_stream, subjects_filter=f"{prefix}*"
            )
        except (nats.errors.Error, TimeoutError) as e:
            raise Unavailable("the log is unavailable", reason="LOG_UNAVAILABLE") from e
        subjects = info.state.subjects or {}
        return sorted(s[len(prefix) :] for s in subjects)

    async def load(self, tenant: str, key: str) -> tuple[S | None, list[tuple[int, E]]]:
        """The state and the (version, event) history; (None, []) when it does not exist."""
        stream = self._log.topology.domain_stream
        subject = self.subject(tenant, key)
        history: list[tuple[int, E]] = []
        state: S | None = None
        seq = 1
        try:
            last = await self._log.js.get_last_msg(stream, subject)
            while True:
                msg = await self._log.js.get_msg(stream, seq, subject=subject, next=True)
                event = self._decode(msg.data or b"", dict(msg.headers or {}))
                version = int(msg.seq or 0)
                state = self._evolve(state, event, version)
                history.append((version, event))
                if version >= int(last.seq or 0):
                    break
                seq = version + 1
        except nats.js.errors.NotFoundError:
            return state, history
        except (nats.errors.Error, TimeoutError) as e:
            raise Unavailable("the log is unavailable", reason="LOG_UNAVAILABLE") from e
        return state, history

    async def append(self, tenant: str, event: E, expected_version: int) -> int:
        """Append `event` if the subject is still at `expected_version`; its new version."""
        headers = {TYPE_HEADER: event.type, SCHEMA_HEADER: self._schema_version}
        try:
            stored = await self._log.append(
                self.subject(tenant, event.key),
                self._encode(event),
                expected_version=expected_version,
                headers=headers,
            )
        except LogConflict as e:
            if expected_version == 0:
                raise AlreadyExists(
                    f"{self._noun} {event.key!r} exists", reason=self._exists_reason
                ) from e
            raise Aborted(
                f"{self._noun} {event.key!r} changed since version {expected_version};"
                " read it again",
                reason="STALE_VERSION",
            ) from e
        except LogError as e:
            raise Unavailable("the log is unavailable", reason="LOG_UNAVAILABLE") from e
        return stored.seq
