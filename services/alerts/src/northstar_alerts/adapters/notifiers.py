"""Sending one delivery: an HTTP POST (webhook, Slack) or an SMTP message (email).

Each send is bounded by its timeout and answers an `AttemptResult`; transport errors are
results (retried), never exceptions, so one bad target cannot break the dispatcher.
"""

from __future__ import annotations

import asyncio

import aiohttp
import aiosmtplib
import orjson

from northstar_alerts.adapters.delivery_store import Claimed
from northstar_alerts.domain.delivery import EMAIL, SLACK, WEBHOOK, AttemptResult
from northstar_alerts.domain.render import email_message, slack_body, webhook_body
from northstar_alerts.settings import AlertsSettings

USER_AGENT = "northstar-alerts"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_BODY_KEPT = 500  # bytes of an answer kept as the attempt's error


def _describe(e: BaseException) -> str:
    text = str(e)
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__)[:500]


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
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: str(d.delivery_id),
            "X-Northstar-Delivery": str(d.delivery_id),
            "X-Northstar-Attempt": str(d.attempt),
        }
        timeout = aiohttp.ClientTimeout(total=self._settings.http_timeout_seconds)
        try:
            # A redirect is not followed: a POST would turn into a GET on the way.
            async with self._session.post(
                d.target,
                data=orjson.dumps(body),
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                head = await response.content.read(_BODY_KEPT)
                return AttemptResult.from_http(response.status, head.decode(errors="replace"))
        except TimeoutError:
            limit = self._settings.http_timeout_seconds
            return AttemptResult(ok=False, error=f"TimeoutError: no answer within {limit:g}s")
        except (aiohttp.ClientError, OSError, ValueError) as e:
            return AttemptResult(ok=False, error=_describe(e))

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
        try:
            _, reply = await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                use_tls=s.smtp_security == "tls",
                start_tls=s.smtp_security == "starttls",
                username=s.smtp_username or None,
                password=s.smtp_password() or None,
                timeout=s.smtp_timeout_seconds,
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
            return AttemptResult(ok=False, error=_describe(e))
        # aiosmtplib answers the final reply's text; accepted data is always code 250.
        return AttemptResult(ok=True, smtp_reply=f"250 {reply}")
