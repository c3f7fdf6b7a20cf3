"""The erasure policy's pure parts, shared by every projection of the events log."""

from __future__ import annotations

from northstar_runtime.erasure import is_erased_history, user_digest


def test_only_events_at_or_before_the_erasure_are_erased_history() -> None:
    erased_at = 1_000_000
    assert is_erased_history(erased_at - 1, erased_at)  # a late retry of old history
    assert is_erased_history(erased_at, erased_at)  # the erasure's own microsecond
    assert not is_erased_history(erased_at + 1, erased_at)  # the user came back
    assert not is_erased_history(0, None)  # never erased


def test_the_digest_is_per_tenant_and_never_the_id() -> None:
    # Pinned: the erased_users rows of existing read models were written with it.
    assert user_digest("acme", "u1").hex() == "f21338d703eeed77edacc5228b45c880"
    assert user_digest("acme", "u1") != user_digest("globex", "u1")
    assert b"u1" not in user_digest("acme", "u1")
