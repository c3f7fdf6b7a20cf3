"""Retries of transient failures: jittered exponential backoff that honours RetryInfo."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from northstar_client.config import RetryPolicy
from northstar_client.errors import RpcError, from_grpc_error

__all__ = ["backoff_delay", "call_async", "call_sync"]

T = TypeVar("T")


def backoff_delay(policy: RetryPolicy, attempt: int, retry_after: float | None) -> float:
    """Seconds before attempt `attempt + 1`: full jitter, at least the server's RetryInfo."""
    ceiling = min(policy.max_backoff, policy.initial_backoff * policy.multiplier ** (attempt - 1))
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        # The server said when capacity returns; a little jitter spreads the herd.
        delay = max(delay, retry_after * random.uniform(1.0, 1.2))
    return delay


def _retryable(error: BaseException) -> bool:
    return isinstance(error, RpcError) and error.retryable


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after if isinstance(error, RpcError) else None
        return backoff_delay(policy, state.attempt_number, retry_after)

    return wait


def _attempt_timeout(timeout: float, started: float, policy: RetryPolicy) -> float:
    remaining = policy.total_timeout - (time.monotonic() - started)
    return max(0.05, min(timeout, remaining))


def _with_attempts(error: RpcError, attempts: int) -> RpcError:
    error.attempts = attempts
    return error


def call_sync(
    method: str,
    attempt: Callable[[float], T],
    *,
    policy: RetryPolicy,
    timeout: float,
    retry: bool = True,
) -> T:
    """Run `attempt(deadline_seconds)` until it succeeds, fails for good, or time is up."""
    started = time.monotonic()
    retrying = Retrying(
        retry=retry_if_exception(_retryable) if retry else retry_if_exception(lambda _: False),
        stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.total_timeout),
        wait=_wait(policy),
        reraise=True,
    )
    number = 0
    try:
        for state in retrying:
            with state:
                number += 1
                try:
                    return attempt(_attempt_timeout(timeout, started, policy))
                except grpc.RpcError as e:
                    raise from_grpc_error(e, method=method) from e
    except RpcError as e:
        raise _with_attempts(e, number) from e.__cause__
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


async def call_async(
    method: str,
    attempt: Callable[[float], Awaitable[T]],
    *,
    policy: RetryPolicy,
    timeout: float,
    retry: bool = True,
) -> T:
    """The asyncio form of `call_sync`."""
    started = time.monotonic()
    retrying = AsyncRetrying(
        retry=retry_if_exception(_retryable) if retry else retry_if_exception(lambda _: False),
        stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.total_timeout),
        wait=_wait(policy),
        reraise=True,
    )
    number = 0
    try:
        async for state in retrying:
            with state:
                number += 1
                try:
                    return await attempt(_attempt_timeout(timeout, started, policy))
                except grpc.RpcError as e:
                    raise from_grpc_error(e, method=method) from e
    except RpcError as e:
        raise _with_attempts(e, number) from e.__cause__
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
