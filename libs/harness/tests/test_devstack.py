"""northstar-dev up: servers, services, health, summary and a clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from northstar_harness.devstack import load_demo_key
from northstar_harness.servers import PostgresServer, free_port

READY_LINE = "Ctrl-C stops everything."

FAKE_SERVICE = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    import grpc
    from grpc_health import v1 as _
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    async def main():
        if os.environ.get("FAKE_EXIT"):
            print("fake service refuses to start", flush=True)
            sys.exit(int(os.environ["FAKE_EXIT"]))
        with open(os.environ["FAKE_ENV_OUT"], "w") as f:
            json.dump({**dict(os.environ), "PID": os.getpid()}, f)
        server = grpc.aio.server()
        status = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(status, server)
        server.add_insecure_port(os.environ["GRPC_ADDRESS"])
        await server.start()
        await status.set("", health_pb2.HealthCheckResponse.SERVING)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await status.enter_graceful_shutdown()
        await server.stop(1)
        print("fake service stopped", flush=True)

    asyncio.run(main())
    """
)


@dataclass
class Stack:
    process: asyncio.subprocess.Process
    output: list[str]
    state_dir: Path
    base_port: int


@pytest.fixture
def fake_path(tmp_path: Path) -> Path:
    """A PYTHONPATH entry whose `northstar_ingest` is a tiny gRPC server with health."""
    package = tmp_path / "fake" / "northstar_ingest"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_SERVICE)
    return package.parent


async def _start(
    tmp_path: Path, services: str, extra_env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, Path, int]:
    state_dir = tmp_path / "state"
    base_port = free_port()
    args = ["up", "--state-dir", str(state_dir), "--services", services]
    args += ["--base-port", str(base_port), "--metrics-base-port", str(free_port())]
    args += ["--nats-port", "0", "--postgres-port", "0", "--ready-timeout", "30"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "northstar_harness.devstack",
        *args,
        env={**os.environ, **extra_env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return process, state_dir, base_port


async def _read_until(process: asyncio.subprocess.Process, marker: str) -> list[str]:
    """Lines of output up to and including `marker` (or to EOF)."""
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(90):
        async for raw in process.stdout:
            lines.append(raw.decode().rstrip("\n"))
            if lines[-1] == marker:
                break
    return lines


@pytest.fixture
async def stack_runner(tmp_path: Path) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Collects dev stacks a test starts; kills any still running at the end."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 60)


async def _health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        return int(reply.status)


async def _stop(
    process: asyncio.subprocess.Process, sig: signal.Signals = signal.SIGTERM
) -> tuple[int, str]:
    process.send_signal(sig)
    assert process.stdout is not None
    async with asyncio.timeout(60):
        rest = await process.stdout.read()
        code = await process.wait()
    return code, rest.decode()


def _assert_own_servers_stopped(state_dir: Path) -> None:
    if "DATABASE_URL" not in os.environ:
        assert (state_dir / "postgres" / "PG_VERSION").exists()
        assert not (state_dir / "postgres" / "postmaster.pid").exists()
        assert not PostgresServer(state_dir / "postgres").running


async def test_up_with_no_services_starts_and_stops_on_ctrl_c(
    tmp_path: Path, stack_runner: list[asyncio.subprocess.Process]
) -> None:
    process, state_dir, _ = await _start(tmp_path, "", {})
    stack_runner.append(process)

    output = await _read_until(process, READY_LINE)

    assert "Northstar is up." in output, output
    assert "  no services started" in output
    demo = load_demo_key(state_dir)
    assert any(demo.key in line for line in output)
    code, rest = await _stop(process, signal.SIGINT)
    assert code == 0, rest
    assert "northstar-dev: stopping" in rest
    _assert_own_servers_stopped(state_dir)


async def test_up_runs_a_service_until_sigterm(
    tmp_path: Path, fake_path: Path, stack_runner: list[asyncio.subprocess.Process]
) -> None:
    env_out = tmp_path / "service-env.json"
    env = {"PYTHONPATH": str(fake_path), "FAKE_ENV_OUT": str(env_out)}
    process, state_dir, base_port = await _start(tmp_path, "ingest", env)
    stack_runner.append(process)

    output = "\n".join(await _read_until(process, READY_LINE))

    address = f"127.0.0.1:{base_port}"
    assert f"ingest      grpc {address}" in output, output
    assert "IngestService/Track" in output
    demo = load_demo_key(state_dir)
    assert f"-H 'authorization: Bearer {demo.key}'" in output
    assert await _health(address) == health_pb2.HealthCheckResponse.SERVING
    seen = json.loads(env_out.read_text())
    assert seen["GRPC_ADDRESS"] == address
    demo_key, service_key = seen["NORTHSTAR_API_KEYS"].split(",")
    assert demo_key == f"demo:ingest+read+admin:{demo.key}"
    # The key alerts reads metrics with: every service knows it, only alerts holds it.
    assert service_key.startswith("northstar:service:")
    assert "METRICS_SERVICE_API_KEY" not in seen
    assert seen["LOG_FORMAT"] == "console"
    assert seen["NATS_URL"].startswith("nats://127.0.0.1:")
    assert seen["DATABASE_URL"].startswith("postgresql://postgres@127.0.0.1:")
    if "NATS_URL" in os.environ:
        assert seen["NATS_URL"] == os.environ["NATS_URL"]

    code, rest = await _stop(process)

    assert code == 0, rest
    with pytest.raises(ProcessLookupError):
        os.kill(seen["PID"], 0)
    assert "fake service stopped" in (state_dir / "logs" / "ingest.log").read_text()
    _assert_own_servers_stopped(state_dir)


async def test_a_service_that_dies_at_start_is_named_with_its_log(
    tmp_path: Path, fake_path: Path, stack_runner: list[asyncio.subprocess.Process]
) -> None:
    env = {"PYTHONPATH": str(fake_path), "FAKE_EXIT": "3"}
    process, state_dir, _ = await _start(tmp_path, "ingest", env)
    stack_runner.append(process)

    async with asyncio.timeout(90):
        assert process.stdout is not None
        output = (await process.stdout.read()).decode()
        code = await process.wait()

    assert code == 1
    assert "service ingest exited with code 3 before it was ready" in output
    assert "fake service refuses to start" in output
    _assert_own_servers_stopped(state_dir)


def test_demo_key_is_created_once_and_kept(tmp_path: Path) -> None:
    first = load_demo_key(tmp_path)
    again = load_demo_key(tmp_path)
    assert again == first
    assert first.inline == f"demo:ingest+read+admin:{first.key}"
    assert (tmp_path / "demo-keys.json").stat().st_mode & 0o777 == 0o600
