"""Services of the suite as real processes, to kill, pause and start again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from .conftest import API_KEYS


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
