"""`python -m northstar_reports [serve|migrate|rebuild|dead-letters]`: run the reports
service, apply its schema migrations and exit, reset its read models so that the next start
replays the whole log, or list the log entries its projector parked (JSON lines)."""

from __future__ import annotations

from northstar_reports.bootstrap import MIGRATIONS, build_host
from northstar_reports.settings import ReportsSettings
from northstar_runtime.maintenance import service_main


def main() -> None:
    """Entry point of the `northstar-reports` command."""
    service_main(
        service="reports",
        settings_type=ReportsSettings,
        build_host=build_host,
        migrations_package=MIGRATIONS,
    )


if __name__ == "__main__":
    main()
