"""Use case: take erased users' events out of the log itself, where the log allows it.

The read models forget an erased user when they apply its `UserErased` entry; the EVENTS
stream still holds the user's events until its retention ends. `redact_log` deletes (with
JetStream's secure erase, which overwrites the stored bytes) every EventBatch message of an
erased user's partition that came before its erasure and holds only that user's events.
A message that also holds another user's events cannot be cut in part: JetStream has no
way to rewrite a stored message, so such a message stays until retention (RELIABILITY.md,
"Erasure", says what would close that gap).

Two passes, bounded memory: the erasures are found from the headers alone, then only the
subjects (partitions) holding one are read again, a page at a time. Running it again
changes nothing more; the projections do not need it (they drop the user either way).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import api

from northstar.log.v1 import log_pb2
from northstar_ingest.domain.erasure import only_erased_events
from northstar_runtime.codec import TYPE_HEADER, USER_ERASED, decode_events_entry
from northstar_runtime.log import LogClient

log = structlog.get_logger("northstar.ingest.redaction")
_PAGE = 256


@dataclass(frozen=True, slots=True)
class Redaction:
    """What one run of `redact_log` did."""

    erasures: int
    deleted: int
    kept_shared: int
    """Messages before an erasure holding the user's events beside other users'."""


async def _read(
    log_client: LogClient, subject: str, *, headers_only: bool, last: int
) -> AsyncIterator[Msg]:
    """The stream's messages on `subject` up to sequence `last`, a page at a time."""
    js = log_client.js
    stream = log_client.topology.events_stream
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.NONE,
            headers_only=headers_only,
            inactive_threshold=30.0,
        ),
    )
    try:
        while True:
            try:
                page = await sub.fetch(_PAGE, timeout=2)
            except nats.errors.TimeoutError:
                return
            for msg in page:
                if msg.metadata.sequence.stream > last:
                    return
                yield msg
            if page[-1].metadata.sequence.stream >= last:
                return
    finally:
        await sub.unsubscribe()


async def redact_log(log_client: LogClient) -> Redaction:
    """Delete the messages that hold only erased history (see the module docstring)."""
    js = log_client.js
    stream = log_client.topology.events_stream
    info = await js.stream_info(stream)
    last = info.state.last_seq
    if not info.state.messages:
        return Redaction(0, 0, 0)
    # Pass 1: where the erasures are (headers only), then each one's record.
    erasures: dict[str, dict[tuple[str, str], tuple[int, int]]] = defaultdict(dict)
    count = 0
    async for msg in _read(
        log_client, log_client.topology.events_subjects, headers_only=True, last=last
    ):
        if (msg.headers or {}).get(TYPE_HEADER) != USER_ERASED:
            continue
        seq = msg.metadata.sequence.stream
        raw = await js.get_msg(stream, seq)
        record = decode_events_entry(raw.data or b"", dict(raw.headers or {}))
        assert isinstance(record, log_pb2.UserErased)
        key = (record.tenant, record.user_id)
        # The latest erasure of a user covers everything an earlier one did.
        erasures[msg.subject][key] = (seq, record.erased_at_us)
        count += 1
    # Pass 2: the messages of those partitions.
    deleted = kept = 0
    for subject in sorted(erasures):
        found = erasures[subject]
        async for msg in _read(log_client, subject, headers_only=False, last=last):
            headers = msg.headers or {}
            if headers.get(TYPE_HEADER) == USER_ERASED:
                continue
            record = decode_events_entry(msg.data, headers)
            assert isinstance(record, log_pb2.EventBatch)
            seq = msg.metadata.sequence.stream
            verdict = only_erased_events(record, seq, found)
            if verdict is True:
                await js.delete_msg(stream, seq)
                deleted += 1
            elif verdict is None:
                kept += 1
    log.info("log redacted", erasures=count, deleted=deleted, kept_shared=kept)
    return Redaction(count, deleted, kept)
