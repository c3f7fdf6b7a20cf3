"""`python -m northstar_metrics [serve|migrate|rebuild|dead-letters]`: run the metrics
service, apply its schema migrations and exit (a Kubernetes Job or init container runs this
before new pods serve), reset its read models so that the next start replays the whole log,
or list the log entries its projectors parked (JSON lines)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson
import structlog

from northstar_metrics.bootstrap import MIGRATIONS, build_host
from northstar_metrics.settings import MetricsSettings
from northstar_runtime.config import load_settings
from northstar_runtime.db import create_pool, load_migrations, migrate
from northstar_runtime.maintenance import dead_letters, rebuild_read_models
from northstar_runtime.telemetry import configure_logging
from northstar_runtime.topology import Topology


async def apply_migrations(settings: MetricsSettings) -> int:
    """Create the metrics schema and apply pending migrations; returns how many ran.

    Safe to run while older replicas serve and beside other migrators: `migrate` takes
    an advisory lock per schema and skips what is already applied.
    """
    schema = Topology(settings.northstar_namespace).schema("metrics")
    pool = await create_pool(settings.database_url, schema, max_size=2)
    try:
        applied = await migrate(pool, schema, load_migrations(MIGRATIONS))
    finally:
        await pool.close()
    structlog.get_logger("northstar.metrics").info(
        "migrations up to date", schema=schema, applied=applied
    )
    return applied


def main() -> None:
    """Entry point of the `northstar-metrics` command."""
    parser = argparse.ArgumentParser(prog="northstar-metrics")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate", "rebuild", "dead-letters"],
    )
    args = parser.parse_args()
    settings = load_settings(MetricsSettings)
    if args.command == "migrate":
        configure_logging(service="metrics", level=settings.log_level, fmt=settings.log_format)
        asyncio.run(apply_migrations(settings))
        return
    if args.command == "dead-letters":
        # One JSON object per parked log entry, for operators and scripts.
        for row in asyncio.run(dead_letters(settings, service="metrics")):
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return
    if args.command == "rebuild":
        asyncio.run(rebuild_read_models(settings, service="metrics", migrations_package=MIGRATIONS))
        return
    asyncio.run(build_host(settings).run_until_signal())


if __name__ == "__main__":
    main()
