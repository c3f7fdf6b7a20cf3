"""Rules CRUD over gRPC: scopes, tenants, validation and optimistic concurrency."""

from __future__ import annotations

import grpc
import pytest

from northstar.alerts.v1 import alerts_pb2 as pb
from northstar.alerts.v1 import alerts_pb2_grpc

from .conftest import ADMIN_KEY, OTHER_ADMIN_KEY, READ_KEY, auth, violated_fields

Stub = alerts_pb2_grpc.AlertsServiceStub


def _rule(rule_id: str = "dau-low", warning: float = 100.0) -> pb.Rule:
    return pb.Rule(
        rule_id=rule_id,
        name="DAU low",
        series=pb.Series(kind=pb.SERIES_KIND_METRIC, name="dau"),
        threshold=pb.Levels(comparator=pb.COMPARATOR_LESS, warning=warning, critical=50.0),
        for_seconds=300,
        labels={"team": "growth"},
        channels=pb.Channels(webhooks=["http://127.0.0.1:9/hook"]),
    )


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code()


async def test_crud_with_versions(stub: Stub) -> None:
    created = await stub.CreateRule(pb.CreateRuleRequest(rule=_rule()), metadata=auth(ADMIN_KEY))
    got = await stub.GetRule(pb.GetRuleRequest(rule_id="dau-low"), metadata=auth(READ_KEY))
    assert got.version == created.version
    assert (got.rule.interval_seconds, got.rule.repeat_interval_seconds) == (3600, 86_400)
    assert got.rule.threshold.warning == 100.0 and got.rule.for_seconds == 300
    updated = await stub.UpdateRule(
        pb.UpdateRuleRequest(rule=_rule(warning=120.0), expected_version=created.version),
        metadata=auth(ADMIN_KEY),
    )
    stale = stub.UpdateRule(
        pb.UpdateRuleRequest(rule=_rule(warning=130.0), expected_version=created.version),
        metadata=auth(ADMIN_KEY),
    )
    assert await _code(stale) == grpc.StatusCode.ABORTED
    await stub.CreateRule(pb.CreateRuleRequest(rule=_rule("other")), metadata=auth(ADMIN_KEY))
    listed = await stub.ListRules(pb.ListRulesRequest(), metadata=auth(READ_KEY))
    assert [(r.rule.rule_id, r.rule.threshold.warning) for r in listed.rules] == [
        ("dau-low", 120.0),
        ("other", 100.0),
    ]
    await stub.DeleteRule(
        pb.DeleteRuleRequest(rule_id="dau-low", expected_version=updated.version),
        metadata=auth(ADMIN_KEY),
    )
    gone = stub.GetRule(pb.GetRuleRequest(rule_id="dau-low"), metadata=auth(READ_KEY))
    assert await _code(gone) == grpc.StatusCode.NOT_FOUND
    listed = await stub.ListRules(pb.ListRulesRequest(), metadata=auth(READ_KEY))
    assert [r.rule.rule_id for r in listed.rules] == ["other"]
    again = stub.CreateRule(pb.CreateRuleRequest(rule=_rule()), metadata=auth(ADMIN_KEY))
    assert await _code(again) == grpc.StatusCode.ALREADY_EXISTS


async def test_scopes_and_tenants(stub: Stub) -> None:
    denied = stub.CreateRule(pb.CreateRuleRequest(rule=_rule()), metadata=auth(READ_KEY))
    assert await _code(denied) == grpc.StatusCode.PERMISSION_DENIED
    anonymous = stub.ListRules(pb.ListRulesRequest())
    assert await _code(anonymous) == grpc.StatusCode.UNAUTHENTICATED
    await stub.CreateRule(pb.CreateRuleRequest(rule=_rule()), metadata=auth(ADMIN_KEY))
    other = await stub.ListRules(pb.ListRulesRequest(), metadata=auth(OTHER_ADMIN_KEY))
    assert list(other.rules) == []


async def test_invalid_rules_name_their_fields(stub: Stub) -> None:
    bad = _rule()
    bad.interval_seconds = 30
    bad.series.name = "nps"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateRule(pb.CreateRuleRequest(rule=bad), metadata=auth(ADMIN_KEY))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Named by the request's fields, as google.rpc.BadRequest wants.
    assert violated_fields(err.value) == ["rule.series.name", "rule.interval_seconds"]
    bad = _rule()
    bad.threshold.warning = float("nan")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.TestRule(pb.TestRuleRequest(definition=bad), metadata=auth(ADMIN_KEY))
    assert violated_fields(err.value) == ["definition.threshold.warning"]
    # Also what the request's conversion refuses, before the domain's checks.
    no_condition = _rule()
    no_condition.ClearField("threshold")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateRule(pb.CreateRuleRequest(rule=no_condition), metadata=auth(ADMIN_KEY))
    assert violated_fields(err.value) == ["rule.condition"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.TestRule(
            pb.TestRuleRequest(definition=_rule(rule_id="")), metadata=auth(ADMIN_KEY)
        )
    assert violated_fields(err.value) == ["definition.rule_id"]
