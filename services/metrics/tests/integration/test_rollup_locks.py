"""The rollups' per-key write locks, against a real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from northstar_metrics.adapters.rollups import LOCK_STRIPES, lock_keys

HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    " AND granted"
)


async def test_a_batch_with_more_keys_than_the_lock_table_holds_takes_a_bounded_number(
    database_url: str,
) -> None:
    # 20,000 workflows in one batch: one lock per key would need more slots than
    # PostgreSQL's shared lock table has by default (64 per connection × 100) and fail
    # the batch with "out of shared memory".
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await lock_keys(conn, "workflow_spans", [("t1", f"w{i}") for i in range(20_000)])
            await lock_keys(conn, "subscription_states", [("t1", f"o{i}") for i in range(20_000)])
            held = await conn.fetchval(HELD)
        assert held == 2 * LOCK_STRIPES  # every stripe of both scopes, no more
        assert await conn.fetchval(HELD) == 0  # released with the transaction
    finally:
        await conn.close()


async def test_a_key_locked_by_one_transaction_waits_for_it_in_another(database_url: str) -> None:
    first = await asyncpg.connect(database_url)
    second = await asyncpg.connect(database_url)
    try:
        async with first.transaction():
            await lock_keys(first, "workflow_spans", [("t1", "w1")])
            async with second.transaction():
                await second.execute("SET LOCAL lock_timeout = '200ms'")
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await lock_keys(second, "workflow_spans", [("t1", "w1"), ("t1", "w2")])
            async with second.transaction():
                # Another scope is another lock.
                await lock_keys(second, "subscription_states", [("t1", "w1")])
        async with second.transaction():
            await lock_keys(second, "workflow_spans", [("t1", "w1")])  # free again
            assert await second.fetchval(HELD) == 1
    finally:
        await first.close()
        await second.close()
