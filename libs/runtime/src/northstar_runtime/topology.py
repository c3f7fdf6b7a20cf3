"""Names of streams, subjects, consumers and schemas, in one place.

A namespace (empty in production) prefixes every name so that tests, and
several suites on one server, never share state.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topology:
    """Where things live in NATS and PostgreSQL for one namespace."""

    namespace: str = ""

    @property
    def _subject_prefix(self) -> str:
        return f"{self.namespace}." if self.namespace else ""

    @property
    def _name_prefix(self) -> str:
        return f"{self.namespace.upper()}_" if self.namespace else ""

    @property
    def events_stream(self) -> str:
        """The product events stream."""
        return f"{self._name_prefix}EVENTS"

    @property
    def events_subjects(self) -> str:
        """The wildcard every product-event subject matches."""
        return f"{self._subject_prefix}events.>"

    def events_subject(self, tenant: str, partition: int) -> str:
        """Subject of one tenant's partition: `events.<tenant>.<partition>`."""
        return f"{self._subject_prefix}events.{tenant}.{partition}"

    def events_partition_filter(self, partition: int) -> str:
        """Subject filter of one partition across tenants."""
        return f"{self._subject_prefix}events.*.{partition}"

    @property
    def domain_stream(self) -> str:
        """The domain events stream (experiment, rule, schedule changes and more)."""
        return f"{self._name_prefix}DOMAIN"

    @property
    def domain_subjects(self) -> str:
        """The wildcard every domain subject matches."""
        return f"{self._subject_prefix}domain.>"

    def domain_subject(self, service: str, tenant: str, *aggregate: str) -> str:
        """Subject of an aggregate: `domain.<service>.<tenant>.<aggregate...>`."""
        return ".".join([f"{self._subject_prefix}domain", service, tenant, *aggregate])

    def domain_service_filter(self, service: str) -> str:
        """Subject filter of every aggregate of one service."""
        return f"{self._subject_prefix}domain.{service}.>"

    @property
    def deadletter_stream(self) -> str:
        """Parked log entries that a projector could not apply."""
        return f"{self._name_prefix}DEADLETTER"

    @property
    def deadletter_subjects(self) -> str:
        """The wildcard every dead-letter subject matches."""
        return f"{self._subject_prefix}deadletter.>"

    def deadletter_subject(self, service: str, projection: str) -> str:
        """Where one projection parks the entries it gave up on."""
        return f"{self._subject_prefix}deadletter.{service}.{projection}"

    def consumer(self, service: str, projection: str) -> str:
        """Durable consumer name of one projection."""
        return f"{self._name_prefix}{service}_{projection}".replace(".", "_")

    def schema(self, service: str) -> str:
        """PostgreSQL schema a service owns."""
        prefix = f"{self.namespace}_" if self.namespace else ""
        return f"{prefix}{service}"
