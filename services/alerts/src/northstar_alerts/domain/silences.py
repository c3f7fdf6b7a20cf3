"""The silence aggregate: its events, its validation, how it folds.

Pure: no I/O, no clock (`now` is passed in). A silence mutes the notifications of alerts
whose labels match every matcher, from `starts_at` until `ends_at` or its expiry,
whichever is first; evaluation goes on (`state.evaluate` consults the active silences).
Its events live on `domain.alerts.<tenant>.silence.<silence_id>`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from northstar_alerts.domain.rules import label_key_ok
from northstar_alerts.domain.state import Silence
from northstar_runtime.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound

SCHEMA_VERSION = "1"
CREATED = "SilenceCreated"
EXPIRED = "SilenceExpired"

PENDING = "pending"
ACTIVE = "active"
ENDED = "expired"

MAX_MATCHERS = 32
MAX_TEXT = 1_000
# Timestamps a silence may carry: after 1970, before the year 10000.
_LAST_TIME = 253_402_300_799.0


@dataclass(frozen=True, slots=True)
class SilenceEvent:
    """One change of a silence: created (`silence` set) or expired (`at` set)."""

    type: str
    key: str
    silence: Silence | None = None
    at: float | None = None
    actor: str = ""


@dataclass(frozen=True, slots=True)
class SilenceState:
    """A silence as folded from its events."""

    silence: Silence
    version: int


def end_of(silence: Silence) -> float:
    """When the silence stops muting: its end, or its expiry if earlier."""
    if silence.expired_at is None:
        return silence.ends_at
    return min(silence.ends_at, silence.expired_at)


def status_at(silence: Silence, at: float) -> str:
    """pending (starts later), active, or expired (ended or expired) at `at`."""
    if at >= end_of(silence):
        return ENDED
    return PENDING if at < silence.starts_at else ACTIVE


def _time_ok(t: float) -> bool:
    return math.isfinite(t) and 0 < t <= _LAST_TIME


def validate(silence: Silence, now: float) -> None:
    """Raise InvalidArgument naming every bad field of a new silence."""
    v: list[FieldViolation] = []
    if not silence.matchers:
        v.append(FieldViolation("silence.matchers", "at least one matcher is required"))
    if len(silence.matchers) > MAX_MATCHERS:
        v.append(FieldViolation("silence.matchers", f"at most {MAX_MATCHERS} matchers"))
    for key, value in silence.matchers.items():
        if not label_key_ok(key):
            v.append(
                FieldViolation(f"silence.matchers.{key[:64]}", "must match [a-zA-Z_][a-zA-Z0-9_]*")
            )
        elif not value or len(value) > MAX_TEXT or "\x00" in value:
            v.append(
                FieldViolation(
                    f"silence.matchers.{key}", f"value must be 1 to {MAX_TEXT} characters"
                )
            )
    for name, t in (("starts_at", silence.starts_at), ("ends_at", silence.ends_at)):
        if not _time_ok(t):
            v.append(FieldViolation(f"silence.{name}", "must be a time after 1970"))
    if _time_ok(silence.starts_at) and _time_ok(silence.ends_at):
        if silence.ends_at <= silence.starts_at:
            v.append(FieldViolation("silence.ends_at", "must be after starts_at"))
        elif silence.ends_at <= now:
            v.append(FieldViolation("silence.ends_at", "must be in the future"))
    for name, text in (("reason", silence.reason), ("author", silence.author)):
        if not text.strip():
            v.append(FieldViolation(f"silence.{name}", "required"))
        elif len(text) > MAX_TEXT or "\x00" in text:
            v.append(FieldViolation(f"silence.{name}", f"at most {MAX_TEXT} characters"))
    if v:
        raise InvalidArgument("invalid silence", violations=v)


def decide_create(silence: Silence, now: float, actor: str) -> SilenceEvent:
    """A new silence (its id chosen by the caller, never used before)."""
    validate(silence, now)
    return SilenceEvent(CREATED, silence.silence_id, silence=silence, actor=actor)


def decide_expire(
    state: SilenceState | None, silence_id: str, now: float, actor: str
) -> SilenceEvent:
    """End a silence now; FailedPrecondition when it no longer mutes."""
    if state is None:
        raise NotFound(f"silence {silence_id!r} does not exist", reason="SILENCE_NOT_FOUND")
    if status_at(state.silence, now) == ENDED:
        raise FailedPrecondition(f"silence {silence_id!r} already ended", reason="SILENCE_ENDED")
    return SilenceEvent(EXPIRED, silence_id, at=now, actor=actor)


def evolve(state: SilenceState | None, event: SilenceEvent, version: int) -> SilenceState | None:
    """Fold one event into the state."""
    if event.type == CREATED and event.silence is not None:
        return SilenceState(event.silence, version)
    if event.type == EXPIRED and state is not None and event.at is not None:
        return SilenceState(replace(state.silence, expired_at=event.at), version)
    return state


def event_to_json(event: SilenceEvent) -> dict[str, Any]:
    """An event as JSON-ready data."""
    silence = None
    if event.silence is not None:
        silence = {**asdict(event.silence), "matchers": dict(event.silence.matchers)}
    return {
        "type": event.type,
        "key": event.key,
        "actor": event.actor,
        "silence": silence,
        "at": event.at,
    }


def event_from_json(data: dict[str, Any]) -> SilenceEvent:
    """The event `event_to_json` wrote."""
    s = data.get("silence")
    silence = None
    if s is not None:
        silence = Silence(
            silence_id=s["silence_id"],
            matchers=dict(s["matchers"]),
            starts_at=float(s["starts_at"]),
            ends_at=float(s["ends_at"]),
            reason=s["reason"],
            author=s["author"],
            expired_at=s.get("expired_at"),
        )
    return SilenceEvent(data["type"], data["key"], silence, data.get("at"), data.get("actor", ""))
