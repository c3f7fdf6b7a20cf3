"""The alerts clients and `northstar alerts` against a running alerts service."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from northstar_client import ClientConfig
from northstar_client.cli import app
from northstar_harness.devstack import SERVICES

runner = CliRunner()


def test_alerts_endpoint_settings(tmp_path: Path) -> None:
    # The default is where `make run` serves alerts: base port + its place in the stack.
    assert ClientConfig().alerts_endpoint == f"127.0.0.1:{50051 + SERVICES.index('alerts')}"
    env = {"NORTHSTAR_ALERTS_ENDPOINT": "alerts.internal:7000", "NORTHSTAR_API_KEY": "k"}
    assert ClientConfig.from_env(env, cwd=tmp_path).alerts_endpoint == "alerts.internal:7000"
    config = tmp_path / "config.toml"
    config.write_text(
        '[profiles.a]\nalerts_endpoint = "alerts.a:1"\n'
        '[profiles.gw]\nendpoint = "gw.example.com:443"\n'
    )
    a = ClientConfig.from_env({}, profile="a", config_file=config, cwd=tmp_path)
    assert a.alerts_endpoint == "alerts.a:1" and a.experiments_endpoint == "127.0.0.1:50053"
    gw = ClientConfig.from_env({}, profile="gw", config_file=config, cwd=tmp_path)
    assert gw.alerts_endpoint == gw.metrics_endpoint == "gw.example.com:443"
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--alerts-endpoint" in top.output
