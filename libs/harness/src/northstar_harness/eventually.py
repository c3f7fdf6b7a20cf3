"""`assert_eventually`: poll a condition instead of sleeping in tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["assert_eventually"]

T = TypeVar("T")


@overload
async def assert_eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...
@overload
async def assert_eventually(
    check: Callable[[], T],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...
async def assert_eventually(
    check: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "",
) -> Any:
    """Call `check` (sync or async) until it returns truthy without an AssertionError.

    Returns the truthy value. On timeout, raises the last AssertionError (or one saying
    what `check` last returned), with a note giving the timeout and `message`. Other
    exceptions propagate at once.
    """
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            async with asyncio.timeout(max(remaining, 0.001)):
                result = check()
                if inspect.isawaitable(result):
                    result = await result
        except AssertionError as e:
            last = e
        except TimeoutError:
            last = AssertionError(f"{_name(check)} was still running when time ran out")
        else:
            if result:
                return result
            last = AssertionError(f"{_name(check)} returned {result!r}")
        if time.monotonic() + interval > deadline:
            note = f"not true after {timeout:g}s ({attempts} attempts)"
            last.add_note(f"{message}: {note}" if message else note)
            raise last
        await asyncio.sleep(interval)


def _name(check: Callable[[], Any]) -> str:
    return getattr(check, "__qualname__", None) or repr(check)
