"""Where the suite is and how to reach it: arguments, environment, profiles, the demo key."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_ALERTS_ENDPOINT",
    "DEFAULT_EXPERIMENTS_ENDPOINT",
    "DEFAULT_INGEST_ENDPOINT",
    "DEFAULT_METRICS_ENDPOINT",
    "ENDPOINTS",
    "ClientConfig",
    "ConfigError",
    "RetryPolicy",
    "default_config_path",
]

DEFAULT_INGEST_ENDPOINT = "127.0.0.1:50051"
DEFAULT_METRICS_ENDPOINT = "127.0.0.1:50052"
DEFAULT_EXPERIMENTS_ENDPOINT = "127.0.0.1:50053"
DEFAULT_ALERTS_ENDPOINT = "127.0.0.1:50054"
DEFAULT_REPORTS_ENDPOINT = "127.0.0.1:50055"
# The per-service endpoint settings; `endpoint` (a gateway) sets every one.
ENDPOINTS = (
    "ingest_endpoint",
    "metrics_endpoint",
    "experiments_endpoint",
    "alerts_endpoint",
    "reports_endpoint",
)
DEMO_KEYS_PATH = Path(".northstar") / "demo-keys.json"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names it."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time.

    A RetryInfo delay sent by the server (RESOURCE_EXHAUSTED, UNAVAILABLE) is honoured as a
    minimum wait.
    """

    max_attempts: int = 6
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    total_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How to reach ingest, metrics, experiments, alerts and reports: endpoints, key, TLS,
    deadlines and retries."""

    ingest_endpoint: str = DEFAULT_INGEST_ENDPOINT
    metrics_endpoint: str = DEFAULT_METRICS_ENDPOINT
    experiments_endpoint: str = DEFAULT_EXPERIMENTS_ENDPOINT
    alerts_endpoint: str = DEFAULT_ALERTS_ENDPOINT
    reports_endpoint: str = DEFAULT_REPORTS_ENDPOINT
    api_key: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def with_overrides(self, **values: Any) -> ClientConfig:
        """A copy with the given fields replaced; None values are ignored."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def require_api_key(self) -> str:
        """The API key, or a ConfigError saying how to set one."""
        if not self.api_key:
            raise ConfigError(
                "no API key: pass --api-key, set NORTHSTAR_API_KEY, add api_key to a profile,"
                " or run `make run`, which writes .northstar/demo-keys.json"
            )
        return self.api_key

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        profile: str | None = None,
        config_file: Path | None = None,
        cwd: Path | None = None,
    ) -> ClientConfig:
        """Profile values (config file), overridden by environment variables.

        The key falls back to `.northstar/demo-keys.json` under `cwd` (written by
        `make run`), so a fresh checkout works without configuration.
        """
        env = os.environ if env is None else env
        profile = profile or env.get("NORTHSTAR_PROFILE") or None
        path = config_file or (
            Path(env["NORTHSTAR_CONFIG"]) if env.get("NORTHSTAR_CONFIG") else None
        )
        config = cls()
        values = _profile_values(path or default_config_path(env), profile, explicit=bool(path))
        config = _apply(config, values, source="profile")
        env_values = {
            "endpoint": env.get("NORTHSTAR_ENDPOINT"),
            "ingest_endpoint": env.get("NORTHSTAR_INGEST_ENDPOINT"),
            "metrics_endpoint": env.get("NORTHSTAR_METRICS_ENDPOINT"),
            "experiments_endpoint": env.get("NORTHSTAR_EXPERIMENTS_ENDPOINT"),
            "alerts_endpoint": env.get("NORTHSTAR_ALERTS_ENDPOINT"),
            "reports_endpoint": env.get("NORTHSTAR_REPORTS_ENDPOINT"),
            "api_key": env.get("NORTHSTAR_API_KEY"),
            "tls": env.get("NORTHSTAR_TLS"),
            "ca_file": env.get("NORTHSTAR_CA_FILE"),
            "timeout": env.get("NORTHSTAR_TIMEOUT"),
        }
        config = _apply(config, {k: v for k, v in env_values.items() if v}, source="environment")
        if not config.api_key:
            config = replace(config, api_key=_demo_key((cwd or Path.cwd()) / DEMO_KEYS_PATH))
        return config


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/northstar/config.toml` (default `~/.config/northstar/config.toml`)."""
    env = os.environ if env is None else env
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "northstar" / "config.toml"


def _profile_values(path: Path, profile: str | None, *, explicit: bool) -> dict[str, Any]:
    """The `[profiles.<name>]` table of a TOML file (`default` when no name is given)."""
    if not path.exists():
        if explicit or profile:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path}: {e}") from e
    profiles = data.get("profiles", {})
    name = profile or data.get("default_profile") or "default"
    if name not in profiles:
        if profile:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"profile {name!r} not in {path} (profiles: {known})")
        return {}
    values = profiles[name]
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: [profiles.{name}] must be a table")
    return values


def _apply(config: ClientConfig, values: Mapping[str, Any], *, source: str) -> ClientConfig:
    known = {
        "endpoint",
        "ingest_endpoint",
        "metrics_endpoint",
        "experiments_endpoint",
        "alerts_endpoint",
        "reports_endpoint",
        "api_key",
        "tls",
        "ca_file",
        "timeout",
    }
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    changes: dict[str, Any] = {}
    if values.get("endpoint"):
        for name in ENDPOINTS:
            changes[name] = str(values["endpoint"])
    for name in (*ENDPOINTS, "api_key"):
        if values.get(name):
            changes[name] = str(values[name])
    if "tls" in values:
        changes["tls"] = _boolean(values["tls"], f"{source}: tls")
    if values.get("ca_file"):
        changes["ca_file"] = Path(str(values["ca_file"])).expanduser()
        changes.setdefault("tls", True)
    if values.get("timeout"):
        try:
            changes["timeout"] = float(values["timeout"])
        except ValueError as e:
            raise ConfigError(
                f"{source}: timeout must be seconds, got {values['timeout']!r}"
            ) from e
        if changes["timeout"] <= 0:
            raise ConfigError(f"{source}: timeout must be positive")
    return replace(config, **changes)


def _boolean(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _demo_key(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    key = data.get("key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and key else None
