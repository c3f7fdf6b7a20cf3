"""Delivery decisions: backoff schedule, bounded attempts and age, permanent refusals."""

from __future__ import annotations

from northstar_alerts.domain.delivery import (
    DELIVERED,
    FAILED,
    PENDING,
    AttemptResult,
    RetryPolicy,
    decide,
)

POLICY = RetryPolicy(
    max_attempts=5, max_age_s=3600.0, initial_s=2.0, max_backoff_s=20.0, jitter_s=0
)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [POLICY.backoff(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_jitter_stays_within_its_bound() -> None:
    jittery = RetryPolicy(initial_s=2.0, max_backoff_s=20.0, jitter_s=1.0)
    for n in range(1, 8):
        base = POLICY.backoff(n)
        assert all(base <= jittery.backoff(n) <= base + 1.0 for _ in range(20))


def test_http_statuses() -> None:
    assert AttemptResult.from_http(204).ok
    assert not AttemptResult.from_http(500).permanent
    assert not AttemptResult.from_http(429).permanent
    assert not AttemptResult.from_http(408).permanent
    assert AttemptResult.from_http(404, "no such hook").permanent
    assert AttemptResult.from_http(302).permanent  # redirects are not followed
    assert AttemptResult.from_http(404, "x" * 900).error == "x" * 500


def test_success_delivers() -> None:
    d = decide(AttemptResult(ok=True), attempts=3, created_at=0, now=10, policy=POLICY)
    assert d.status == DELIVERED


def test_a_failure_is_retried_after_the_backoff() -> None:
    d = decide(AttemptResult.from_http(503), attempts=2, created_at=0, now=10, policy=POLICY)
    assert (d.status, d.next_attempt_at) == (PENDING, 14.0)


def test_the_last_attempt_fails_the_delivery() -> None:
    d = decide(AttemptResult.from_http(503), attempts=5, created_at=0, now=10, policy=POLICY)
    assert (d.status, d.reason) == (FAILED, "5 attempts")


def test_a_retry_past_the_max_age_fails_the_delivery() -> None:
    d = decide(AttemptResult(ok=False), attempts=1, created_at=0, now=3599, policy=POLICY)
    assert d.status == FAILED and d.reason.startswith("older than")


def test_a_permanent_refusal_fails_at_once() -> None:
    d = decide(AttemptResult.from_http(410), attempts=1, created_at=0, now=1, policy=POLICY)
    assert (d.status, d.reason) == (FAILED, "refused")
