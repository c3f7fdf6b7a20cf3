"""Where the time goes: py-spy sampling of a service process, and a summary of it.

py-spy attaches from outside (`--nonblocking`: it never pauses the process), so the
services run unchanged. When it cannot attach (some sandboxes forbid ptrace), the bench
starts the service under `python -m bench.profiled` (cProfile) instead.
"""

from __future__ import annotations

import collections
import pstats
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Frames every stack shares (the event loop, the entry point): left out of "inclusive".
_BOILERPLATE = ("asyncio/", "<frozen", "__main__.py", "threading.py", "runners.py")
TOP = 15


def pyspy_binary() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


class PySpy:
    """`py-spy record` of one process for `seconds`, written as collapsed stacks."""

    def __init__(
        self, pid: int, seconds: float, output: Path, rate: int = 100, *, native: bool = False
    ) -> None:
        self.pid = pid
        self.seconds = seconds
        self.output = output
        self.rate = rate
        self.error = ""
        binary = pyspy_binary()
        self._proc: subprocess.Popen[str] | None = None
        if binary is None:
            self.error = "py-spy not installed"
            return
        args = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
        # --native (C frames: gRPC's core, syscalls) needs to pause the process per sample.
        args += ["--rate", str(rate), "--format", "raw"]
        args += ["--native"] if native else ["--nonblocking"]
        self.native = native
        args += ["--output", str(output)]
        self._proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait(self) -> None:
        if self._proc is None:
            return
        try:
            out, _ = self._proc.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, _ = self._proc.communicate()
        if self._proc.returncode != 0 or not self.output.exists():
            self.error = f"py-spy exited {self._proc.returncode}: {out.strip()[-500:]}"

    @property
    def ok(self) -> bool:
        return not self.error and self.output.exists() and self.output.stat().st_size > 0


def _short(path: str) -> str:
    """A readable module path: after site-packages, `src/`, or the stdlib dir."""
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _package(path: str) -> str:
    """The package (or stdlib module) a frame's file belongs to; northstar code by module."""
    short = _short(path)
    parts = short.split("/")
    if parts[0].startswith("northstar_"):
        return "/".join([*parts[:-1], parts[-1].removesuffix(".py")])
    if parts[0] in ("grpc", "google", "nats", "asyncpg", "opentelemetry", "structlog"):
        return "/".join(parts[:2]) if parts[0] in ("google", "grpc") else parts[0]
    if "lib/python3.11" in path and "site-packages" not in path:
        return "stdlib " + parts[0].removesuffix(".py")
    return parts[0].removesuffix(".py")


def summarize_raw(path: Path, seconds: float, rate: int) -> dict[str, Any]:
    """Top lines by own samples, top functions by inclusive samples, own samples by package.

    Without native frames, time in C (protobuf's upb, orjson, regexes) counts as the
    own time of the Python line that called it.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        # The first frame is the thread ("process 123:\"python ...\"" or a thread name).
        names = []
        for f in frames:
            m = _FRAME.match(f)
            if m:
                names.append((m["func"], m["file"], m["line"]))
        if not names:
            continue
        total += count
        leaf_func, leaf_file, leaf_line = names[-1]
        own[f"{leaf_func} ({_short(leaf_file)}:{leaf_line})"] += count
        packages[_package(leaf_file)] += count
        seen = set()
        for func, file, _ in names:
            if any(b in file for b in _BOILERPLATE):
                continue
            # Native frames without symbols (gRPC's Cython core) count per library.
            key = (
                f"[native code of {_short(file)}]"
                if func.startswith("0x")
                else (f"{func} ({_short(file)})")
            )
            if key not in seen:
                seen.add(key)
                inclusive[key] += count
    possible = seconds * rate

    def top(counter: collections.Counter[str]) -> list[tuple[str, int, float]]:
        return [(k, v, round(100 * v / total, 1)) for k, v in counter.most_common(TOP)]

    return {
        "tool": "py-spy record (collapsed stacks, idle excluded)",
        "seconds": seconds,
        "rate_hz": rate,
        "samples": total,
        "busy_fraction": round(total / possible, 3) if possible else None,
        "own": top(own) if total else [],
        "inclusive": top(inclusive) if total else [],
        "packages": top(packages) if total else [],
    }


def summarize_cprofile(path: Path) -> dict[str, Any]:
    """The cProfile fallback: top functions by own time and by cumulative time."""
    stats = pstats.Stats(str(path))
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((f"{func} ({_short(file)}:{line})", nc, tt, ct, _package(file)))
    total = sum(r[2] for r in rows) or 1.0
    by_package: collections.Counter[str] = collections.Counter()
    for r in rows:
        by_package[r[4]] += r[2]
    own = sorted(rows, key=lambda r: r[2], reverse=True)[:TOP]
    cumulative = sorted(rows, key=lambda r: r[3], reverse=True)[:TOP]
    return {
        "tool": "cProfile (fallback; deterministic, slows the process)",
        "samples": None,
        "own": [(r[0], round(r[2], 3), round(100 * r[2] / total, 1)) for r in own],
        "inclusive": [(r[0], round(r[3], 3), round(100 * r[3] / total, 1)) for r in cumulative],
        "packages": [
            (k, round(v, 3), round(100 * v / total, 1)) for k, v in by_package.most_common(TOP)
        ],
    }
