"""`python -m northstar_metrics [serve|migrate|rebuild|dead-letters]`: run the metrics
service, apply its schema migrations and exit, reset its read models so that the next start
replays the whole log, or list the log entries its projectors parked (JSON lines)."""

from __future__ import annotations

from northstar_metrics.bootstrap import MIGRATIONS, build_host
from northstar_metrics.settings import MetricsSettings
from northstar_runtime.maintenance import service_main


def main() -> None:
    """Entry point of the `northstar-metrics` command."""
    service_main(
        service="metrics",
        settings_type=MetricsSettings,
        build_host=build_host,
        migrations_package=MIGRATIONS,
    )


if __name__ == "__main__":
    main()
