"""The reports service's settings: the services sections come from, scheduling, delivery."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from northstar_runtime.delivery_settings import DeliverySettings


class ReportsSettings(DeliverySettings):
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

    smtp_from: str = Field(default="northstar-reports@localhost", description="the From address")
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    http_timeout_seconds: float = Field(
        default=15.0, gt=0, le=300, description="whole-request timeout of a webhook or Slack call"
    )
    delivery_concurrency: int = Field(
        default=8, ge=1, le=1000, description="sends in flight at once, per replica"
    )

    @model_validator(mode="after")
    def _pairs(self) -> ReportsSettings:
        if (self.upstream_tls_cert_file is None) != (self.upstream_tls_key_file is None):
            raise ValueError("UPSTREAM_TLS_CERT_FILE and UPSTREAM_TLS_KEY_FILE go together")
        return self

    @property
    def generation_lease_seconds(self) -> float:
        """How long a claimed generation stays away from other replicas: past its deadline."""
        return self.reports_generation_timeout_seconds + self.reports_lease_margin_seconds
