"""`northstar-dev up`: the whole suite on one machine: NATS, PostgreSQL and the services."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from northstar_harness.servers import NatsServer, PostgresServer, ServerError, port_is_free

__all__ = ["SERVICES", "DemoKey", "main"]

SERVICES = ("ingest", "metrics", "experiments", "alerts", "reports")
DEMO_TENANT = "demo"
DEMO_SCOPES = ("ingest", "read", "admin")
STOP_GRACE_SECONDS = 15.0


class DevStackError(RuntimeError):
    """The stack could not come up; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class DemoKey:
    """The demo tenant's API key, kept in the state dir across runs."""

    tenant: str
    scopes: tuple[str, ...]
    key: str

    @property
    def inline(self) -> str:
        """The `tenant:scope+scope:key` form of NORTHSTAR_API_KEYS."""
        return f"{self.tenant}:{'+'.join(self.scopes)}:{self.key}"


@dataclass(slots=True)
class _Service:
    name: str
    address: str
    metrics_address: str
    log_path: Path
    process: asyncio.subprocess.Process

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def load_demo_key(state_dir: Path) -> DemoKey:
    """Read `<state-dir>/demo-keys.json`, creating it with a fresh key on first use."""
    path = state_dir / "demo-keys.json"
    if path.exists():
        data = json.loads(path.read_text())
        return DemoKey(data["tenant"], tuple(data["scopes"]), data["key"])
    demo = DemoKey(DEMO_TENANT, DEMO_SCOPES, "nsk_demo_" + secrets.token_hex(16))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"tenant": demo.tenant, "scopes": list(demo.scopes), "key": demo.key}, f)
    return demo


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="northstar-dev", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start NATS, PostgreSQL and every installed service")
    up.add_argument("--state-dir", type=Path, default=Path(".northstar"))
    up.add_argument("--base-port", type=int, default=50051, help="gRPC port of the first service")
    up.add_argument("--metrics-base-port", type=int, default=9464)
    up.add_argument("--nats-port", type=int, default=4222, help="used when free; 0: any port")
    up.add_argument("--postgres-port", type=int, default=5432, help="used when free; 0: any port")
    up.add_argument(
        "--services",
        default=",".join(SERVICES),
        help="comma-separated subset of services to run (default: all installed)",
    )
    up.add_argument("--ready-timeout", type=float, default=60.0, help="seconds per service")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `northstar-dev`."""
    args = _parse(argv)
    # Stopping PostgreSQL forks pg_ctl while gRPC's threads run; gRPC logs each such fork
    # at INFO. Errors still show.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        code = asyncio.run(_up(args))
    except (DevStackError, ServerError) as e:
        sys.stderr.write(f"northstar-dev: {e}\n")
        code = 1
    sys.exit(code)


async def _up(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    state_dir: Path = args.state_dir.absolute()
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    demo = load_demo_key(state_dir)
    wanted = [s.strip() for s in args.services.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SERVICES))
    if unknown:
        raise DevStackError(f"unknown services {unknown}; known: {', '.join(SERVICES)}")

    with contextlib.ExitStack() as servers:
        nats_url = os.environ.get("NATS_URL")
        if not nats_url:
            port = args.nats_port if args.nats_port and port_is_free(args.nats_port) else 0
            nats = servers.enter_context(NatsServer(state_dir / "nats", port=port))
            nats_url = nats.url
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            pg_port = args.postgres_port
            port = pg_port if pg_port and port_is_free(pg_port) else 0
            pg = servers.enter_context(PostgresServer(state_dir / "postgres", port=port))
            database_url = pg.dsn
        if stop.is_set():
            return 0

        services: list[_Service] = []
        skipped: list[str] = []
        # Alerts and reports read every tenant's numbers from the others with a key of their own.
        service_key = secrets.token_urlsafe(24)
        api_keys = f"{demo.inline},northstar:service:{service_key}"
        try:
            for i, name in enumerate(SERVICES):
                if name not in wanted or stop.is_set():
                    continue
                if importlib.util.find_spec(f"northstar_{name}") is None:
                    skipped.append(name)
                    continue
                env = {
                    **os.environ,
                    "GRPC_ADDRESS": f"127.0.0.1:{args.base_port + i}",
                    "METRICS_ADDRESS": f"127.0.0.1:{args.metrics_base_port + i}",
                    "NATS_URL": nats_url,
                    "DATABASE_URL": database_url,
                    "NORTHSTAR_API_KEYS": api_keys,
                }
                if name == "alerts":
                    metrics_port = args.base_port + SERVICES.index("metrics")
                    env["METRICS_SERVICE_ADDRESS"] = f"127.0.0.1:{metrics_port}"
                    env["METRICS_SERVICE_API_KEY"] = service_key
                if name == "reports":
                    # Its sections come from metrics, experiments and alerts.
                    for upstream in ("metrics", "experiments", "alerts"):
                        port = args.base_port + SERVICES.index(upstream)
                        env[f"{upstream.upper()}_SERVICE_ADDRESS"] = f"127.0.0.1:{port}"
                    env["UPSTREAM_API_KEY"] = service_key
                env.setdefault("LOG_FORMAT", "console")
                services.append(await _spawn(name, env, logs / f"{name}.log"))

            ready = asyncio.ensure_future(_all_serving(services, args.ready_timeout))
            stopping = asyncio.ensure_future(_stopped(stop))
            await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not ready.done():
                ready.cancel()
                await asyncio.gather(ready, return_exceptions=True)
                _say("northstar-dev: interrupted while starting; stopping")
                return 0
            ready.result()  # raises DevStackError naming the service that failed

            _summary(
                services,
                skipped=skipped,
                nats_url=nats_url,
                database_url=database_url,
                demo=demo,
                state_dir=state_dir,
            )
            return await _run_until_stopped(services, stop)
        finally:
            await _terminate(services)


async def _spawn(name: str, env: dict[str, str], log_path: Path) -> _Service:
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"northstar_{name}",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            # Its own session: Ctrl-C reaches only us, and we stop the services in order.
            start_new_session=True,
        )
    return _Service(name, env["GRPC_ADDRESS"], env["METRICS_ADDRESS"], log_path, process)


async def _stopped(stop: asyncio.Event) -> None:
    await stop.wait()


async def _all_serving(services: list[_Service], within: float) -> None:
    await asyncio.gather(*(_until_serving(s, within) for s in services))


async def _until_serving(service: _Service, within: float) -> None:
    """Wait until the service's health check says SERVING, or fail naming it."""
    watch = asyncio.ensure_future(_health_watch(service.address))
    exited = asyncio.ensure_future(service.process.wait())
    try:
        done, _ = await asyncio.wait(
            {watch, exited}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watch.cancel()
        exited.cancel()
        await asyncio.gather(watch, exited, return_exceptions=True)
    if watch in done and watch.exception() is None:
        return
    if exited in done and not exited.cancelled():
        why = f"exited with code {exited.result()} before it was ready"
    elif watch in done and watch.exception() is not None:
        why = f"health check failed: {watch.exception()}"
    else:
        why = f"not SERVING on {service.address} after {within:g}s"
    raise DevStackError(
        f"service {service.name} {why}; last lines of {service.log_path}:\n{service.log_tail()}"
    )


async def _health_watch(address: str) -> None:
    """Return once `grpc.health.v1` reports SERVING for the whole server (service "")."""
    # Imported here, after main() has set GRPC_VERBOSITY, which gRPC reads as it loads.
    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    request = health_pb2.HealthCheckRequest(service="")
    serving = health_pb2.HealthCheckResponse.SERVING
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            # Watch streams every status change; wait_for_ready rides out the connect.
            async for reply in stub.Watch(request, wait_for_ready=True):
                if reply.status == serving:
                    return
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            reply = await stub.Check(request, wait_for_ready=True)
            if reply.status == serving:
                return
        raise DevStackError(f"health check on {address} ended without SERVING")


async def _run_until_stopped(services: list[_Service], stop: asyncio.Event) -> int:
    """Wait for Ctrl-C / SIGTERM (exit 0) or a service dying on its own (exit 1)."""
    stopping = asyncio.ensure_future(stop.wait())
    exits = {asyncio.ensure_future(s.process.wait()): s for s in services}
    done, _ = await asyncio.wait({stopping, *exits}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stopping, *exits):
        task.cancel()
    await asyncio.gather(stopping, *exits, return_exceptions=True)
    if stopping in done:
        _say("\nnorthstar-dev: stopping")
        return 0
    for task in done:
        dead = exits[task]
        _say(
            f"northstar-dev: service {dead.name} exited with code {dead.process.returncode};"
            f" last lines of {dead.log_path}:\n{dead.log_tail()}"
        )
    return 1


async def _terminate(services: list[_Service]) -> None:
    """SIGTERM every service, wait for their graceful shutdown, kill stragglers."""
    running = [s for s in services if s.process.returncode is None]
    for s in running:
        with contextlib.suppress(ProcessLookupError):
            s.process.terminate()

    async def reap(s: _Service) -> None:
        try:
            await asyncio.wait_for(s.process.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            _say(f"northstar-dev: {s.name} ignored SIGTERM for {STOP_GRACE_SECONDS:g}s; killing")
            with contextlib.suppress(ProcessLookupError):
                s.process.kill()
            await s.process.wait()

    await asyncio.gather(*(reap(s) for s in running))


def _summary(
    services: list[_Service],
    *,
    skipped: list[str],
    nats_url: str,
    database_url: str,
    demo: DemoKey,
    state_dir: Path,
) -> None:
    lines = [
        "",
        "Northstar is up.",
        "",
        f"  NATS        {nats_url}",
        f"  PostgreSQL  {database_url}",
    ]
    for s in services:
        lines.append(
            f"  {s.name:<11} grpc {s.address}   metrics http://{s.metrics_address}/metrics"
        )
    if skipped:
        lines.append(f"  not installed (skipped): {', '.join(skipped)}")
    if not services:
        lines.append("  no services started")
    lines += [
        "",
        f"  demo API key (tenant {demo.tenant}, scopes {'+'.join(demo.scopes)}): {demo.key}",
        f"  kept in {state_dir / 'demo-keys.json'}; service logs in {state_dir / 'logs'}/",
    ]
    ingest = next((s for s in services if s.name == "ingest"), None)
    if ingest is not None:
        body = '{"events": [{"event": "signup", "user_id": "u1"}]}'
        method = "northstar.ingest.v1.IngestService/Track"
        lines += [
            "",
            "  Try it:",
            f"    grpcurl -plaintext -H 'authorization: Bearer {demo.key}' \\",
            f"      -d '{body}' {ingest.address} {method}",
            "  or:",
            "    buf curl --protocol grpc --http2-prior-knowledge \\",
            f"      -H 'authorization: Bearer {demo.key}' \\",
            f"      -d '{body}' http://{ingest.address}/{method}",
        ]
    lines += ["", "Ctrl-C stops everything.", ""]
    _say("\n".join(lines))


if __name__ == "__main__":
    main()
