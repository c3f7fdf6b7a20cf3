"""The EraseUser request's rules and the erasure's id."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from northstar_ingest.domain.erasure import erasure_id, user_id_problem
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
