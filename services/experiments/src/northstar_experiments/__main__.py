"""`python -m northstar_experiments [serve|migrate|rebuild|dead-letters]`: run the experiments
service, apply its schema migrations and exit, reset its read models so that the next start
replays the whole log, or list the log entries its projectors parked (JSON lines)."""

from __future__ import annotations

from northstar_experiments.bootstrap import MIGRATIONS, build_host
from northstar_experiments.settings import ExperimentsSettings
from northstar_runtime.maintenance import service_main


def main() -> None:
    """Entry point of the `northstar-experiments` command."""
    service_main(
        service="experiments",
        settings_type=ExperimentsSettings,
        build_host=build_host,
        migrations_package=MIGRATIONS,
    )


if __name__ == "__main__":
    main()
