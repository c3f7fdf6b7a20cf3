"""Helpers the projection's rollups share: signed count upserts, per-key write locks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from northstar_runtime.db import Connection


async def add_counts(
    conn: Connection, delta: Mapping[tuple[Any, ...], int], *, add: str, drop_zeros: str
) -> None:
    """Add signed counts to a counts table keyed by `delta`'s tuples; drop rows back at 0.

    `add` takes the key columns then the counts as arrays; `drop_zeros` the key columns.
    Only a row that lost some count can be back at zero, so only those are probed.
    """
    changed = sorted(k for k, v in delta.items() if v)
    if not changed:
        return
    columns = [list(c) for c in zip(*changed, strict=True)]
    await conn.execute(add, *columns, [delta[k] for k in changed])
    lowered = [k for k in changed if delta[k] < 0]
    if lowered:
        await conn.execute(drop_zeros, *(list(c) for c in zip(*lowered, strict=True)))


# Advisory locks per scope: a key takes the stripe its hash falls in. Bounded, because
# every lock a transaction holds takes a slot of PostgreSQL's shared lock table
# (max_locks_per_transaction × max_connections, 6,400 by default): one lock per key made
# a replay batch with thousands of workflows fail with "out of shared memory".
LOCK_STRIPES = 64


async def lock_keys(conn: Connection, scope: str, keys: Iterable[tuple[str, str]]) -> None:
    """Serialize read-modify-write rollups of the same (tenant, key) across replicas.

    A rollup that reads a key's stored rows and writes a difference (an org's MRR
    steps, a workflow's spans) must not interleave with another transaction doing the
    same for that key: partition-range replicas each see one user's events, but an org
    or a workflow can have events in several partitions. Transaction-scoped advisory
    locks, one per stripe of keys (at most LOCK_STRIPES per scope), taken in one global
    order so that two writers cannot deadlock. Two keys sharing a stripe only wait for
    each other.
    """
    names = sorted({f"{tenant}:{key}" for tenant, key in keys})
    if names:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1), k.stripe) FROM ("
            " SELECT DISTINCT (hashtextextended(n, 0) & ($3::int - 1))::int AS stripe"
            " FROM unnest($2::text[]) AS n ORDER BY stripe) k",
            scope,
            names,
            LOCK_STRIPES,
        )
