"""Schedule commands and reads over gRPC: versions, errors, defaults, tenants."""

from __future__ import annotations

import grpc
import pytest

from northstar.reports.v1 import reports_pb2 as pb
from northstar_harness.eventually import assert_eventually

from .conftest import (
    OTHER_ADMIN_KEY,
    READ_KEY,
    ReportsHosts,
    auth,
    daily,
    stub_of,
    subject_counts,
    violated_fields,
)


async def test_create_update_delete_with_versions(hosts: ReportsHosts) -> None:
    stub = stub_of(await hosts.start(reports_scheduler_enabled=False))
    created = await stub.CreateSchedule(
        pb.CreateScheduleRequest(schedule=daily("ops.daily", time_zone="Europe/Paris")),
        metadata=auth(),
    )
    v1 = created.schedule.version
    assert v1 > 0 and created.schedule.schedule.schedule_id == "ops.daily"
    # 09:00 in Paris is 07:00 or 08:00 UTC.
    assert created.schedule.next_run.ToDatetime().hour in (7, 8)
    assert not created.schedule.HasField("last_period")

    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.CreateSchedule(
            pb.CreateScheduleRequest(schedule=daily("ops.daily")), metadata=auth()
        )
    assert again.value.code() is grpc.StatusCode.ALREADY_EXISTS

    updated = await stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=daily("ops.daily", name="Renamed", paused=True), expected_version=v1
        ),
        metadata=auth(),
    )
    v2 = updated.schedule.version
    assert v2 > v1 and updated.schedule.schedule.paused
    assert not updated.schedule.HasField("next_run")  # paused: it does not fire
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await stub.UpdateSchedule(
            pb.UpdateScheduleRequest(schedule=daily("ops.daily"), expected_version=v1),
            metadata=auth(),
        )
    assert stale.value.code() is grpc.StatusCode.ABORTED

    got = await stub.GetSchedule(
        pb.GetScheduleRequest(schedule_id="ops.daily"), metadata=auth(READ_KEY)
    )
    assert got.schedule.schedule.name == "Renamed" and got.schedule.version == v2
    listed = await stub.ListSchedules(pb.ListSchedulesRequest(), metadata=auth(READ_KEY))
    assert [s.schedule.schedule_id for s in listed.schedules] == ["ops.daily"]

    with pytest.raises(grpc.aio.AioRpcError) as stale_delete:
        await stub.DeleteSchedule(
            pb.DeleteScheduleRequest(schedule_id="ops.daily", expected_version=v1), metadata=auth()
        )
    assert stale_delete.value.code() is grpc.StatusCode.ABORTED
    deleted = await stub.DeleteSchedule(
        pb.DeleteScheduleRequest(schedule_id="ops.daily", expected_version=v2), metadata=auth()
    )
    assert deleted.version > v2
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetSchedule(pb.GetScheduleRequest(schedule_id="ops.daily"), metadata=auth())
    assert gone.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as after_delete:
        await stub.UpdateSchedule(
            pb.UpdateScheduleRequest(schedule=daily("ops.daily"), expected_version=deleted.version),
            metadata=auth(),
        )
    assert after_delete.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    listed = await stub.ListSchedules(pb.ListSchedulesRequest(), metadata=auth())
    assert list(listed.schedules) == []


async def test_invalid_schedules_name_their_fields(hosts: ReportsHosts) -> None:
    stub = stub_of(await hosts.start(reports_scheduler_enabled=False))
    bad = daily(
        "Bad Id",
        cron="0 9 * *",
        time_zone="Nowhere/Land",
        channels=pb.Channels(emails=["x"], webhooks=["ftp://x.test/"]),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateSchedule(pb.CreateScheduleRequest(schedule=bad), metadata=auth())
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == [
        "schedule.schedule_id",
        "schedule.cron",
        "schedule.time_zone",
        "schedule.channels.emails[0]",
        "schedule.channels.webhooks[0]",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.UpdateSchedule(
            pb.UpdateScheduleRequest(schedule=daily("nope"), expected_version=1), metadata=auth()
        )
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as read_only:
        await stub.CreateSchedule(
            pb.CreateScheduleRequest(schedule=daily()), metadata=auth(READ_KEY)
        )
    assert read_only.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_schedules_are_per_tenant(hosts: ReportsHosts) -> None:
    stub = stub_of(await hosts.start(reports_scheduler_enabled=False))
    await stub.CreateSchedule(pb.CreateScheduleRequest(schedule=daily("ops")), metadata=auth())
    other = await stub.ListSchedules(pb.ListSchedulesRequest(), metadata=auth(OTHER_ADMIN_KEY))
    assert list(other.schedules) == []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetSchedule(
            pb.GetScheduleRequest(schedule_id="ops"), metadata=auth(OTHER_ADMIN_KEY)
        )
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    # The same id is free in another tenant.
    await stub.CreateSchedule(
        pb.CreateScheduleRequest(schedule=daily("ops")), metadata=auth(OTHER_ADMIN_KEY)
    )


async def test_two_replicas_install_the_defaults_once(hosts: ReportsHosts) -> None:
    first = await hosts.start(reports_default_schedules=True)
    await hosts.start(reports_default_schedules=True)
    stub = stub_of(first)

    async def installed() -> list[pb.ScheduleState]:
        listed = await stub.ListSchedules(pb.ListSchedulesRequest(), metadata=auth())
        assert [s.schedule.schedule_id for s in listed.schedules] == ["daily", "weekly"]
        return list(listed.schedules)

    daily_s, weekly_s = await assert_eventually(installed, timeout=20)
    assert (daily_s.schedule.cron, daily_s.schedule.kind) == ("0 9 * * *", pb.REPORT_KIND_DAILY)
    assert (weekly_s.schedule.cron, weekly_s.schedule.kind) == ("0 9 * * 1", pb.REPORT_KIND_WEEKLY)
    other = await stub.ListSchedules(pb.ListSchedulesRequest(), metadata=auth(OTHER_ADMIN_KEY))
    assert [s.schedule.schedule_id for s in other.schedules] == ["daily", "weekly"]
    # Each was created once, in both tenants: one event per schedule subject.
    counts = await subject_counts(first, "schedule")
    assert sorted(counts.values()) == [1, 1, 1, 1]
