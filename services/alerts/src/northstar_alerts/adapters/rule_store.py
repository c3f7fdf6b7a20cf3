"""Alert rules in the log: one subject per rule, versions are log positions.

A rule's events live on `domain.alerts.<tenant>.rule.<rule_id>`; its
version is the sequence of the subject's last message. A change states the version it
saw and is appended with JetStream's expected-last-subject-sequence header, so two
concurrent changes cannot both win (DESIGN.md rule 1). The command side folds the
subject's own messages, never the read model, so it cannot decide on a stale copy.
"""

from __future__ import annotations

import nats.errors
import nats.js.errors
import orjson

from northstar_alerts.domain.rule_events import (
    SCHEMA_VERSION,
    RuleEvent,
    RuleState,
    event_from_json,
    event_to_json,
    evolve,
)
from northstar_runtime.codec import SCHEMA_HEADER, TYPE_HEADER, UnknownRecord
from northstar_runtime.errors import Aborted, AlreadyExists, Unavailable
from northstar_runtime.log import LogClient, LogConflict, LogError


def decode_event(data: bytes, headers: dict[str, str] | None) -> RuleEvent:
    """A rule event from a log message; UnknownRecord for another schema."""
    schema = (headers or {}).get(SCHEMA_HEADER, SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise UnknownRecord(f"alert rule event schema v{schema}")
    return event_from_json(orjson.loads(data))


class RuleStore:
    """Loads a rule by folding its subject; appends changes with OCC."""

    def __init__(self, log: LogClient) -> None:
        self._log = log

    def subject(self, tenant: str, key: str) -> str:
        """The aggregate's subject."""
        return self._log.topology.domain_subject("alerts", tenant, "rule", key)

    async def load(
        self, tenant: str, key: str
    ) -> tuple[RuleState | None, list[tuple[int, RuleEvent]]]:
        """The state and the (version, event) history; (None, []) when it does not exist."""
        stream = self._log.topology.domain_stream
        subject = self.subject(tenant, key)
        history: list[tuple[int, RuleEvent]] = []
        state: RuleState | None = None
        seq = 1
        try:
            last = await self._log.js.get_last_msg(stream, subject)
            while True:
                msg = await self._log.js.get_msg(stream, seq, subject=subject, next=True)
                event = decode_event(msg.data or b"", dict(msg.headers or {}))
                version = int(msg.seq or 0)
                state = evolve(state, event, version)
                history.append((version, event))
                if version >= int(last.seq or 0):
                    break
                seq = version + 1
        except nats.js.errors.NotFoundError:
            return state, history
        except (nats.errors.Error, TimeoutError) as e:
            raise Unavailable("the log is unavailable", reason="LOG_UNAVAILABLE") from e
        return state, history

    async def append(self, tenant: str, event: RuleEvent, expected_version: int) -> int:
        """Append `event` if the subject is still at `expected_version`; its new version."""
        headers = {TYPE_HEADER: event.type, SCHEMA_HEADER: SCHEMA_VERSION}
        try:
            stored = await self._log.append(
                self.subject(tenant, event.key),
                orjson.dumps(event_to_json(event)),
                expected_version=expected_version,
                headers=headers,
            )
        except LogConflict as e:
            if expected_version == 0:
                raise AlreadyExists(f"alert rule {event.key!r} exists", reason="RULE_EXISTS") from e
            raise Aborted(
                f"alert rule {event.key!r} changed since version {expected_version}; read it again",
                reason="STALE_VERSION",
            ) from e
        except LogError as e:
            raise Unavailable("the log is unavailable", reason="LOG_UNAVAILABLE") from e
        return stored.seq

    async def rule_ids(self, tenant: str) -> list[str]:
        """The ids of every rule the tenant ever had, from the stream's subject list."""
        prefix = self.subject(tenant, "")
        try:
            info = await self._log.js.stream_info(
                self._log.topology.domain_stream, subjects_filter=f"{prefix}*"
            )
        except (nats.errors.Error, TimeoutError) as e:
            raise Unavailable("the log is unavailable", reason="LOG_UNAVAILABLE") from e
        subjects = info.state.subjects or {}
        return sorted(s[len(prefix) :] for s in subjects)
