"""The service pools' sessions, against a real PostgreSQL."""

from __future__ import annotations

import asyncpg

from northstar_runtime.db import create_pool
from northstar_runtime.topology import Topology


async def test_a_pools_sessions_use_the_schema_utc_and_no_jit(
    database_url: str, namespace: str
) -> None:
    schema = Topology(namespace).schema("test")
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    pool = await create_pool(database_url, schema, max_size=2)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_schema()") == schema
            assert await conn.fetchval("SHOW timezone") == "UTC"
            # A read-model query is never compiled, whatever its estimated cost.
            assert await conn.fetchval("SHOW jit") == "off"
    finally:
        await pool.close()
