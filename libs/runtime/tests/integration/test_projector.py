"""The projector loop against real NATS and PostgreSQL: exactly-once effect, parking, rebuild."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import pytest

from northstar_harness.eventually import assert_eventually
from northstar_runtime.config import ServiceSettings
from northstar_runtime.db import Connection, create_pool
from northstar_runtime.log import LogClient, OutgoingMessage
from northstar_runtime.maintenance import dead_letters
from northstar_runtime.projector import LogEntry, Projector
from northstar_runtime.topology import Topology


class Tally:
    """A projection that stores every payload it applies; `poison` payloads fail."""

    name = "tally"

    def __init__(self) -> None:
        self.poison: set[bytes] = set()
        self.block_on: bytes | None = None
        self.blocked = asyncio.Event()
        self.release = asyncio.Event()

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        for e in entries:
            if e.data in self.poison:
                raise ValueError(f"cannot apply {e.data!r}")
            await conn.execute("INSERT INTO tally (seq, data) VALUES ($1, $2)", e.seq, e.data)
            if e.data == self.block_on:
                self.blocked.set()
                await self.release.wait()

    async def reset(self, conn: Connection) -> None:
        await conn.execute("TRUNCATE tally")


@dataclass
class Rig:
    log: LogClient
    pool: asyncpg.Pool
    topology: Topology

    def projector(self, projection: Tally) -> Projector:
        return Projector(
            log_client=self.log,
            pool=self.pool,
            service="test",
            projection=projection,
            stream=self.topology.events_stream,
            filter_subjects=[self.topology.events_subjects],
            batch_size=10,
            max_tries=2,
        )

    async def publish(self, payloads: Sequence[bytes]) -> None:
        await self.log.publish_many(
            [OutgoingMessage(self.topology.events_subject("acme", 0), p) for p in payloads],
            timeout=10,
        )

    async def rows(self) -> list[bytes]:
        return [
            bytes(r["data"]) for r in await self.pool.fetch("SELECT data FROM tally ORDER BY seq")
        ]


@pytest.fixture
async def rig(nats_url: str, database_url: str, namespace: str) -> AsyncIterator[Rig]:
    topology = Topology(namespace)
    log = await LogClient.connect(nats_url, topology, name="projector-test")
    await log.ensure_streams()
    schema = topology.schema("test")
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.close()
    pool = await create_pool(database_url, schema)
    await pool.execute("CREATE TABLE tally (seq bigint PRIMARY KEY, data bytea NOT NULL)")
    try:
        yield Rig(log, pool, topology)
    finally:
        await pool.close()
        await log.close()


@contextlib.asynccontextmanager
async def running(projector: Projector) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(projector.run())
    try:
        yield task
    finally:
        projector.stop()
        await asyncio.wait_for(task, timeout=10)


def payloads(n: int, prefix: str = "m") -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(n)]


async def test_applies_everything_once_in_order(rig: Rig) -> None:
    await rig.publish(payloads(35))
    projector = rig.projector(Tally())
    async with running(projector):
        await assert_eventually(lambda: projector.status.position == 35, timeout=10)
    assert await rig.rows() == payloads(35)
    assert await projector.checkpoint() == 35


async def test_restart_resumes_from_the_checkpoint_without_double_apply(rig: Rig) -> None:
    await rig.publish(payloads(20))
    first = rig.projector(Tally())
    async with running(first):
        await assert_eventually(lambda: first.status.position == 20)
    await rig.publish(payloads(5, prefix="late"))
    second = rig.projector(Tally())
    async with running(second):
        await assert_eventually(lambda: second.status.position == 25)
    assert await rig.rows() == payloads(20) + payloads(5, prefix="late")


async def test_a_crash_in_the_middle_of_a_batch_loses_and_repeats_nothing(rig: Rig) -> None:
    await rig.publish(payloads(30))
    crashing = Tally()
    crashing.block_on = b"m14"  # the second batch is half written when we crash
    projector = rig.projector(crashing)
    task = asyncio.create_task(projector.run())
    await asyncio.wait_for(crashing.blocked.wait(), timeout=10)
    task.cancel()  # dies mid-transaction: nothing of that batch is committed
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await projector.checkpoint() == 10
    assert len(await rig.rows()) == 10
    survivor = rig.projector(Tally())
    async with running(survivor):
        await assert_eventually(lambda: survivor.status.position == 30)
    assert await rig.rows() == payloads(30)


async def test_poison_entries_are_parked_and_the_rest_applied(rig: Rig) -> None:
    tally = Tally()
    tally.poison = {b"m3", b"m7"}
    await rig.publish(payloads(12))
    projector = rig.projector(tally)
    async with running(projector):
        await assert_eventually(lambda: projector.status.position == 12)
    assert await rig.rows() == [p for p in payloads(12) if p not in {b"m3", b"m7"}]
    parked = await rig.pool.fetch(
        "SELECT position, data, error FROM dead_letters WHERE replayed_at IS NULL ORDER BY position"
    )
    assert [(r["position"], bytes(r["data"])) for r in parked] == [(4, b"m3"), (8, b"m7")]
    assert "cannot apply b'm3'" in parked[0]["error"]
    assert projector.status.parked == 2
    # Parked entries are visible on the dead-letter subject too.
    info = await rig.log.js.stream_info(rig.topology.deadletter_stream)
    assert info.state.messages == 2
    # After a fix, replay applies them.
    tally.poison = set()
    assert await projector.replay_dead_letters() == 2
    assert sorted(await rig.rows()) == sorted(payloads(12))
    assert (
        await rig.pool.fetchval("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL") == 0
    )


async def test_reset_replays_the_whole_log_to_the_same_state(rig: Rig) -> None:
    await rig.publish(payloads(25))
    projector = rig.projector(Tally())
    async with running(projector):
        await assert_eventually(lambda: projector.status.position == 25)
    before = await rig.rows()
    await projector.reset()
    assert await rig.rows() == []
    again = rig.projector(Tally())
    async with running(again):
        await assert_eventually(lambda: again.status.position == 25)
    assert await rig.rows() == before


class TallyV2(Tally):
    """The next version of Tally: it keeps something more (a marked copy of each payload)."""

    version = 2

    def __init__(self) -> None:
        super().__init__()
        self.applied = 0

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        self.applied += len(entries)
        for e in entries:
            await conn.execute(
                "INSERT INTO tally (seq, data) VALUES ($1, $2)", e.seq, e.data + b"!"
            )


async def test_a_new_projection_version_rebuilds_its_read_model_once(rig: Rig) -> None:
    await rig.publish(payloads(25))
    old = rig.projector(Tally())
    async with running(old):
        await assert_eventually(lambda: old.status.position == 25)
    # Deployed: the new version empties the read model and replays the whole log.
    new = TallyV2()
    upgraded = rig.projector(new)
    async with running(upgraded):
        await assert_eventually(lambda: upgraded.status.position == 25 and new.applied == 25)
    assert await rig.rows() == [p + b"!" for p in payloads(25)]
    assert await rig.pool.fetchval("SELECT version FROM projection_checkpoints") == 2
    # Restarted at the same version: it resumes, it does not rebuild again.
    await rig.publish(payloads(3, prefix="late"))
    again = TallyV2()
    restarted = rig.projector(again)
    async with running(restarted):
        await assert_eventually(lambda: restarted.status.position == 28)
    assert again.applied == 3
    assert len(await rig.rows()) == 28


async def test_only_one_replica_applies_at_a_time(rig: Rig) -> None:
    await rig.publish(payloads(40))
    a, b = rig.projector(Tally()), rig.projector(Tally())
    async with running(a), running(b):
        await assert_eventually(lambda: max(a.status.position, b.status.position) == 40)
        assert a.status.active != b.status.active
    assert await rig.rows() == payloads(40)


async def test_a_fixed_replica_replays_what_was_parked_when_it_becomes_active(
    rig: Rig, database_url: str, namespace: str
) -> None:
    settings = ServiceSettings(database_url=database_url, northstar_namespace=namespace)
    broken = Tally()
    broken.poison = {b"m2"}
    await rig.publish(payloads(6))
    first = rig.projector(broken)
    async with running(first):
        await assert_eventually(lambda: first.status.position == 6)
    listed = await dead_letters(settings, service="test")
    assert [(r["position"], r["replayed_at"]) for r in listed] == [(3, None)]
    assert "cannot apply b'm2'" in listed[0]["error"]
    # The same bug deployed again: still parked, nothing applied twice.
    again = rig.projector(broken)
    async with running(again):
        await assert_eventually(lambda: again.status.active)
    assert [r["replayed_at"] for r in await dead_letters(settings, service="test")] == [None]
    # The fix deployed: the replica that becomes active applies it, then goes on.
    fixed = rig.projector(Tally())
    async with running(fixed):
        await assert_eventually(lambda: fixed.status.active)
        await rig.publish([b"after-fix"])
        await assert_eventually(lambda: fixed.status.position == 7)
    assert sorted(await rig.rows()) == sorted([*payloads(6), b"after-fix"])
    replayed = await dead_letters(settings, service="test")
    assert [r["position"] for r in replayed] == [3]
    assert replayed[0]["replayed_at"] is not None
