"""PostgreSQL: one schema per service, ordered migrations applied at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TypeAlias

import asyncpg
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from northstar_runtime.errors import Unavailable

log = structlog.get_logger("northstar.db")

# What a pool hands out and what a projection receives: either is a connection.
Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# The database cannot be reached right now (down, restarting, refusing connections).
UNREACHABLE_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    # A session the server ended mid-operation can leave asyncpg's protocol in a state its
    # release then trips on; the pool drops that connection, the next one works.
    # https://github.com/MagicStack/asyncpg/issues/784
    asyncpg.exceptions.InternalClientError,
)
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    *UNREACHABLE_DB_ERRORS,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    TimeoutError,
)


def unreachable(error: BaseException) -> Unavailable | None:
    """`UNAVAILABLE` for a request that met an unreachable database (the client retries,
    as it does when the log is down); None for any other error."""
    if isinstance(error, UNREACHABLE_DB_ERRORS):
        return Unavailable("the database is unreachable; retry shortly", reason="DB_UNAVAILABLE")
    return None


def quote_ident(name: str) -> str:
    """A schema or table name, checked against a strict pattern (never user input)."""
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


@dataclass(frozen=True, slots=True)
class Migration:
    """One ordered schema change."""

    version: int
    name: str
    sql: str


def load_migrations(package: str) -> list[Migration]:
    """Read `NNNN_name.sql` files from a package folder, in version order."""
    found: list[Migration] = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{package}: migrations must be numbered 1..n without gaps: {versions}")
    return found


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10, connect_timeout: float = 30.0
) -> asyncpg.Pool:
    """A pool whose connections resolve names in `schema` first; retried while PG starts."""
    quote_ident(schema)
    pool: asyncpg.Pool | None = None
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_DB_ERRORS),
        wait=wait_exponential_jitter(multiplier=0.1, max=2.0),
        stop=stop_after_delay(connect_timeout),
        reraise=True,
    ):
        with attempt:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                server_settings={
                    "search_path": f"{schema},public",
                    "timezone": "UTC",
                    # The read models make every query read few rows; compiling one with
                    # LLVM costs more than it runs. PostgreSQL compiles a plan whose
                    # estimate passes jit_above_cost, which a misestimate (a freshly
                    # loaded table) can make any query's: Activation's summary over
                    # 50k users' facts, compiled with inlining and optimisation, took
                    # 270-300 ms against 40-60 ms not compiled (PostgreSQL 15.20).
                    "jit": "off",
                },
                command_timeout=60,
            )
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, schema: str, migrations: list[Migration]) -> int:
    """Create the schema and apply pending migrations under a lock; returns how many ran."""
    ident = quote_ident(schema)
    applied = 0
    async with pool.acquire() as conn, conn.transaction():
        # One migrator at a time per schema, across replicas starting together.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ident}.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["version"]
            for r in await conn.fetch(f"SELECT version FROM {ident}.schema_migrations")  # noqa: S608 - quoted identifier
        }
        await conn.execute(f"SET LOCAL search_path TO {ident}, public")
        for m in migrations:
            if m.version in done:
                continue
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                m.version,
                m.name,
            )
            applied += 1
            log.info("migration applied", schema=schema, version=m.version, name=m.name)
    return applied
