"""The EraseUser request's rules and the erasure's id."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from northstar.log.v1 import log_pb2
from northstar_ingest.domain.erasure import erasure_id, only_erased_events, user_id_problem
from northstar_ingest.domain.validation import MAX_ID_CHARS


def test_a_user_id_has_the_bounds_of_an_events_user_id() -> None:
    assert user_id_problem("u1") is None
    assert user_id_problem("é" * MAX_ID_CHARS) is None
    assert user_id_problem("") == "user_id is required"
    assert user_id_problem("é" * (MAX_ID_CHARS + 1)) == "user_id must be at most 200 characters"
    assert user_id_problem("a\x00") == "user_id must not contain the character U+0000"


@given(tenant=st.text(min_size=1), user=st.text(min_size=1))
def test_the_erasure_id_names_one_user_of_one_tenant(tenant: str, user: str) -> None:
    assert erasure_id(tenant, user) == erasure_id(tenant, user)
    assert erasure_id(tenant, user) != erasure_id(tenant + "x", user)
    assert erasure_id(tenant, user) != erasure_id(tenant, user + "x")
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert erasure_id("ab", "c") != erasure_id("a", "bc")


def _batch(*events: tuple[str, int]) -> log_pb2.EventBatch:
    return log_pb2.EventBatch(
        tenant="acme",
        partition=0,
        events=[log_pb2.StoredEvent(user_id=u, timestamp_us=ts) for u, ts in events],
    )


def test_a_message_is_deleted_only_when_all_of_it_is_erased_history() -> None:
    erasures = {("acme", "a"): (10, 1_000)}  # erased at position 10, time 1,000
    assert only_erased_events(_batch(("a", 5_000)), 9, erasures) is True  # before it
    assert only_erased_events(_batch(("a", 999), ("a", 1_000)), 11, erasures) is True  # retried
    assert only_erased_events(_batch(("a", 1_001)), 11, erasures) is False  # a new history
    assert only_erased_events(_batch(("a", 5), ("b", 5)), 9, erasures) is None  # shared
    assert only_erased_events(_batch(("b", 5), ("", 5)), 9, erasures) is False
    other_tenant = log_pb2.EventBatch(
        tenant="globex", events=[log_pb2.StoredEvent(user_id="a", timestamp_us=5)]
    )
    assert only_erased_events(other_tenant, 9, erasures) is False
