"""The reports service's settings: the services sections come from, scheduling, delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from northstar_runtime.config import ServiceSettings
from northstar_runtime.notify import RetryPolicy, SmtpServer


class ReportsSettings(ServiceSettings):
    """Reports adds where the sections come from, when reports are generated, where they
    go and how hard delivery tries."""

    metrics_service_address: str = Field(
        default="127.0.0.1:50052", description="host:port of the metrics service's gRPC API"
    )
    experiments_service_address: str = Field(
        default="127.0.0.1:50053", description="host:port of the experiments service's gRPC API"
    )
    alerts_service_address: str = Field(
        default="127.0.0.1:50054", description="host:port of the alerts service's gRPC API"
    )
    upstream_api_key: str = Field(
        default="", description="API key with the `service` scope, to read every tenant"
    )
    upstream_tls: bool = Field(
        default=False, description="call the upstream services over TLS (system CAs by default)"
    )
    upstream_tls_ca_file: Path | None = Field(
        default=None, description="PEM CA that signed the upstream services' certificates"
    )
    upstream_tls_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, for upstreams with mutual TLS"
    )
    upstream_tls_key_file: Path | None = Field(default=None, description="its private key")
    upstream_deadline_seconds: float = Field(
        default=10.0, gt=0, description="deadline of each call to an upstream service"
    )
    reports_generation_timeout_seconds: float = Field(
        default=60.0, gt=0, description="deadline of gathering one report's sections"
    )
    reports_generation_concurrency: int = Field(
        default=4,
        ge=1,
        le=256,
        description="schedules gathering their sections at once, per replica",
    )
    reports_scheduler_enabled: bool = Field(
        default=True, description="run the report scheduler in this replica"
    )
    reports_dispatcher_enabled: bool = Field(
        default=True, description="run the delivery dispatcher in this replica"
    )
    reports_poll_seconds: float = Field(
        default=30.0, gt=0, description="how often the scheduler looks for due reports"
    )
    reports_lease_margin_seconds: float = Field(
        default=60.0,
        gt=0,
        description="a claimed generation is leased for its timeout plus this margin;"
        " after a crash another replica takes it once the lease ends",
    )
    reports_catch_up_limit: int = Field(
        default=7,
        ge=1,
        le=366,
        description="at most this many of a schedule's newest missed periods are generated"
        " when the service returns; older ones are left to GenerateReport",
    )
    reports_default_schedules: bool = Field(
        default=True, description="install the daily and weekly schedules for every tenant"
    )

    smtp_host: str = Field(default="", description="SMTP server for email; empty: email is off")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_from: str = Field(default="northstar-reports@localhost", description="the From address")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (port 587), tls (implicit TLS, port 465) or none (a trusted"
        " local relay only)",
    )
    smtp_username: str = Field(default="", description="SMTP login; empty: no authentication")
    smtp_password_file: Path | None = Field(
        default=None, description="file holding the SMTP password (a mounted secret)"
    )
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    http_timeout_seconds: float = Field(
        default=15.0, gt=0, le=300, description="whole-request timeout of a webhook or Slack call"
    )
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    delivery_max_age_seconds: float = Field(
        default=86_400.0, gt=0, description="a delivery not done this long after it was due fails"
    )
    delivery_backoff_initial_seconds: float = Field(default=5.0, gt=0)
    delivery_backoff_max_seconds: float = Field(default=600.0, gt=0)
    delivery_backoff_jitter_seconds: float = Field(default=1.0, ge=0)
    delivery_concurrency: int = Field(
        default=8, ge=1, le=1000, description="sends in flight at once, per replica"
    )
    delivery_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="how often the dispatcher looks for due deliveries"
    )
    delivery_drain_seconds: float = Field(
        default=10.0, ge=0, le=14, description="on stop, how long sends in flight may finish"
    )
    delivery_lease_margin_seconds: float = Field(
        default=30.0, gt=0, description="a claimed delivery is leased for its timeout plus this"
    )

    @model_validator(mode="after")
    def _pairs(self) -> ReportsSettings:
        if (self.upstream_tls_cert_file is None) != (self.upstream_tls_key_file is None):
            raise ValueError("UPSTREAM_TLS_CERT_FILE and UPSTREAM_TLS_KEY_FILE go together")
        if self.smtp_password_file is not None:
            if not self.smtp_username:
                raise ValueError("SMTP_PASSWORD_FILE needs SMTP_USERNAME")
            if not self.smtp_password_file.is_file():
                raise ValueError(
                    f"SMTP_PASSWORD_FILE: no such file {str(self.smtp_password_file)!r}"
                )
        return self

    def smtp_server(self) -> SmtpServer:
        """The SMTP server these settings name."""
        password = "" if self.smtp_password_file is None else self.smtp_password_file.read_text()
        return SmtpServer(
            host=self.smtp_host,
            port=self.smtp_port,
            security=self.smtp_security,
            username=self.smtp_username,
            password=password.strip(),
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
    def delivery_lease_seconds(self) -> float:
        """How long a claimed delivery stays away from other dispatchers: past any send."""
        return (
            max(self.http_timeout_seconds, self.smtp_timeout_seconds)
            + self.delivery_lease_margin_seconds
        )

    @property
    def generation_lease_seconds(self) -> float:
        """How long a claimed generation stays away from other replicas: past its deadline."""
        return self.reports_generation_timeout_seconds + self.reports_lease_margin_seconds
