"""Delivery decisions: what one attempt's result means and when to try again.

A delivery is one notification to one channel target (a webhook URL, a Slack webhook, an
email address). The result of an attempt, the retry policy and the decision are shared
with every service that notifies (northstar_runtime.notify); this module names them for
the alerts service and adds its channels and attempt outcomes.
"""

from __future__ import annotations

from northstar_runtime.notify import (
    DELIVERED,
    FAILED,
    PENDING,
    AttemptResult,
    Decision,
    RetryPolicy,
    decide,
)

__all__ = [
    "CHANNELS",
    "DELIVERED",
    "EMAIL",
    "FAILED",
    "INTERRUPTED",
    "IN_FLIGHT",
    "PENDING",
    "RETRY",
    "SLACK",
    "UNKNOWN",
    "WEBHOOK",
    "AttemptResult",
    "Decision",
    "RetryPolicy",
    "decide",
]

WEBHOOK = "webhook"
SLACK = "slack"
EMAIL = "email"
CHANNELS = (WEBHOOK, SLACK, EMAIL)

# Attempt outcomes, as recorded in delivery_attempts.outcome.
IN_FLIGHT = "in_flight"  # persisted before the send; stays so if the process dies during it
RETRY = "retry"  # failed, will be tried again
INTERRUPTED = "interrupted"  # the dispatcher stopped during the send; tried again at once
UNKNOWN = "unknown"  # found in flight by the next claim: the sender died, result unknown
