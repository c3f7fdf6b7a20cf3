"""`python -m northstar_experiments [serve|rebuild]`: run the experiments service, or reset
its read models so that the next start replays the whole log."""

from __future__ import annotations

import argparse
import asyncio

from northstar_experiments.bootstrap import MIGRATIONS, build_host
from northstar_experiments.settings import ExperimentsSettings
from northstar_runtime.config import load_settings
from northstar_runtime.maintenance import rebuild_read_models


def main() -> None:
    """Entry point of the `northstar-experiments` command."""
    parser = argparse.ArgumentParser(prog="northstar-experiments")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "rebuild"])
    args = parser.parse_args()
    settings = load_settings(ExperimentsSettings)
    if args.command == "rebuild":
        asyncio.run(
            rebuild_read_models(settings, service="experiments", migrations_package=MIGRATIONS)
        )
        return
    asyncio.run(build_host(settings).run_until_signal())


if __name__ == "__main__":
    main()
