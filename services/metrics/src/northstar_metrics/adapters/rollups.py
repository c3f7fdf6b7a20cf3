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


async def lock_keys(conn: Connection, scope: str, keys: Iterable[tuple[str, str]]) -> None:
    """Serialize read-modify-write rollups of the same (tenant, key) across replicas.

    A rollup that reads a key's stored rows and writes a difference (an org's MRR
    steps, a workflow's spans) must not interleave with another transaction doing the
    same for that key: partition-range replicas each see one user's events, but an org
    or a workflow can have events in several partitions. Transaction-scoped advisory
    locks, taken in one global order so that two writers cannot deadlock.
    """
    names = sorted({f"{scope}:{tenant}:{key}" for tenant, key in keys})
    if names:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k.h) FROM (SELECT DISTINCT hashtextextended(n, 0) AS h"
            " FROM unnest($1::text[]) AS n ORDER BY h) k",
            names,
        )
