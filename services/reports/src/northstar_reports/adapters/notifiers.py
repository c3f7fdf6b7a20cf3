"""Sending one report delivery: email (SMTP), Slack (incoming webhook) or a webhook.

Email is multipart/alternative: the plain-text part is render_email().text, the HTML part
render_email().html. Slack gets render_slack() as `text`. A webhook gets the Report in
proto3 JSON, with header `Idempotency-Key` = the delivery's id: a receiver that keeps the
keys it saw can drop the one repeat the delivery guarantee allows (docs/reports-delivery.md).
"""

from __future__ import annotations

from email.message import EmailMessage

import aiohttp
import orjson
from google.protobuf import json_format

from northstar_reports.adapters.delivery_store import Claimed
from northstar_reports.domain.render import render_email, render_slack
from northstar_reports.settings import ReportsSettings
from northstar_runtime.notify import IDEMPOTENCY_HEADER, AttemptResult, post_json, send_mail

USER_AGENT = "northstar-reports"


class Notifiers:
    """Sends a claimed delivery over its channel with the service's settings."""

    def __init__(self, settings: ReportsSettings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session

    async def send(self, d: Claimed) -> AttemptResult:
        """Send one attempt of `d`; how it ended."""
        if d.channel == "webhook":
            return await self._post(d, json_format.MessageToJson(d.report).encode())
        if d.channel == "slack":
            return await self._post(d, orjson.dumps({"text": render_slack(d.report)}))
        if d.channel == "email":
            return await self._mail(d)
        return AttemptResult(ok=False, permanent=True, error=f"unknown channel {d.channel!r}")

    async def _post(self, d: Claimed, body: bytes) -> AttemptResult:
        headers = {
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: d.delivery_id,
            "X-Northstar-Report": d.report_id,
            "X-Northstar-Attempt": str(d.attempt),
        }
        return await post_json(
            self._session,
            d.target,
            body,
            headers=headers,
            timeout_s=self._settings.http_timeout_seconds,
        )

    async def _mail(self, d: Claimed) -> AttemptResult:
        s = self._settings
        if not s.smtp_host:
            return AttemptResult(ok=False, permanent=True, error="no SMTP server configured")
        parts = render_email(d.report)
        message = EmailMessage()
        message["From"] = s.smtp_from
        message["To"] = d.target
        message["Subject"] = parts.subject
        # One Message-ID per delivery: a repeat after a crash is recognisable as such.
        message["Message-ID"] = f"<report-{d.delivery_id}@{s.smtp_from.rpartition('@')[2]}>"
        message.set_content(parts.text)
        message.add_alternative(parts.html, subtype="html")
        return await send_mail(message, s.smtp_server())
