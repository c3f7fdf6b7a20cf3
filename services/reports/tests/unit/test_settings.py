"""Reports settings: defaults, pairs that go together, the derived policies."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from northstar_reports.settings import ReportsSettings


def test_defaults() -> None:
    s = ReportsSettings()
    assert s.reports_scheduler_enabled and s.reports_dispatcher_enabled
    assert s.reports_default_schedules and s.reports_catch_up_limit == 7
    assert s.retry_policy().max_attempts == s.delivery_max_attempts == 8
    assert s.generation_lease_seconds == 120.0
    assert s.delivery_lease_seconds == 60.0


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="UPSTREAM_TLS_CERT_FILE"):
        ReportsSettings(upstream_tls_cert_file=Path("/etc/cert.pem"))


def test_an_smtp_password_file_needs_a_user_and_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    with pytest.raises(ValidationError, match="SMTP_USERNAME"):
        ReportsSettings(smtp_password_file=secret)
    with pytest.raises(ValidationError, match="no such file"):
        ReportsSettings(smtp_username="mailer", smtp_password_file=secret)
    secret.write_text("s3cret\n")
    s = ReportsSettings(smtp_host="mx", smtp_username="mailer", smtp_password_file=secret)
    assert s.smtp_server().password == "s3cret"


def test_the_catch_up_limit_is_bounded() -> None:
    with pytest.raises(ValidationError):
        ReportsSettings(reports_catch_up_limit=0)
