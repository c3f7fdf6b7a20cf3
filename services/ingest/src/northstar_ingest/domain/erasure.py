"""A user's erasure (EraseUser): the request's rules and the erasure's id."""

from __future__ import annotations

from collections.abc import Mapping

from northstar.log.v1 import log_pb2
from northstar_ingest.domain.validation import MAX_ID_CHARS
from northstar_runtime.erasure import is_erased_history, user_digest

__all__ = ["erasure_id", "only_erased_events", "user_id_problem"]


def user_id_problem(user_id: str) -> str | None:
    """Why `user_id` cannot name a user to erase, or None when it can.

    The same bounds as an event's user_id (spec/events.md), and not empty: an empty
    user_id is "no user", which has nothing to erase.
    """
    if not user_id:
        return "user_id is required"
    if len(user_id) > MAX_ID_CHARS:
        return f"user_id must be at most {MAX_ID_CHARS} characters"
    if "\x00" in user_id:
        return "user_id must not contain the character U+0000"
    return None


def erasure_id(tenant: str, user_id: str) -> str:
    """The id of a user's erasure: a function of (tenant, user_id) alone.

    So a repeated request is the same erasure, whatever ingest replica answers it and
    however late it is retried; it is also the log message's dedup id, so a retry inside
    JetStream's duplicate window appends nothing.
    """
    return f"erasure-{user_digest(tenant, user_id).hex()}"


def only_erased_events(
    batch: log_pb2.EventBatch, seq: int, erasures: Mapping[tuple[str, str], tuple[int, int]]
) -> bool | None:
    """Whether a logged batch (at `seq`) holds only erased history: True when every event
    is, None when some are beside others', False when none is.

    `erasures` maps (tenant, user_id) to the position and time of its latest erasure. An
    event is erased history when it came before that erasure in the log, or after it with
    a timestamp at or before the erasure time (the read models drop it).
    """
    erased = 0
    for e in batch.events:
        found = erasures.get((batch.tenant, e.user_id)) if e.user_id else None
        if found is not None and (seq < found[0] or is_erased_history(e.timestamp_us, found[1])):
            erased += 1
    if erased == 0:
        return False
    return True if erased == len(batch.events) else None
