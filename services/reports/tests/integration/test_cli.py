"""`northstar-reports migrate`: the init container's command creates the schema and exits."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg


async def test_migrate_creates_the_schema_and_exits(database_url: str, namespace: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "NORTHSTAR_NAMESPACE": namespace}
    for _ in range(2):  # idempotent: the second run applies nothing and succeeds
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "northstar_reports",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        stderr = err.decode()
        assert proc.returncode == 0, stderr
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            f"{namespace}_reports",
        )
    finally:
        await conn.close()
    assert {"report_runs", "report_outbox", "deliveries", "reports"} <= {
        t["table_name"] for t in tables
    }
    assert '"applied": 0' in stderr  # logs go to stderr
