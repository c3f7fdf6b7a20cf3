"""Sending one delivery and deciding what its result means, for every service that notifies.

The transports: an HTTP POST of a JSON body (webhooks, Slack incoming webhooks) and an SMTP
message (email). Each send is bounded by its timeout and answers an `AttemptResult`;
transport errors are results (retried), never exceptions, so one bad target cannot break a
dispatcher. `decide` turns a result into the delivery's next status: `delivered`, `pending`
again at a later time (exponential backoff, tenacity's wait strategies), or `failed` once the
attempts or the age are spent, or at once on a permanent refusal (an HTTP 3xx or 4xx other
than 408, 425 and 429, an SMTP 5xx reply), as Alertmanager does. Pure apart from the sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiohttp
import aiosmtplib
from tenacity import AsyncRetrying, RetryCallState, wait_exponential, wait_random
from tenacity.wait import wait_base

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

IDEMPOTENCY_HEADER = "Idempotency-Key"
_BODY_KEPT = 500  # bytes of an answer kept as the attempt's error
_RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one send ended."""

    ok: bool
    permanent: bool = False  # a refusal that retrying cannot change
    http_status: int | None = None
    smtp_reply: str = ""
    error: str = ""

    @classmethod
    def from_http(cls, status: int, body: str = "") -> AttemptResult:
        """A 2xx is delivered; a 3xx (redirects are not followed) or a 4xx other than
        408/425/429 is permanent; the rest is retried."""
        if 200 <= status < 300:
            return cls(ok=True, http_status=status)
        permanent = 300 <= status < 500 and status not in _RETRYABLE_4XX
        return cls(ok=False, permanent=permanent, http_status=status, error=body[:500])


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds of a delivery's retries and the backoff between attempts."""

    max_attempts: int = 8
    max_age_s: float = 86_400.0
    initial_s: float = 5.0
    max_backoff_s: float = 600.0
    jitter_s: float = 1.0

    def wait(self) -> wait_base:
        """Tenacity's strategy: initial * 2^(n-1), capped, plus up to `jitter_s` at random."""
        exponential = wait_exponential(multiplier=self.initial_s, max=self.max_backoff_s)
        return exponential + wait_random(0, self.jitter_s) if self.jitter_s > 0 else exponential

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempts
        return float(self.wait()(state))


@dataclass(frozen=True, slots=True)
class Decision:
    """The delivery's status after an attempt, and when to try again (pending only)."""

    status: str
    next_attempt_at: float | None = None
    reason: str = ""


def decide(
    result: AttemptResult, *, attempts: int, created_at: float, now: float, policy: RetryPolicy
) -> Decision:
    """The next status of a delivery whose `attempts`-th attempt ended with `result`."""
    if result.ok:
        return Decision(DELIVERED)
    if result.permanent:
        return Decision(FAILED, reason="refused")
    if attempts >= policy.max_attempts:
        return Decision(FAILED, reason=f"{attempts} attempts")
    at = now + policy.backoff(attempts)
    if at - created_at > policy.max_age_s:
        return Decision(FAILED, reason=f"older than {policy.max_age_s:g}s")
    return Decision(PENDING, next_attempt_at=at)


def describe(e: BaseException) -> str:
    """An exception as an attempt's error text: its type and message, clipped."""
    text = str(e)
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__)[:500]


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    timeout_s: float,
) -> AttemptResult:
    """POST `body` (JSON) to `url`; how it ended. A redirect is not followed: a POST
    would turn into a GET on the way."""
    try:
        async with session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            head = await response.content.read(_BODY_KEPT)
            return AttemptResult.from_http(response.status, head.decode(errors="replace"))
    except TimeoutError:
        return AttemptResult(ok=False, error=f"TimeoutError: no answer within {timeout_s:g}s")
    except (aiohttp.ClientError, OSError, ValueError) as e:
        return AttemptResult(ok=False, error=describe(e))


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how email is sent."""

    host: str
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = ""
    timeout_s: float = 15.0


async def send_mail(message: EmailMessage, server: SmtpServer) -> AttemptResult:
    """Send one message over SMTP; how it ended (a 5xx refusal is permanent)."""
    try:
        _, reply = await aiosmtplib.send(
            message,
            hostname=server.host,
            port=server.port,
            use_tls=server.security == "tls",
            start_tls=server.security == "starttls",
            username=server.username or None,
            password=server.password or None,
            timeout=server.timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as e:
        codes = [r.code for r in e.recipients]
        reply = "; ".join(f"{r.code} {r.message}" for r in e.recipients)
        return AttemptResult(
            ok=False, permanent=all(c >= 500 for c in codes), smtp_reply=reply, error=reply
        )
    except aiosmtplib.SMTPResponseException as e:
        reply = f"{e.code} {e.message}"
        return AttemptResult(ok=False, permanent=e.code >= 500, smtp_reply=reply, error=reply)
    except (aiosmtplib.SMTPException, TimeoutError, OSError, asyncio.IncompleteReadError) as e:
        return AttemptResult(ok=False, error=describe(e))
    # aiosmtplib answers the final reply's text; accepted data is always code 250.
    return AttemptResult(ok=True, smtp_reply=f"250 {reply}")
