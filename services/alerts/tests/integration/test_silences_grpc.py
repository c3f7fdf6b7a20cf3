"""Silences over gRPC: create, list, expire; validation, scopes, tenants; the evaluator's view."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import timestamp_pb2

from northstar.alerts.v1 import alerts_pb2 as pb
from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.adapters.silence_store import SilenceStore

from .conftest import ADMIN_KEY, OTHER_ADMIN_KEY, READ_KEY, AlertsHosts, auth, violated_fields

Stub = alerts_pb2_grpc.AlertsServiceStub


def _at(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _silence(ends_in: float = 3600, starts_in: float | None = None) -> pb.Silence:
    now = time.time()
    s = pb.Silence(
        matchers={"team": "growth", "severity": "critical"},
        ends_at=_at(now + ends_in),
        reason="deploying the new funnel",
        author="ana",
    )
    if starts_in is not None:
        s.starts_at.CopyFrom(_at(now + starts_in))
    return s


async def _create(stub: Stub, silence: pb.Silence, key: str = ADMIN_KEY) -> pb.Silence:
    answer = await stub.CreateSilence(pb.CreateSilenceRequest(silence=silence), metadata=auth(key))
    return answer.silence


async def test_create_list_expire(stub: Stub) -> None:
    now = time.time()
    active = await _create(stub, _silence())
    assert len(active.silence_id) == 32 and active.version > 0
    assert active.status == pb.SILENCE_STATUS_ACTIVE
    assert abs(active.starts_at.ToNanoseconds() / 1e9 - now) < 60  # unset: starts now
    later = await _create(stub, _silence(ends_in=7200, starts_in=3600))
    assert later.status == pb.SILENCE_STATUS_PENDING
    listed = await stub.ListSilences(pb.ListSilencesRequest(), metadata=auth(READ_KEY))
    assert [s.silence_id for s in listed.silences] == [later.silence_id, active.silence_id]
    assert dict(listed.silences[1].matchers) == {"team": "growth", "severity": "critical"}
    assert (listed.silences[1].reason, listed.silences[1].author) == (
        "deploying the new funnel",
        "ana",
    )

    expired = await stub.ExpireSilence(
        pb.ExpireSilenceRequest(silence_id=active.silence_id), metadata=auth(ADMIN_KEY)
    )
    assert expired.silence.status == pb.SILENCE_STATUS_EXPIRED
    assert expired.silence.HasField("expired_at") and expired.silence.version > active.version
    listed = await stub.ListSilences(pb.ListSilencesRequest(), metadata=auth(READ_KEY))
    assert [s.silence_id for s in listed.silences] == [later.silence_id]
    every = await stub.ListSilences(
        pb.ListSilencesRequest(include_expired=True), metadata=auth(READ_KEY)
    )
    assert [s.status for s in every.silences] == [
        pb.SILENCE_STATUS_PENDING,
        pb.SILENCE_STATUS_EXPIRED,
    ]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ExpireSilence(
            pb.ExpireSilenceRequest(silence_id=active.silence_id), metadata=auth(ADMIN_KEY)
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_invalid_silences_name_their_fields(stub: Stub) -> None:
    bad = _silence(ends_in=-60)
    bad.matchers.clear()
    bad.author = ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _create(stub, bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(err.value) == ["silence.matchers", "silence.ends_at", "silence.author"]
    for silence_id, code in (
        ("not-an-id", grpc.StatusCode.INVALID_ARGUMENT),
        ("0" * 32, grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ExpireSilence(
                pb.ExpireSilenceRequest(silence_id=silence_id), metadata=auth(ADMIN_KEY)
            )
        assert err.value.code() == code


async def test_scopes_and_tenants(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _create(stub, _silence(), key=READ_KEY)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    mine = await _create(stub, _silence())
    theirs = await stub.ListSilences(pb.ListSilencesRequest(), metadata=auth(OTHER_ADMIN_KEY))
    assert list(theirs.silences) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ExpireSilence(
            pb.ExpireSilenceRequest(silence_id=mine.silence_id), metadata=auth(OTHER_ADMIN_KEY)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_store_answers_the_silences_active_at_a_time(
    alerts_hosts: AlertsHosts,
) -> None:
    host = await alerts_hosts.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    stub = Stub(channel)
    try:
        now = time.time()
        now_on = await _create(stub, _silence())
        soon = await _create(stub, _silence(ends_in=7200, starts_in=3600))
        gone = await _create(stub, _silence())
        await stub.ExpireSilence(
            pb.ExpireSilenceRequest(silence_id=gone.silence_id), metadata=auth(ADMIN_KEY)
        )
    finally:
        await channel.close()
    assert host.resources is not None
    store = SilenceStore(host.resources.log)
    active = await store.active("acme", now + 60)
    assert [s.silence_id for s in active] == [now_on.silence_id]
    assert active[0].mutes({"team": "growth", "severity": "critical", "x": "y"}, now + 60)
    assert not active[0].mutes({"team": "growth", "severity": "warning"}, now + 60)
    later = await store.active("acme", now + 3700)
    assert [s.silence_id for s in later] == [soon.silence_id]
    assert await store.active("globex", now + 60) == []
