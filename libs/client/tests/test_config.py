"""Per-service endpoints: defaults where `make run` serves them, environment, profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from northstar_client import ClientConfig
from northstar_client.cli import app
from northstar_client.config import ENDPOINTS
from northstar_harness.devstack import SERVICES

runner = CliRunner()


@pytest.mark.parametrize("service", ["ingest", "metrics", "experiments", "alerts", "reports"])
def test_endpoint_settings(service: str, tmp_path: Path) -> None:
    name = f"{service}_endpoint"
    # The default is where the devstack serves it: the base port plus its place in the stack.
    assert getattr(ClientConfig(), name) == f"127.0.0.1:{50051 + SERVICES.index(service)}"
    env = {f"NORTHSTAR_{service.upper()}_ENDPOINT": "svc.internal:7000", "NORTHSTAR_API_KEY": "k"}
    assert getattr(ClientConfig.from_env(env, cwd=tmp_path), name) == "svc.internal:7000"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[profiles.a]\n{name} = "svc.a:1"\n[profiles.gw]\nendpoint = "gw.example.com:443"\n'
    )
    a = ClientConfig.from_env({}, profile="a", config_file=config, cwd=tmp_path)
    others = {n: v for n, v in vars_of(a).items() if n != name}
    assert getattr(a, name) == "svc.a:1" and "svc.a:1" not in others.values()
    gw = ClientConfig.from_env({}, profile="gw", config_file=config, cwd=tmp_path)
    assert set(vars_of(gw).values()) == {"gw.example.com:443"}
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert f"--{service}-endpoint" in top.output


def vars_of(config: ClientConfig) -> dict[str, str]:
    """The endpoint settings of a config."""
    return {n: getattr(config, n) for n in ENDPOINTS}
