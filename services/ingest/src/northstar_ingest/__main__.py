"""`python -m northstar_ingest [serve|redact-log]`: run the ingest service until SIGTERM, or
delete from the log the messages that hold only erased users' history (northstar_ingest.redaction).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from northstar_ingest.bootstrap import build_host
from northstar_ingest.redaction import redact_log
from northstar_ingest.settings import IngestSettings
from northstar_runtime.config import load_settings
from northstar_runtime.log import LogClient, NatsAuth
from northstar_runtime.telemetry import configure_logging
from northstar_runtime.topology import Topology


async def _redact(settings: IngestSettings) -> dict[str, int]:
    log_client = await LogClient.connect(
        settings.nats_url,
        Topology(settings.northstar_namespace),
        name="northstar-ingest-redact",
        auth=NatsAuth.from_settings(settings),
    )
    try:
        done = await redact_log(log_client)
    finally:
        await log_client.close()
    return {"erasures": done.erasures, "deleted": done.deleted, "kept_shared": done.kept_shared}


def main() -> None:
    """Entry point of the `northstar-ingest` command."""
    parser = argparse.ArgumentParser(prog="northstar-ingest")
    parser.add_argument("command", nargs="?", default="serve", choices=("serve", "redact-log"))
    args = parser.parse_args()
    settings = load_settings(IngestSettings)
    if args.command == "redact-log":
        configure_logging(service="ingest", level=settings.log_level, fmt=settings.log_format)
        sys.stdout.write(orjson.dumps(asyncio.run(_redact(settings))).decode() + "\n")
        return
    asyncio.run(build_host(settings).run_until_signal())


if __name__ == "__main__":
    main()
