"""`python -m northstar_alerts`: run the alerts service until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio

from northstar_alerts.bootstrap import build_host
from northstar_alerts.settings import AlertsSettings
from northstar_runtime.config import load_settings


def main() -> None:
    """Entry point of the `northstar-alerts` command."""
    asyncio.run(build_host(load_settings(AlertsSettings)).run_until_signal())


if __name__ == "__main__":
    main()
