"""The alerts service's settings: metrics, evaluation, notification channels and delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from northstar_alerts.domain.delivery import RetryPolicy
from northstar_runtime.config import ServiceSettings
from northstar_runtime.notify import SmtpServer


class AlertsSettings(ServiceSettings):
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
    smtp_host: str = Field(default="", description="SMTP server for email; empty: email is off")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_from: str = Field(default="northstar-alerts@localhost", description="the From address")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (upgrade a plain connection, port 587), tls (implicit TLS,"
        " port 465) or none (a trusted local relay only)",
    )
    smtp_username: str = Field(default="", description="SMTP login; empty: no authentication")
    smtp_password_file: Path | None = Field(
        default=None, description="file holding the SMTP password (a mounted secret)"
    )
    smtp_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    http_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="whole-request timeout of a webhook or Slack call"
    )
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    delivery_keep_days: float = Field(
        default=30.0,
        gt=0,
        description="days a settled notification (delivered or failed, with its deliveries"
        " and attempts) is kept; pending ones are kept until settled",
    )
    delivery_max_age_seconds: float = Field(
        default=86_400.0, gt=0, description="a delivery not done this long after it was due fails"
    )
    delivery_backoff_initial_seconds: float = Field(default=5.0, gt=0)
    delivery_backoff_max_seconds: float = Field(default=600.0, gt=0)
    delivery_backoff_jitter_seconds: float = Field(default=1.0, ge=0)
    delivery_concurrency: int = Field(
        default=16, ge=1, le=1000, description="sends in flight at once, per replica"
    )
    delivery_per_target: int = Field(
        default=2, ge=1, le=100, description="sends in flight at once to one URL or address"
    )
    delivery_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="how often the dispatcher looks for due deliveries"
    )
    delivery_drain_seconds: float = Field(
        default=10.0,
        ge=0,
        le=14,
        description="on stop, how long sends in flight may finish before they are interrupted",
    )

    delivery_lease_margin_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a claimed delivery is leased for the send's timeout plus this margin;"
        " after a crash it is tried again once the lease ends",
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

    @model_validator(mode="after")
    def _smtp_pairs(self) -> AlertsSettings:
        if self.smtp_password_file is not None:
            if not self.smtp_username:
                raise ValueError("SMTP_PASSWORD_FILE needs SMTP_USERNAME")
            path = self.smtp_password_file
            if not path.is_file():
                raise ValueError(f"SMTP_PASSWORD_FILE: no such file {str(path)!r}")
        return self

    def smtp_password(self) -> str:
        """The SMTP password, read from its file (empty without one)."""
        if self.smtp_password_file is None:
            return ""
        return self.smtp_password_file.read_text().strip()

    def smtp_server(self) -> SmtpServer:
        """The SMTP server these settings name."""
        return SmtpServer(
            host=self.smtp_host,
            port=self.smtp_port,
            security=self.smtp_security,
            username=self.smtp_username,
            password=self.smtp_password(),
            timeout_s=self.smtp_timeout_seconds,
        )

    def retry_policy(self) -> RetryPolicy:
        """The delivery retry bounds and backoff these settings give."""
        return RetryPolicy(
            max_attempts=self.delivery_max_attempts,
            max_age_s=self.delivery_max_age_seconds,
            initial_s=self.delivery_backoff_initial_seconds,
            max_backoff_s=self.delivery_backoff_max_seconds,
            jitter_s=self.delivery_backoff_jitter_seconds,
        )

    @property
    def lease_seconds(self) -> float:
        """How long a claimed delivery stays away from other dispatchers: past any send."""
        return (
            max(self.http_timeout_seconds, self.smtp_timeout_seconds)
            + self.delivery_lease_margin_seconds
        )
