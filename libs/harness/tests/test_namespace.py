"""The namespace fixture: unique names, and nothing left behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import textwrap
from pathlib import Path

import asyncpg
import nats
from nats.js.errors import NotFoundError

from northstar_harness.isolation import drop_namespace, new_namespace


def test_namespace_is_a_fresh_lowercase_token(namespace: str) -> None:
    assert re.fullmatch(r"t[0-9a-f]{10}", namespace)
    assert namespace != new_namespace()


async def _create_resources(ns: str, nats_url: str, database_url: str) -> None:
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        await js.add_stream(name=f"{ns.upper()}_EVENTS", subjects=[f"{ns}.events.>"])
        await js.add_stream(name=f"{ns.upper()}X_OTHER", subjects=[f"{ns}x.other.>"])
    finally:
        await nc.close()
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        await conn.execute(f'CREATE SCHEMA "{ns}_metrics"')
        await conn.execute(f'CREATE TABLE "{ns}_metrics".counts (n int)')
        await conn.execute(f'CREATE SCHEMA "{ns}x_other"')
    finally:
        await conn.close()


async def _streams(nats_url: str, *names: str) -> set[str]:
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    found = set()
    try:
        jsm = nc.jsm()
        for name in names:
            try:
                await jsm.stream_info(name)
                found.add(name)
            except NotFoundError:
                pass
    finally:
        await nc.close()
    return found


async def _schemas(database_url: str, prefix: str) -> set[str]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix
        )
    finally:
        await conn.close()
    return {r["nspname"] for r in rows}


async def test_drop_namespace_removes_only_its_streams_and_schemas(
    nats_url: str, database_url: str
) -> None:
    ns = new_namespace()
    streams = (f"{ns.upper()}_EVENTS", f"{ns.upper()}X_OTHER")
    await _create_resources(ns, nats_url, database_url)
    try:
        await drop_namespace(ns, nats_url=nats_url, database_url=database_url)

        assert await _streams(nats_url, *streams) == {f"{ns.upper()}X_OTHER"}
        assert await _schemas(database_url, ns) == {f"{ns}x_other"}
    finally:
        await drop_namespace(ns + "x", nats_url=nats_url, database_url=database_url)
    assert await _streams(nats_url, *streams) == set()
    assert await _schemas(database_url, ns) == set()


INNER_TEST = textwrap.dedent(
    """
    import asyncio, json, os, nats, asyncpg

    async def create(ns):
        nc = await nats.connect(os.environ["NATS_URL"], allow_reconnect=False)
        await nc.jetstream().add_stream(name=ns.upper() + "_LOG", subjects=[ns + ".log"])
        await nc.close()
        conn = await asyncpg.connect(os.environ["DATABASE_URL"])
        await conn.execute('CREATE SCHEMA "' + ns + '_read"')
        await conn.close()

    def test_leaves_things_behind(namespace):
        asyncio.run(create(namespace))
        with open(os.environ["NAMESPACE_OUT"], "w") as f:
            json.dump(namespace, f)
    """
)


async def test_fixture_teardown_drops_what_a_test_created(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    out = tmp_path / "namespace.json"
    env = {**os.environ, "NATS_URL": nats_url, "DATABASE_URL": database_url}
    env["NAMESPACE_OUT"] = str(out)
    inner = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(120):
        output, _ = await inner.communicate()
    assert inner.returncode == 0, output.decode()
    ns = json.loads(out.read_text())

    assert await _streams(nats_url, f"{ns.upper()}_LOG") == set()
    assert await _schemas(database_url, ns) == set()
