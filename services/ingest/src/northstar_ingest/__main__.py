"""`python -m northstar_ingest`: run the ingest service until SIGTERM."""

from __future__ import annotations

import asyncio

from northstar_ingest.bootstrap import build_host
from northstar_ingest.settings import IngestSettings
from northstar_runtime.config import load_settings


def main() -> None:
    """Entry point of the `northstar-ingest` command."""
    settings = load_settings(IngestSettings)
    asyncio.run(build_host(settings).run_until_signal())


if __name__ == "__main__":
    main()
