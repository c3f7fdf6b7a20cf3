"""Which log partition an event goes to: all of a user's events land on one partition."""

from __future__ import annotations

import zlib

__all__ = ["partition_key", "partition_of"]


def partition_key(user_id: str, org_id: str, event_id: str) -> str:
    """Return the key an event is partitioned by: user_id, else org_id, else event_id."""
    if user_id:
        return user_id
    if org_id:
        return org_id
    return event_id


def partition_of(key: str, partitions: int) -> int:
    """Return CRC-32 of the UTF-8 key mod `partitions`, stable across processes and languages."""
    # Not hash(): str hashing is salted per process, and every producer, in any
    # language, must route a key to the same partition.
    return zlib.crc32(key.encode("utf-8")) % partitions
