"""The settings of a service that delivers by email (SMTP), Slack and webhooks: where the
SMTP server is, how long a send may take, and how hard delivery tries (alerts, reports)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from northstar_runtime.config import ServiceSettings
from northstar_runtime.notify import RetryPolicy, SmtpServer


class DeliverySettings(ServiceSettings):
    """ServiceSettings plus the delivery channels' settings; a service may change a
    default by declaring the field again."""

    smtp_host: str = Field(default="", description="SMTP server for email; empty: email is off")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_from: str = Field(default="northstar@localhost", description="the From address")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (upgrade a plain connection, port 587), tls (implicit TLS,"
        " port 465) or none (a trusted local relay only)",
    )
    smtp_username: str = Field(default="", description="SMTP login; empty: no authentication")
    smtp_password_file: Path | None = Field(
        default=None, description="file holding the SMTP password (a mounted secret)"
    )
    smtp_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    http_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="whole-request timeout of a webhook or Slack call"
    )
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    delivery_max_age_seconds: float = Field(
        default=86_400.0, gt=0, description="a delivery not done this long after it was due fails"
    )
    delivery_backoff_initial_seconds: float = Field(default=5.0, gt=0)
    delivery_backoff_max_seconds: float = Field(default=600.0, gt=0)
    delivery_backoff_jitter_seconds: float = Field(default=1.0, ge=0)
    delivery_concurrency: int = Field(
        default=16, ge=1, le=1000, description="sends in flight at once, per replica"
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
    def _smtp_pairs(self) -> Self:
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
    def delivery_lease_seconds(self) -> float:
        """How long a claimed delivery stays away from other dispatchers: past any send."""
        return (
            max(self.http_timeout_seconds, self.smtp_timeout_seconds)
            + self.delivery_lease_margin_seconds
        )
