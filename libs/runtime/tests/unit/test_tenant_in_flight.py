"""TenantInFlight: each tenant's in-flight RPCs are bounded, independently of others."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from northstar_runtime.errors import ResourceExhausted
from northstar_runtime.grpc_server import TenantInFlight


def test_a_tenant_at_its_limit_is_refused_with_a_retry_delay() -> None:
    limit = TenantInFlight(2, retry_after_seconds=0.5)
    limit.admit("a")
    limit.admit("a")
    with pytest.raises(ResourceExhausted) as err:
        limit.admit("a")
    assert (err.value.reason, err.value.retry_after_seconds) == ("TENANT_CONCURRENCY", 0.5)
    limit.admit("b")  # another tenant is not affected
    limit.release("a")
    limit.admit("a")  # a freed slot is usable again
    assert (limit.in_flight("a"), limit.in_flight("b")) == (2, 1)


def test_zero_admits_everything() -> None:
    limit = TenantInFlight(0)
    for _ in range(10_000):
        limit.admit("a")
    assert limit.in_flight("a") == 10_000


@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=200))
def test_in_flight_never_exceeds_the_limit_and_returns_to_zero(ops: list[tuple[str, bool]]) -> None:
    limit = TenantInFlight(3)
    held: dict[str, int] = {}
    for tenant, take in ops:
        if take:
            try:
                limit.admit(tenant)
            except ResourceExhausted:
                assert held.get(tenant, 0) == 3
            else:
                held[tenant] = held.get(tenant, 0) + 1
        elif held.get(tenant):
            limit.release(tenant)
            held[tenant] -= 1
        assert limit.in_flight(tenant) == held.get(tenant, 0) <= 3
    for tenant, n in held.items():
        for _ in range(n):
            limit.release(tenant)
        assert limit.in_flight(tenant) == 0
