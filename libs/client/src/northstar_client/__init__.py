"""Northstar's Python client: typed sync and async clients, a batching tracker, the CLI."""

from __future__ import annotations

from northstar_client.clients import (
    AlertsClient,
    AsyncAlertsClient,
    AsyncExperimentsClient,
    AsyncIngestClient,
    AsyncMetricsClient,
    AsyncReportsClient,
    ExperimentsClient,
    IngestClient,
    MetricsClient,
    ReportsClient,
)
from northstar_client.config import ClientConfig, ConfigError, RetryPolicy
from northstar_client.errors import FieldViolation, NorthstarClientError, RpcError
from northstar_client.events import Event, new_event_id
from northstar_client.tracker import Tracker, TrackerStats

__all__ = [
    "AlertsClient",
    "AsyncAlertsClient",
    "AsyncExperimentsClient",
    "AsyncIngestClient",
    "AsyncMetricsClient",
    "AsyncReportsClient",
    "ClientConfig",
    "ConfigError",
    "Event",
    "ExperimentsClient",
    "FieldViolation",
    "IngestClient",
    "MetricsClient",
    "NorthstarClientError",
    "ReportsClient",
    "RetryPolicy",
    "RpcError",
    "Tracker",
    "TrackerStats",
    "new_event_id",
]
