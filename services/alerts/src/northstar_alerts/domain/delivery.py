"""Delivery decisions: what one attempt's result means and when to try again.

Pure: no I/O, no clock (times are passed in). A delivery is one notification to one
channel target (a webhook URL, a Slack webhook, an email address). Each attempt ends in
an `AttemptResult`; `decide` turns it into the delivery's next status: `delivered`,
`pending` again at a later time (exponential backoff, tenacity's wait strategies), or
`failed` once the attempts or the age are spent, or at once on a permanent refusal (an
HTTP 3xx or 4xx other than 408, 425 and 429, an SMTP 5xx reply), as Alertmanager does.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, wait_exponential, wait_random
from tenacity.wait import wait_base

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

WEBHOOK = "webhook"
SLACK = "slack"
EMAIL = "email"
CHANNELS = (WEBHOOK, SLACK, EMAIL)

# Attempt outcomes, as recorded in delivery_attempts.outcome.
IN_FLIGHT = "in_flight"  # persisted before the send; stays so if the process dies during it
RETRY = "retry"  # failed, will be tried again
INTERRUPTED = "interrupted"  # the dispatcher stopped during the send; tried again at once
UNKNOWN = "unknown"  # found in flight by the next claim: the sender died, result unknown

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
