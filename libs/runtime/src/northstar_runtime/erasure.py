"""A user's erasure, as every projection of the events log applies it (EraseUser).

Once a `UserErased` entry is applied, a projection answers as if the user's events that
came before it in the log had never been accepted. A later-arriving event of the same
user_id timestamped at or before the erasure is erased history retried (a client's late
retry, a backfill) and is dropped; one with a later timestamp is a new history of a user
who came back. A projection remembers erased users in its own `erased_users` table
(tenant, user_digest, erased_at_us), by a digest, never the id itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from northstar_runtime.db import Connection

__all__ = ["erased_at", "is_erased_history", "remember_erased", "user_digest"]


def user_digest(tenant: str, user_id: str) -> bytes:
    """The key an erased user is remembered by: a digest, never the id itself."""
    return hashlib.blake2b(f"{tenant}\x1f{user_id}".encode(), digest_size=16).digest()


def is_erased_history(timestamp_us: int, erased_at_us: int | None) -> bool:
    """Whether an event of an erased user belongs to the erased history (and is dropped)."""
    return erased_at_us is not None and timestamp_us <= erased_at_us


async def erased_at(
    conn: Connection, users: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The erasure time of each erased (tenant, user_id) among `users`; the others are
    left out."""
    digests = {user_digest(t, u): (t, u) for t, u in sorted(set(users))}
    if not digests:
        return {}
    rows = await conn.fetch(
        "SELECT e.tenant, e.user_digest, e.erased_at_us FROM erased_users e"
        " JOIN unnest($1::text[], $2::bytea[]) AS k(tenant, user_digest)"
        " ON e.tenant = k.tenant AND e.user_digest = k.user_digest",
        [t for t, _ in digests.values()],
        list(digests),
    )
    return {digests[bytes(r["user_digest"])]: int(r["erased_at_us"]) for r in rows}


async def remember_erased(conn: Connection, tenant: str, user_id: str, erased_at_us: int) -> None:
    """Record the user's erasure (the latest one wins)."""
    await conn.execute(
        "INSERT INTO erased_users (tenant, user_digest, erased_at_us) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant, user_digest) DO UPDATE SET"
        " erased_at_us = greatest(erased_users.erased_at_us, excluded.erased_at_us)",
        tenant,
        user_digest(tenant, user_id),
        erased_at_us,
    )
