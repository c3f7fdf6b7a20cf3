"""Real receivers for notification tests: an HTTP server (aiohttp) and an SMTP server
(aiosmtpd), both in the test's event loop on port 0, recording what they receive."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Request:
    """One request a receiver saw."""

    path: str
    headers: dict[str, str]
    body: Any

    @property
    def key(self) -> str:
        """Its idempotency key."""
        return self.headers["Idempotency-Key"]


@dataclass
class Route:
    """How a path answers: `fail` 500s first, each request delayed `delay` seconds
    (the first `slow_first` requests only, when set), then `status`."""

    status: int = 200
    fail: int = 0
    delay: float = 0.0
    slow_first: int | None = None
    seen: int = 0


@dataclass
class HttpReceiver:
    """An aiohttp server answering each path as its Route says."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    base: str = ""
    _runner: web.AppRunner | None = None

    def url(self, path: str, route: Route | None = None) -> str:
        """The URL of `path`, answering as `route` (200 by default)."""
        self.routes[path] = route or Route()
        return f"{self.base}{path}"

    def seen(self, path: str) -> list[Request]:
        """The requests `path` received."""
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        route = self.routes.get(request.path, Route(status=404))
        self.requests.append(Request(request.path, dict(request.headers), await request.json()))
        route.seen += 1
        if route.delay and (route.slow_first is None or route.seen <= route.slow_first):
            # Held until the delay ends or the receiver closes, whichever is first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), route.delay)
        if route.seen <= route.fail:
            return web.Response(status=500, text="try later")
        return web.Response(status=route.status, text="ok")

    async def start(self) -> None:
        """Listen on 127.0.0.1, port 0."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Close the server."""
        self.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """An aiosmtpd SMTP server in this event loop, keeping every message."""

    def __init__(self) -> None:
        self._mailbox = _Mailbox()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        """(recipients, message) of every message accepted."""
        return self._mailbox.messages

    async def start(self) -> None:
        """Listen on 127.0.0.1, port 0."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self._mailbox, hostname="mx.test"), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the server."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
