"""Operator commands shared by the services."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import orjson
import structlog

from northstar_runtime.config import ServiceSettings, load_settings
from northstar_runtime.db import create_pool, load_migrations, migrate, quote_ident
from northstar_runtime.telemetry import configure_logging
from northstar_runtime.topology import Topology

log = structlog.get_logger("northstar.maintenance")

COMMANDS = ("serve", "migrate", "rebuild", "dead-letters")
S = TypeVar("S", bound=ServiceSettings)


def service_main(
    *,
    service: str,
    settings_type: type[S],
    build_host: Callable[[S], Any],
    migrations_package: str,
) -> None:
    """The command line of a service with read models: `serve` (the default) runs it until
    SIGTERM; `migrate` applies its schema migrations and exits (a Kubernetes init container
    runs it before new pods serve); `rebuild` resets its read models so that the next start
    replays the whole log; `dead-letters` lists what its projectors parked (JSON lines).
    """
    parser = argparse.ArgumentParser(prog=f"northstar-{service}")
    parser.add_argument("command", nargs="?", default="serve", choices=COMMANDS)
    args = parser.parse_args()
    settings = load_settings(settings_type)
    if args.command == "migrate":
        configure_logging(service=service, level=settings.log_level, fmt=settings.log_format)
        asyncio.run(
            apply_migrations(settings, service=service, migrations_package=migrations_package)
        )
    elif args.command == "dead-letters":
        # One JSON object per parked log entry, for operators and scripts.
        for row in asyncio.run(dead_letters(settings, service=service)):
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
    elif args.command == "rebuild":
        asyncio.run(
            rebuild_read_models(settings, service=service, migrations_package=migrations_package)
        )
    else:
        asyncio.run(build_host(settings).run_until_signal())


async def apply_migrations(
    settings: ServiceSettings, *, service: str, migrations_package: str
) -> int:
    """Create the service's schema and apply pending migrations; returns how many ran.

    Safe to run while older replicas serve and beside other migrators: `migrate` takes
    an advisory lock per schema and skips what is already applied.
    """
    schema = Topology(settings.northstar_namespace).schema(service)
    pool = await create_pool(settings.database_url, schema, max_size=2)
    try:
        applied = await migrate(pool, schema, load_migrations(migrations_package))
    finally:
        await pool.close()
    log.info("migrations up to date", schema=schema, applied=applied)
    return applied


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


async def dead_letters(settings: ServiceSettings, *, service: str) -> list[dict[str, Any]]:
    """The log entries a service's projectors parked, oldest first, replayed or not.

    A replica that becomes active replays the pending ones once (projector.py), so after a
    fix is deployed this list shows what still fails.
    """
    schema = Topology(settings.northstar_namespace).schema(service)
    conn = await asyncpg.connect(settings.database_url)
    try:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.dead_letters"):
            return []
        rows = await conn.fetch(
            f"SELECT projection, position, subject, error, tries, parked_at, replayed_at"  # noqa: S608 - quoted identifier
            f" FROM {quote_ident(schema)}.dead_letters ORDER BY parked_at, position"
        )
    finally:
        await conn.close()
    return [
        {
            "projection": r["projection"],
            "position": r["position"],
            "subject": r["subject"],
            "error": r["error"],
            "tries": r["tries"],
            "parked_at": r["parked_at"].isoformat(),
            "replayed_at": r["replayed_at"].isoformat() if r["replayed_at"] else None,
        }
        for r in rows
    ]
