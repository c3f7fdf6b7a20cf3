"""Sending one delivery: an HTTP POST (webhook, Slack) or an SMTP message (email).

The transports are the shared ones (northstar_runtime.notify): each send is bounded by its
timeout and answers an `AttemptResult`; transport errors are results (retried), never
exceptions, so one bad target cannot break the dispatcher.
"""

from __future__ import annotations

import aiohttp
import orjson

from northstar_alerts.adapters.delivery_store import Claimed
from northstar_alerts.domain.delivery import EMAIL, SLACK, WEBHOOK, AttemptResult
from northstar_alerts.domain.render import email_message, slack_body, webhook_body
from northstar_alerts.settings import AlertsSettings
from northstar_runtime.notify import IDEMPOTENCY_HEADER, post_json, send_mail

USER_AGENT = "northstar-alerts"


class Notifiers:
    """Sends a claimed delivery over its channel with the service's settings."""

    def __init__(self, settings: AlertsSettings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session

    async def send(self, d: Claimed) -> AttemptResult:
        """Send one attempt of `d`; how it ended."""
        url = self._settings.alerts_external_url
        if d.channel == WEBHOOK:
            return await self._post(d, webhook_body(d.notice, external_url=url))
        if d.channel == SLACK:
            return await self._post(d, slack_body(d.notice, external_url=url))
        if d.channel == EMAIL:
            return await self._mail(d)
        return AttemptResult(ok=False, permanent=True, error=f"unknown channel {d.channel!r}")

    async def _post(self, d: Claimed, body: object) -> AttemptResult:
        headers = {
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: str(d.delivery_id),
            "X-Northstar-Delivery": str(d.delivery_id),
            "X-Northstar-Attempt": str(d.attempt),
        }
        return await post_json(
            self._session,
            d.target,
            orjson.dumps(body),
            headers=headers,
            timeout_s=self._settings.http_timeout_seconds,
        )

    async def _mail(self, d: Claimed) -> AttemptResult:
        s = self._settings
        if not s.smtp_host:
            return AttemptResult(ok=False, permanent=True, error="no SMTP server configured")
        message = email_message(
            d.notice,
            sender=s.smtp_from,
            to=d.target,
            message_id=f"<delivery-{d.delivery_id}@{s.smtp_from.rpartition('@')[2]}>",
            external_url=s.alerts_external_url,
        )
        return await send_mail(message, s.smtp_server())
