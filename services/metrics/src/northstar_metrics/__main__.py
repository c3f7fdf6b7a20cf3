"""`python -m northstar_metrics [serve|rebuild]`: run the metrics service, or reset its
read models so that the next start replays the whole log."""

from __future__ import annotations

import argparse
import asyncio

from northstar_metrics.bootstrap import MIGRATIONS, build_host
from northstar_metrics.settings import MetricsSettings
from northstar_runtime.config import load_settings
from northstar_runtime.maintenance import rebuild_read_models


def main() -> None:
    """Entry point of the `northstar-metrics` command."""
    parser = argparse.ArgumentParser(prog="northstar-metrics")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "rebuild"])
    args = parser.parse_args()
    settings = load_settings(MetricsSettings)
    if args.command == "rebuild":
        asyncio.run(rebuild_read_models(settings, service="metrics", migrations_package=MIGRATIONS))
        return
    asyncio.run(build_host(settings).run_until_signal())


if __name__ == "__main__":
    main()
