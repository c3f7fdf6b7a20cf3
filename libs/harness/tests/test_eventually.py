"""assert_eventually: polls until true, fails with the last assertion."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from northstar_harness.eventually import assert_eventually


async def test_returns_the_first_truthy_value_of_a_sync_check() -> None:
    calls = itertools.count(1)

    def third_time_lucky() -> int:
        n = next(calls)
        assert n >= 3, f"only {n} calls"
        return n

    assert await assert_eventually(third_time_lucky, interval=0.001) == 3


async def test_awaits_async_checks() -> None:
    calls = itertools.count(1)

    async def check() -> str | None:
        await asyncio.sleep(0)
        return "done" if next(calls) >= 2 else None

    assert await assert_eventually(check, interval=0.001) == "done"


async def test_times_out_with_the_last_assertion_and_a_note() -> None:
    calls = itertools.count(1)

    def never() -> None:
        raise AssertionError(f"attempt {next(calls)}")

    with pytest.raises(AssertionError) as caught:
        await assert_eventually(never, timeout=0.1, interval=0.01, message="rows projected")

    last = int(str(caught.value).split("attempt ")[1].split()[0])
    assert last == next(calls) - 1 > 1
    assert caught.value.__notes__[0].startswith("rows projected: not true after 0.1s")


async def test_times_out_on_falsy_results_saying_what_came_back() -> None:
    with pytest.raises(AssertionError, match=r"returned \[\]") as caught:
        await assert_eventually(list, timeout=0.05, interval=0.01)
    assert "not true after 0.05s" in caught.value.__notes__[0]


async def test_a_hanging_check_is_cut_off_at_the_timeout() -> None:
    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    with pytest.raises(AssertionError, match="still running when time ran out"):
        await assert_eventually(hangs, timeout=0.05)


async def test_other_exceptions_propagate_at_once() -> None:
    calls = itertools.count(1)

    def broken() -> None:
        next(calls)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await assert_eventually(broken, timeout=5)
    assert next(calls) == 2
