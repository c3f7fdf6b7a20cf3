"""The erasure policy's pure parts in the experiments service."""

from __future__ import annotations

from northstar_experiments.domain.erasure import is_erased_history, user_digest


def test_only_events_at_or_before_the_erasure_are_erased_history() -> None:
    assert is_erased_history(99, 100) and is_erased_history(100, 100)
    assert not is_erased_history(101, 100)
    assert not is_erased_history(0, None)


def test_the_digest_is_the_metrics_services_and_never_holds_the_id() -> None:
    # The metrics service pins the same value: one rule, written in both services.
    assert user_digest("acme", "u1").hex() == "f21338d703eeed77edacc5228b45c880"
    assert user_digest("acme", "u1") != user_digest("globex", "u1")
    assert b"u1" not in user_digest("acme", "u1")
