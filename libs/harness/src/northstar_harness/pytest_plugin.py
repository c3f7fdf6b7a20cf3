"""Pytest fixtures: real NATS and PostgreSQL (or NATS_URL / DATABASE_URL), test namespaces."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from northstar_harness.isolation import drop_namespace, new_namespace
from northstar_harness.servers import NatsServer, PostgresServer


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`NATS_URL` when set, else a JetStream server started for this session."""
    if url := os.environ.get("NATS_URL"):
        yield url
        return
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """`DATABASE_URL` when set, else a PostgreSQL started for this session."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    with _postgres() as server:
        yield server.dsn


@pytest.fixture
def namespace(nats_url: str, database_url: str) -> Iterator[str]:
    """A unique lower-case prefix; its streams and schemas are dropped after the test."""
    ns = new_namespace()
    yield ns
    _run_coroutine(drop_namespace(ns, nats_url=nats_url, database_url=database_url))


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server of the test's own, to stop, kill and restart."""
    with NatsServer(tmp_path / "private-nats") as server:
        yield server


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, to stop and restart."""
    with _postgres() as server:
        yield server


class _postgres:  # noqa: N801 - used like a context-manager function
    """A throw-away, non-durable PostgreSQL in a fresh directory under the temp dir."""

    def __enter__(self) -> PostgresServer:
        # Not pytest's tmp_path: that lives under a 0700 directory which the unprivileged
        # server user (when running as root) could not enter.
        self._dir = Path(tempfile.mkdtemp(prefix="northstar-pg-"))
        self._server = PostgresServer(self._dir, durable=False)
        try:
            return self._server.start()
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self._server.stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


def _run_coroutine(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to completion on a fresh loop in a worker thread.

    A fixture's teardown may run while a test's event loop is set (or even running), so
    cleanup gets a loop of its own.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    worker = threading.Thread(target=target, name="northstar-namespace-cleanup")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
