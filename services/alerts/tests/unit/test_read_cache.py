"""Identical metrics reads shared for a while, failures not kept."""

from __future__ import annotations

import asyncio

import pytest

from northstar_alerts.adapters.metrics_client import ReadCache
from northstar_alerts.domain.state import ManualClock


class Reads:
    """A read that counts its calls and can be held or made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail = False

    async def __call__(self) -> int:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise ConnectionError("down")
        return self.calls


async def test_identical_reads_share_one_call_until_the_ttl() -> None:
    clock, read = ManualClock(0.0), Reads()
    cache = ReadCache(30.0, clock=clock)
    assert [await cache.get("k", read), await cache.get("k", read)] == [1, 1]
    assert await cache.get("other", read) == 2
    clock.advance(30.0)
    assert await cache.get("k", read) == 3


async def test_a_read_in_flight_is_shared_and_a_failure_is_not_kept() -> None:
    read = Reads()
    read.release.clear()
    read.fail = True
    cache = ReadCache(30.0, clock=ManualClock(0.0))
    waiting = [asyncio.ensure_future(cache.get("k", read)) for _ in range(3)]
    await asyncio.sleep(0)
    read.release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert read.calls == 1
    assert all(isinstance(r, ConnectionError) for r in results)
    read.fail = False
    assert await cache.get("k", read) == 2


async def test_the_oldest_answers_go_first_and_zero_turns_it_off() -> None:
    read = Reads()
    cache = ReadCache(30.0, max_entries=2, clock=ManualClock(0.0))
    for key in ("a", "b", "c"):
        await cache.get(key, read)
    assert await cache.get("c", read) == 3
    assert await cache.get("a", read) == 4  # dropped, read again
    off = ReadCache(0.0)
    assert [await off.get("k", read), await off.get("k", read)] == [5, 6]


@pytest.mark.parametrize("cancelled_first", [True, False])
async def test_one_callers_deadline_does_not_cancel_the_shared_read(cancelled_first: bool) -> None:
    read = Reads()
    read.release.clear()
    cache = ReadCache(30.0, clock=ManualClock(0.0))
    impatient = asyncio.ensure_future(cache.get("k", read))
    patient = asyncio.ensure_future(cache.get("k", read))
    await asyncio.sleep(0)
    (impatient if cancelled_first else patient).cancel()
    read.release.set()
    survivor = patient if cancelled_first else impatient
    assert await survivor == 1
    assert read.calls == 1
