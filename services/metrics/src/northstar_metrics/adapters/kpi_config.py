"""Per-tenant KPI configuration: domain events in the log, read straight from it.

The configuration is an aggregate whose events live on one subject,
`domain.metrics.<tenant>.kpi_config`; its version is the sequence of the
subject's last message. A change states the version it saw and is appended
with JetStream's expected-last-subject-sequence, so two concurrent changes
cannot both win (DESIGN.md rule 1). Reading the subject's last message is
reading the log itself: there is no other copy to drift.
"""

from __future__ import annotations

import time

import nats.js.errors

from northstar.metrics.v1 import kpis_pb2
from northstar_metrics.domain.kpis import DEFAULT_KPIS, KpiDefinition, apply_overrides
from northstar_runtime.errors import Aborted, Unavailable
from northstar_runtime.log import LogClient, LogConflict, LogError

_HEADERS = {"Northstar-Type": "KpiConfigChanged", "Northstar-Schema": "1"}


def definitions_from_proto(config: kpis_pb2.KpiConfig) -> list[KpiDefinition]:
    """KPI definitions (direction from the built-ins) from a stored configuration."""
    directions = {d.name: d.direction for d in DEFAULT_KPIS}
    return [
        KpiDefinition(
            name=t.name,
            direction=directions[t.name],
            target=t.target,
            weight=t.weight,
            warning=t.warning if t.HasField("warning") else None,
            critical=t.critical if t.HasField("critical") else None,
        )
        for t in config.targets
        if t.name in directions
    ]


def config_to_proto(definitions: tuple[KpiDefinition, ...]) -> kpis_pb2.KpiConfig:
    """The proto form of a full configuration."""
    config = kpis_pb2.KpiConfig()
    for d in definitions:
        target = config.targets.add(name=d.name, target=d.target, weight=d.weight)
        if d.warning is not None:
            target.warning = d.warning
        if d.critical is not None:
            target.critical = d.critical
    return config


class KpiConfigStore:
    """Reads and changes a tenant's KPI configuration in the log."""

    def __init__(self, log: LogClient) -> None:
        self._log = log

    def _subject(self, tenant: str) -> str:
        return self._log.topology.domain_subject("metrics", tenant, "kpi_config")

    async def get(self, tenant: str) -> tuple[tuple[KpiDefinition, ...], int]:
        """The configuration in force and its version (0: the defaults)."""
        try:
            msg = await self._log.js.get_last_msg(
                self._log.topology.domain_stream, self._subject(tenant)
            )
        except nats.js.errors.NotFoundError:
            return DEFAULT_KPIS, 0
        except (nats.errors.Error, TimeoutError) as e:
            raise Unavailable("the log is unavailable", reason="LOG_UNAVAILABLE") from e
        changed = kpis_pb2.KpiConfigChanged.FromString(msg.data or b"")
        return apply_overrides(DEFAULT_KPIS, definitions_from_proto(changed.config)), int(
            msg.seq or 0
        )

    async def update(
        self, tenant: str, overrides: list[KpiDefinition], expected_version: int, changed_by: str
    ) -> tuple[tuple[KpiDefinition, ...], int]:
        """Apply overrides to the version seen; ABORTED when it is no longer current."""
        current, version = await self.get(tenant)
        if version != expected_version:
            raise Aborted(
                f"the configuration is at version {version}, not {expected_version}; read it again",
                reason="STALE_VERSION",
            )
        new = apply_overrides(current, overrides)
        event = kpis_pb2.KpiConfigChanged(
            tenant=tenant,
            config=config_to_proto(new),
            changed_at_us=time.time_ns() // 1000,
            changed_by=changed_by,
        )
        try:
            stored = await self._log.append(
                self._subject(tenant),
                event.SerializeToString(),
                expected_version=expected_version,
                headers=_HEADERS,
            )
        except LogConflict as e:
            raise Aborted(
                "the configuration changed concurrently; read it again", reason="STALE_VERSION"
            ) from e
        except LogError as e:
            raise Unavailable("the log is unavailable", reason="LOG_UNAVAILABLE") from e
        return new, stored.seq
