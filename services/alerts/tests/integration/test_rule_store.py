"""Alert rules as domain events on real NATS: folding, optimistic concurrency, lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from northstar_alerts.adapters.rule_store import RuleStore
from northstar_alerts.domain.rule_events import (
    CREATED,
    DELETED,
    UPDATED,
    decide_create,
    decide_delete,
    decide_update,
)
from northstar_alerts.domain.rules import Channels, Rule, Series, Threshold
from northstar_runtime.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound
from northstar_runtime.log import LogClient
from northstar_runtime.topology import Topology


@pytest.fixture
async def store(nats_url: str, namespace: str) -> AsyncIterator[RuleStore]:
    """A rule store over a fresh namespace's streams."""
    log = await LogClient.connect(nats_url, Topology(namespace), name="alerts-test")
    await log.ensure_streams()
    try:
        yield RuleStore(log)
    finally:
        await log.close()


def _rule(warning: float = 100.0) -> Rule:
    return Rule(
        rule_id="dau-low",
        tenant="acme",
        name="DAU low",
        series=Series(kind="metric", name="dau"),
        condition=Threshold(comparator="<", warning=warning, critical=50.0),
        labels={"team": "growth"},
        channels=Channels(webhooks=("http://127.0.0.1:9/hook",), emails=("ops@example.com",)),
    )


async def test_create_update_delete_fold_back_from_the_log(store: RuleStore) -> None:
    state, _ = await store.load("acme", "dau-low")
    v1 = await store.append("acme", decide_create(state, _rule(), "ana"), 0)
    state, history = await store.load("acme", "dau-low")
    assert state is not None and (state.rule, state.version) == (_rule(), v1)
    v2 = await store.append("acme", decide_update(state, _rule(120.0), "bo"), v1)
    state, _ = await store.load("acme", "dau-low")
    assert state is not None and state.rule.levels() == {"warning": 120.0, "critical": 50.0}
    v3 = await store.append("acme", decide_delete(state, "dau-low", "ana"), v2)
    state, history = await store.load("acme", "dau-low")
    assert state is not None and (state.deleted, state.version) == (True, v3)
    assert [(v, e.type, e.actor) for v, e in history] == [
        (v1, CREATED, "ana"),
        (v2, UPDATED, "bo"),
        (v3, DELETED, "ana"),
    ]
    with pytest.raises(FailedPrecondition):
        decide_update(state, _rule(), "bo")
    with pytest.raises(AlreadyExists):
        decide_create(state, _rule(), "bo")
    # Another tenant's rule of the same id is another aggregate.
    assert await store.load("globex", "dau-low") == (None, [])


async def test_a_stale_version_is_aborted_and_only_one_writer_wins(store: RuleStore) -> None:
    v1 = await store.append("acme", decide_create(None, _rule(), "ana"), 0)
    state, _ = await store.load("acme", "dau-low")
    results = await asyncio.gather(
        store.append("acme", decide_update(state, _rule(110.0), "a"), v1),
        store.append("acme", decide_update(state, _rule(130.0), "b"), v1),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Aborted", "int"]
    with pytest.raises(Aborted):
        await store.append("acme", decide_update(state, _rule(140.0), "c"), v1)
    with pytest.raises(AlreadyExists):
        await store.append("acme", decide_create(None, _rule(), "d"), 0)
    with pytest.raises(NotFound):
        decide_delete(None, "nope", "ana")
