"""`python -m northstar_experiments [serve|migrate|rebuild|dead-letters]`: run the
experiments service, apply its schema migrations and exit (a Kubernetes Job or init container
runs this before new pods serve), reset its read models so that the next start replays the
whole log, or list the log entries its projectors parked (JSON lines)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson
import structlog

from northstar_experiments.bootstrap import MIGRATIONS, build_host
from northstar_experiments.settings import ExperimentsSettings
from northstar_runtime.config import load_settings
from northstar_runtime.db import create_pool, load_migrations, migrate
from northstar_runtime.maintenance import dead_letters, rebuild_read_models
from northstar_runtime.telemetry import configure_logging
from northstar_runtime.topology import Topology


async def apply_migrations(settings: ExperimentsSettings) -> int:
    """Create the experiments schema and apply pending migrations; returns how many ran.

    Safe to run while older replicas serve and beside other migrators: `migrate` takes
    an advisory lock per schema and skips what is already applied.
    """
    schema = Topology(settings.northstar_namespace).schema("experiments")
    pool = await create_pool(settings.database_url, schema, max_size=2)
    try:
        applied = await migrate(pool, schema, load_migrations(MIGRATIONS))
    finally:
        await pool.close()
    structlog.get_logger("northstar.experiments").info(
        "migrations up to date", schema=schema, applied=applied
    )
    return applied


def main() -> None:
    """Entry point of the `northstar-experiments` command."""
    parser = argparse.ArgumentParser(prog="northstar-experiments")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate", "rebuild", "dead-letters"],
    )
    args = parser.parse_args()
    settings = load_settings(ExperimentsSettings)
    if args.command == "migrate":
        configure_logging(service="experiments", level=settings.log_level, fmt=settings.log_format)
        asyncio.run(apply_migrations(settings))
        return
    if args.command == "dead-letters":
        # One JSON object per parked log entry, for operators and scripts.
        for row in asyncio.run(dead_letters(settings, service="experiments")):
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return
    if args.command == "rebuild":
        asyncio.run(
            rebuild_read_models(settings, service="experiments", migrations_package=MIGRATIONS)
        )
        return
    asyncio.run(build_host(settings).run_until_signal())


if __name__ == "__main__":
    main()
