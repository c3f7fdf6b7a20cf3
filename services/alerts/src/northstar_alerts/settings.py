"""The alerts service's settings: metrics, evaluation, notification channels and delivery."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from northstar_runtime.delivery_settings import DeliverySettings


class AlertsSettings(DeliverySettings):
    """Alerts adds how to reach metrics, how to evaluate, where notifications go and how
    hard delivery tries."""

    metrics_service_address: str = Field(
        default="127.0.0.1:50052", description="host:port of the metrics service's gRPC API"
    )
    metrics_service_api_key: str = Field(
        default="", description="API key with the `service` scope, to read every tenant"
    )
    metrics_service_tls: bool = Field(
        default=False, description="call metrics over TLS (system CAs unless a CA file is set)"
    )
    metrics_service_tls_ca_file: Path | None = Field(
        default=None, description="PEM CA that signed the metrics service's certificate"
    )
    metrics_service_tls_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, for a metrics service with mutual TLS"
    )
    metrics_service_tls_key_file: Path | None = Field(default=None, description="its private key")
    metrics_service_deadline_seconds: float = Field(
        default=5.0, gt=0, description="deadline of each call to metrics"
    )
    metrics_service_attempts: int = Field(
        default=3, ge=1, le=10, description="tries of a call failing UNAVAILABLE/DEADLINE_EXCEEDED"
    )
    metrics_service_cache_seconds: float = Field(
        default=30.0, ge=0, description="identical metrics reads within this share one call"
    )
    alerts_evaluator_enabled: bool = Field(
        default=True, description="run the evaluation scheduler in this replica"
    )
    alerts_evaluation_concurrency: int = Field(
        default=256,
        ge=1,
        le=1024,
        description="rules between claim and commit per replica (reading, or in a batch)",
    )
    alerts_evaluation_timeout_seconds: float = Field(
        default=30.0, gt=0, description="deadline of one rule's evaluation (metrics reads)"
    )
    alerts_poll_seconds: float = Field(
        default=1.0, gt=0, description="how often the scheduler looks for due rules"
    )
    alerts_evaluations_keep_days: float = Field(
        default=7.0, gt=0, description="days evaluation records are kept"
    )
    alerts_default_rules: bool = Field(
        default=True, description="install the KPI table's rules for every tenant with a key"
    )

    alerts_external_url: str = Field(
        default="",
        description="base URL of the Northstar console, for links in notifications; empty: none",
    )
    smtp_from: str = Field(default="northstar-alerts@localhost", description="the From address")
    smtp_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    http_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="whole-request timeout of a webhook or Slack call"
    )
    delivery_keep_days: float = Field(
        default=30.0,
        gt=0,
        description="days a settled notification (delivered or failed, with its deliveries"
        " and attempts) is kept; pending ones are kept until settled",
    )
    delivery_per_target: int = Field(
        default=2, ge=1, le=100, description="sends in flight at once to one URL or address"
    )

    @model_validator(mode="after")
    def _metrics_tls(self) -> AlertsSettings:
        if (self.metrics_service_tls_cert_file is None) != (
            self.metrics_service_tls_key_file is None
        ):
            raise ValueError(
                "METRICS_SERVICE_TLS_CERT_FILE and METRICS_SERVICE_TLS_KEY_FILE go together"
            )
        return self
