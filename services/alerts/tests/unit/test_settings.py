"""Alerts settings: SMTP login pairs, the retry policy and the lease they give."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from northstar_alerts.domain.delivery import RetryPolicy
from northstar_alerts.settings import AlertsSettings


def test_the_password_is_read_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret\n")
    s = AlertsSettings(smtp_username="northstar", smtp_password_file=secret)
    assert s.smtp_password() == "s3cret"
    assert AlertsSettings().smtp_password() == ""


def test_a_password_needs_a_user_and_an_existing_file(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("x")
    with pytest.raises(ValidationError, match="needs SMTP_USERNAME"):
        AlertsSettings(smtp_password_file=secret)
    with pytest.raises(ValidationError, match="no such file"):
        AlertsSettings(smtp_username="u", smtp_password_file=tmp_path / "missing")


def test_a_drain_must_end_before_the_host_gives_up_on_its_workers() -> None:
    with pytest.raises(ValidationError):
        AlertsSettings(delivery_drain_seconds=20)


def test_retry_policy_and_lease_follow_the_settings() -> None:
    s = AlertsSettings(
        delivery_max_attempts=3,
        delivery_max_age_seconds=600,
        delivery_backoff_initial_seconds=1,
        delivery_backoff_max_seconds=30,
        delivery_backoff_jitter_seconds=0,
        http_timeout_seconds=10,
        smtp_timeout_seconds=20,
        delivery_lease_margin_seconds=5,
    )
    assert s.retry_policy() == RetryPolicy(
        max_attempts=3, max_age_s=600, initial_s=1, max_backoff_s=30, jitter_s=0
    )
    assert s.delivery_lease_seconds == 25
