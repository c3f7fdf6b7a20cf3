"""Services of the suite as real processes, to kill, pause and start again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from northstar_harness.eventually import assert_eventually
from northstar_harness.servers import free_port

from .conftest import API_KEYS, SERVICE_KEY


def process_env(port: int, nats_url: str, database_url: str, namespace: str) -> dict[str, str]:
    """The environment of a service process of this suite, serving on `port`."""
    return {
        **os.environ,
        "GRPC_ADDRESS": f"127.0.0.1:{port}",
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "NORTHSTAR_NAMESPACE": namespace,
        "NORTHSTAR_API_KEYS": API_KEYS,
        "NORTHSTAR_PARTITIONS": "4",
        "LOG_LEVEL": "WARNING",
    }


class ServiceProcess:
    """`python -m <module>` (a service) as a real process, to kill.

    With `log`, the process's stderr (its structured log) is appended to that file, so a
    failing fault test can show what the service said.
    """

    def __init__(
        self, env: dict[str, str], module: str = "northstar_metrics", log: Path | None = None
    ) -> None:
        self.env = env
        self.module = module
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def _spawn(
        self, *args: str, stdout: int = asyncio.subprocess.DEVNULL
    ) -> asyncio.subprocess.Process:
        stderr = self.log.open("ab") if self.log is not None else asyncio.subprocess.DEVNULL
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, *args, env=self.env, stdout=stdout, stderr=stderr
            )
        finally:
            if not isinstance(stderr, int):
                stderr.close()

    async def run(self, *args: str) -> int:
        """Run a one-off command of the service (`rebuild`, `migrate`) to its end."""
        proc = await self._spawn(*args)
        return await asyncio.wait_for(proc.wait(), timeout=60)

    async def output(self, *args: str) -> str:
        """Run a one-off command of the service and return what it printed."""
        proc = await self._spawn(*args, stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, (self.module, args, proc.returncode)
        return out.decode()

    async def start(self) -> None:
        """Start serving (returns at once; the service answers once it is up)."""
        self.proc = await self._spawn()

    async def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections and does nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def terminate(self) -> int:
        """SIGTERM and wait for the graceful drain; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout=30)

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.proc is not None and self.proc.returncode is None


def upstream_env(ports: dict[str, int]) -> dict[str, str]:
    """What the alerts and reports processes need to call the services they read."""
    metrics = f"127.0.0.1:{ports['metrics']}"
    return {
        "METRICS_SERVICE_ADDRESS": metrics,
        "METRICS_SERVICE_API_KEY": SERVICE_KEY,
        "EXPERIMENTS_SERVICE_ADDRESS": f"127.0.0.1:{ports['experiments']}",
        "ALERTS_SERVICE_ADDRESS": f"127.0.0.1:{ports['alerts']}",
        "UPSTREAM_API_KEY": SERVICE_KEY,
    }


async def serving(channel: grpc.aio.Channel, name: str, timeout: float = 60) -> None:
    """Wait until the service behind `channel` says SERVING to its health check."""
    health = health_pb2_grpc.HealthStub(channel)

    async def up() -> bool:
        try:
            r = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.aio.AioRpcError as e:
            raise AssertionError(f"{name}: {e.code()}") from e
        return r.status == health_pb2.HealthCheckResponse.SERVING

    await assert_eventually(up, timeout=timeout, interval=0.1)


MODULES = {
    "ingest": "northstar_ingest",
    "metrics": "northstar_metrics",
    "experiments": "northstar_experiments",
    "alerts": "northstar_alerts",
    "reports": "northstar_reports",
}


class ReportsStack:
    """Ingest, metrics, experiments, alerts and reports replicas as processes.

    Every process gets the upstream addresses and the service key, plus `env`; each name in
    `reports` is a reports replica (`python -m northstar_reports`).
    """

    def __init__(
        self,
        nats_url: str,
        database_url: str,
        namespace: str,
        logs: Path,
        *,
        reports: tuple[str, ...] = ("reports-a", "reports-b"),
        env: dict[str, str] | None = None,
    ) -> None:
        modules = {name: MODULES[name] for name in ("ingest", "metrics", "experiments", "alerts")}
        modules.update({name: MODULES["reports"] for name in reports})
        self.ports = {name: free_port() for name in modules}
        shared = {**upstream_env(self.ports), "SHUTDOWN_GRACE_SECONDS": "1", **(env or {})}
        self.processes = {
            name: ServiceProcess(
                {**process_env(self.ports[name], nats_url, database_url, namespace), **shared},
                module=module,
                log=logs / f"{name}.log",
            )
            for name, module in modules.items()
        }
        self.channels = {
            name: grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            for name, port in self.ports.items()
        }

    async def start(self, *names: str) -> None:
        """Start these processes (every one by default) and wait until each is SERVING."""
        chosen = names or tuple(self.processes)
        for name in chosen:
            await self.processes[name].start()
        for name in chosen:
            await serving(self.channels[name], name)

    async def stop(self) -> None:
        """Close the channels; SIGTERM whatever still runs (SIGCONT first if paused)."""
        for channel in self.channels.values():
            await channel.close()
        for process in self.processes.values():
            if process.running:
                process.resume()
                await process.terminate()
