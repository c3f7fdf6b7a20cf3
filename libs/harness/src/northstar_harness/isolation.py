"""Per-test namespaces: unique prefixes for streams and schemas, dropped afterwards."""

from __future__ import annotations

import asyncio
import json
import secrets

import asyncpg
import nats

__all__ = ["drop_namespace", "new_namespace", "stream_prefixes"]

_TIMEOUT = 10.0  # seconds, per server round trip


def new_namespace() -> str:
    """A fresh namespace: `t` and 10 hex digits (a NATS token and a PG identifier prefix)."""
    return "t" + secrets.token_hex(5)


def stream_prefixes(namespace: str) -> tuple[str, ...]:
    """Names of JetStream streams that belong to `namespace` start with one of these."""
    upper = namespace.upper() + "_"
    # KV buckets and object stores live in streams named KV_<bucket> / OBJ_<bucket>.
    return (upper, f"KV_{upper}", f"KV_{namespace}_", f"OBJ_{upper}", f"OBJ_{namespace}_")


async def drop_namespace(namespace: str, *, nats_url: str | None, database_url: str | None) -> None:
    """Delete the namespace's JetStream streams and drop its PostgreSQL schemas (CASCADE)."""
    # A hard bound on top of the per-call timeouts: cleanup never hangs a test run.
    async with asyncio.timeout(6 * _TIMEOUT):
        if nats_url:
            await _drop_streams(namespace, nats_url)
        if database_url:
            await _drop_schemas(namespace, database_url)


async def _drop_streams(namespace: str, url: str) -> None:
    nc = await nats.connect(
        url, connect_timeout=_TIMEOUT, allow_reconnect=False, max_reconnect_attempts=1
    )
    try:
        names: list[str] = []
        offset, total = 0, 1
        while offset < total:
            reply = await nc.request(
                "$JS.API.STREAM.NAMES", json.dumps({"offset": offset}).encode(), timeout=_TIMEOUT
            )
            page = json.loads(reply.data)
            if "error" in page:
                raise RuntimeError(f"listing streams: {page['error']}")
            batch = page.get("streams") or []
            names += batch
            total = int(page.get("total", 0))
            offset += len(batch)
            if not batch:
                break
        js = nc.jsm(timeout=_TIMEOUT)
        for name in names:
            if name.startswith(stream_prefixes(namespace)):
                await js.delete_stream(name)
    finally:
        await nc.close()


async def _drop_schemas(namespace: str, dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=_TIMEOUT)
    try:
        # PostgreSQL quotes the identifiers itself (format %I).
        statements = await conn.fetch(
            "SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', nspname) FROM pg_namespace"
            " WHERE starts_with(nspname, $1)",
            namespace + "_",
            timeout=_TIMEOUT,
        )
        for (statement,) in statements:
            await conn.execute(statement, timeout=_TIMEOUT)
    finally:
        await conn.close(timeout=_TIMEOUT)
