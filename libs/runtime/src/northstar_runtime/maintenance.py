"""Operator commands shared by the services."""

from __future__ import annotations

import structlog

from northstar_runtime.config import ServiceSettings
from northstar_runtime.db import create_pool, load_migrations, migrate, quote_ident
from northstar_runtime.telemetry import configure_logging
from northstar_runtime.topology import Topology

log = structlog.get_logger("northstar.maintenance")


async def rebuild_read_models(
    settings: ServiceSettings, *, service: str, migrations_package: str
) -> None:
    """Drop a service's schema and recreate it empty: its next start replays the log.

    Run it with the service stopped (every replica): a projector running
    against a vanishing schema would fail its batches.
    """
    configure_logging(service=service, level=settings.log_level, fmt=settings.log_format)
    schema = Topology(settings.northstar_namespace).schema(service)
    pool = await create_pool(settings.database_url, "public")
    try:
        async with pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await migrate(pool, schema, load_migrations(migrations_package))
    finally:
        await pool.close()
    log.info("read models dropped; the next start replays the log", schema=schema)
