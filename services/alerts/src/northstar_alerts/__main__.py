"""`python -m northstar_alerts [serve|migrate|rebuild|dead-letters]`: run the alerts
service, apply its schema migrations and exit, reset its read models so that the next start
replays the whole log, or list the log entries its projectors parked (JSON lines)."""

from __future__ import annotations

from northstar_alerts.bootstrap import MIGRATIONS, build_host
from northstar_alerts.settings import AlertsSettings
from northstar_runtime.maintenance import service_main


def main() -> None:
    """Entry point of the `northstar-alerts` command."""
    service_main(
        service="alerts",
        settings_type=AlertsSettings,
        build_host=build_host,
        migrations_package=MIGRATIONS,
    )


if __name__ == "__main__":
    main()
