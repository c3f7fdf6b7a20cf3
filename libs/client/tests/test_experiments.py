"""The experiments clients and `northstar experiments` against a running experiments service."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from typer.testing import CliRunner

from northstar.experiments.v1 import experiments_pb2 as xp
from northstar_client import (
    AsyncExperimentsClient,
    Event,
    ExperimentsClient,
    IngestClient,
    RpcError,
)
from northstar_client.cli import app
from northstar_client.render import as_json
from northstar_experiments.domain.assignment import assign

runner = CliRunner()


def definition(**changes: object) -> xp.ExperimentDefinition:
    d = xp.ExperimentDefinition(
        name="Checkout button",
        variants=[
            xp.Variant(key="control", name="Control", weight=0.5),
            xp.Variant(key="green", name="Green", weight=0.5),
        ],
        coverage=1.0,
        goal_metrics=[
            xp.Metric(name="purchase", kind=xp.METRIC_KIND_BINOMIAL, event="order.completed")
        ],
    )
    for name, value in changes.items():
        setattr(d, name, value)
    return d


def parse(output: str) -> dict:
    """The JSON answer in the output (the in-process services may log around it)."""
    start = output.index("{") if output.startswith("{") else output.index("\n{") + 1
    value, _ = json.JSONDecoder().raw_decode(output, start)
    return value


def cli(suite, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["experiments", *args], env=suite.env())
    assert result.exit_code == code, result.output
    return result.output


def _visible(client: ExperimentsClient, key: str, version: int) -> xp.Experiment:
    """The experiment once the read model has caught up with `version`."""
    try:
        found = client.get_experiment(key).experiment
    except RpcError as e:
        raise AssertionError(f"not projected yet: {e}") from e
    assert found.version >= version
    return found


def test_create_start_assign_and_results(suite, wait) -> None:
    with ExperimentsClient(suite.config()) as client:
        created = client.create_experiment(
            xp.CreateExperimentRequest(key="sdk-btn", definition=definition())
        ).experiment
        assert created.status == xp.EXPERIMENT_STATUS_DRAFT and created.version > 0
        with pytest.raises(RpcError) as taken:
            client.create_experiment(
                xp.CreateExperimentRequest(key="sdk-btn", definition=definition())
            )
        assert taken.value.code == grpc.StatusCode.ALREADY_EXISTS

        started = client.start_experiment(
            xp.StartExperimentRequest(key="sdk-btn", expected_version=created.version)
        ).experiment
        assert started.status == xp.EXPERIMENT_STATUS_RUNNING
        # A stale version fails at once, not retried: the change cannot apply twice.
        with pytest.raises(RpcError) as stale:
            client.stop_experiment(
                xp.StopExperimentRequest(key="sdk-btn", expected_version=created.version)
            )
        assert stale.value.code == grpc.StatusCode.ABORTED and stale.value.attempts == 1
        wait(lambda: _visible(client, "sdk-btn", started.version).status == started.status)

        # Deterministic: the same variant twice, as the GrowthBook hash says; the
        # exposure is logged once (same event id).
        first = client.assign("sdk-btn", "buyer-1", log_exposure=True).assignment
        again = client.assign("sdk-btn", "buyer-1", log_exposure=True).assignment
        index, n = assign("sdk-btn", "buyer-1", [0.5, 0.5], 1.0)
        assert first.in_experiment and (first.variant_index, first.hash_value) == (index, n)
        assert first.variant_key == ["control", "green"][index]
        assert (again.variant_key, again.exposure_event_id) == (
            first.variant_key,
            first.exposure_event_id,
        )
        assert first.exposure_event_id
        plain = client.assign("sdk-btn", "buyer-1").assignment
        assert plain.variant_key == first.variant_key and not plain.exposure_event_id

        batch = client.assign_batch(
            xp.AssignBatchRequest(
                queries=[
                    xp.AssignmentQuery(experiment_key="sdk-btn", user_id=f"b-{i}")
                    for i in range(20)
                ]
            )
        )
        assert [a.variant_index for a in batch.assignments] == [
            assign("sdk-btn", f"b-{i}", [0.5, 0.5], 1.0)[0] for i in range(20)
        ]

        with IngestClient(suite.config()) as ingest:
            ingest.track([Event("order.completed", user_id="buyer-1")])

        def analysed() -> xp.GetResultsResponse:
            r = client.get_results(xp.GetResultsRequest(experiment_key="sdk-btn"))
            assert sum(r.srm.users) == 1
            assert r.metrics[0].variants[index].sum == 1
            return r

        results = wait(analysed)
        data = json.loads(as_json(results))
        assert data["experiment_key"] == "sdk-btn"
        assert data["engine"] == "STATS_ENGINE_FREQUENTIST"
        assert data["srm"]["users"][index] == 1 and data["srm"]["weights"] == [0.5, 0.5]
        assert {"p_value", "mismatch"} <= data["srm"].keys()
        [purchase] = data["metrics"]
        assert purchase["metric"] == "purchase" and purchase["role"] == "METRIC_ROLE_GOAL"
        assert [v["variant_key"] for v in purchase["variants"]] == ["control", "green"]
        assert purchase["variants"][0]["control"] is True
        assert {"users", "mean", "lift", "ci_lower", "ci_upper", "p_value"} <= set(
            purchase["variants"][1]
        )
        assert data["decision"]["kind"] in {"DECISION_KIND_KEEP_RUNNING", "DECISION_KIND_SHIP"}
        assert data["log_position"] > 0

        bayes = client.get_results(
            xp.GetResultsRequest(experiment_key="sdk-btn", engine=xp.STATS_ENGINE_BAYESIAN)
        )
        assert bayes.engine == xp.STATS_ENGINE_BAYESIAN
        with pytest.raises(RpcError) as missing:
            client.assign("sdk-missing", "u")
        assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_async_client(suite, wait) -> None:
    config = suite.config()

    async def start() -> xp.Experiment:
        async with AsyncExperimentsClient(config) as client:
            created = (
                await client.create_experiment(
                    xp.CreateExperimentRequest(key="sdk-async", definition=definition())
                )
            ).experiment
            return (
                await client.start_experiment(
                    xp.StartExperimentRequest(key="sdk-async", expected_version=created.version)
                )
            ).experiment

    async def running() -> list[str]:
        async with AsyncExperimentsClient(config) as client:
            listed = await client.list_experiments(xp.EXPERIMENT_STATUS_RUNNING)
        keys = [e.key for e in listed.experiments]
        assert "sdk-async" in keys
        return keys

    async def assign_twice() -> tuple[xp.Assignment, xp.Assignment]:
        async with AsyncExperimentsClient(config) as client:
            first = await client.assign("sdk-async", "a-1", log_exposure=True, idempotency_key="k")
            second = await client.assign("sdk-async", "a-1", log_exposure=True, idempotency_key="k")
            return first.assignment, second.assignment

    assert asyncio.run(start()).status == xp.EXPERIMENT_STATUS_RUNNING
    wait(running)
    first, second = asyncio.run(assign_twice())
    assert first.in_experiment and first.variant_key == second.variant_key
    assert first.exposure_event_id == second.exposure_event_id != ""


def test_cli_lifecycle_tables_and_json(suite, wait) -> None:
    table = cli(
        suite,
        "create",
        "cli-btn",
        "--variant",
        "control:0.5",
        "--variant",
        "treatment:0.5:Treatment",
        "--hypothesis",
        "treatment converts better",
        "--goal",
        "purchase=order.completed",
        "--goal",
        "revenue=sum(amount)@order.completed:plan=pro",
        "--guardrail",
        "errors=app.error",
        "--lower-is-better",
        "errors",
        "--window",
        "7d",
    )
    assert "Experiment cli-btn" in table and "draft" in table
    assert "treatment" in table and "Metrics" in table and "lower is better" in table

    # `start` reads the version to state from the read model, waiting for it to catch up.
    started = parse(cli(suite, "start", "cli-btn", "--json"))["experiment"]
    assert started["status"] == "EXPERIMENT_STATUS_RUNNING"
    goals = started["definition"]["goal_metrics"]
    assert goals[1]["kind"] == "METRIC_KIND_CONTINUOUS" and goals[1]["property"] == "amount"
    assert goals[1]["filters"][0]["values"] == ["pro"]
    assert goals[0]["window_seconds"] == 7 * 86_400
    assert started["definition"]["guardrail_metrics"][0]["inverse"] is True

    def shown() -> dict:
        data = parse(cli(suite, "show", "cli-btn", "--json"))["experiment"]
        assert data["version"] == started["version"]
        return data

    shown_data = wait(shown)
    assert [h["type"] for h in shown_data["history"]] == ["ExperimentCreated", "ExperimentStarted"]
    assert "History" in cli(suite, "show", "cli-btn")

    listing = cli(suite, "list", "--status", "running")
    assert "Experiments" in listing and "cli-btn" in listing and "running" in listing
    keys = [e["key"] for e in parse(cli(suite, "list", "--json"))["experiments"]]
    assert "cli-btn" in keys

    index, n = assign("cli-btn", "cli-user", [0.5, 0.5], 1.0)
    variant = ["control", "treatment"][index]
    one = parse(cli(suite, "assign", "cli-btn", "cli-user", "--log-exposure", "--json"))
    two = parse(cli(suite, "assign", "cli-btn", "cli-user", "--log-exposure", "--json"))
    assert one["assignment"]["variant_key"] == two["assignment"]["variant_key"] == variant
    assert one["assignment"]["hash_value"] == pytest.approx(n)
    assert one["assignment"]["exposure_event_id"] == two["assignment"]["exposure_event_id"]
    line = cli(suite, "assign", "cli-btn", "cli-user")
    assert f"cli-user → {variant}" in line

    def counted() -> dict:
        data = parse(cli(suite, "results", "cli-btn", "--json"))
        assert sum(data["srm"]["users"]) == 1
        return data

    results = wait(counted)
    assert [m["metric"] for m in results["metrics"]] == ["purchase", "revenue", "errors"]
    assert results["metrics"][2]["role"] == "METRIC_ROLE_GUARDRAIL"
    assert "decision" in results and results["engine"] == "STATS_ENGINE_FREQUENTIST"
    report = cli(suite, "results", "cli-btn", "--cuped", "--sequential")
    assert "Results of cli-btn" in report and "sample ratio" in report
    assert "purchase (goal)" in report and "errors (guardrail)" in report
    assert "Decision:" in report and "p-value" in report
    bayes = cli(suite, "results", "cli-btn", "--bayesian")
    assert "chance to win" in bayes
    bayes_json = parse(cli(suite, "results", "cli-btn", "--bayesian", "--json"))
    assert bayes_json["engine"] == "STATS_ENGINE_BAYESIAN"
    assert "frequentist" in cli(suite, "results", "cli-btn", "--bayesian", "--sequential", code=2)

    stopped = cli(suite, "stop", "cli-btn")
    assert "stopped" in stopped
    concluded = parse(
        cli(suite, "conclude", "cli-btn", "--winner", "treatment", "--reason", "won", "--json")
    )["experiment"]
    assert concluded["status"] == "EXPERIMENT_STATUS_CONCLUDED"
    assert (concluded["winner"], concluded["conclusion_reason"]) == ("treatment", "won")
    # A stated stale version is refused, not applied.
    stale = cli(suite, "archive", "cli-btn", "--expected-version", str(started["version"]), code=1)
    assert "ABORTED" in stale


def test_cli_errors(suite) -> None:
    bad = cli(suite, "create", "cli-bad", "--variant", "a:half", "--variant", "b:0.5", code=2)
    assert "KEY:WEIGHT" in bad
    invalid = cli(suite, "create", "cli-bad", "--variant", "a:0.7", "--variant", "b:0.5", code=1)
    assert "INVALID_ARGUMENT" in invalid
    assert "NOT_FOUND" in cli(suite, "show", "cli-nope", code=1)
    assert "NOT_FOUND" in cli(suite, "assign", "cli-nope", "u-1", code=1)


def test_every_experiments_command_has_help_with_examples() -> None:
    for command in ("list", "show", "create", "start", "stop", "conclude", "archive"):
        result = runner.invoke(app, ["experiments", command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "Examples" in result.output, command
    for command in ("assign", "results"):
        result = runner.invoke(app, ["experiments", command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "Examples" in result.output, command
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "experiments" in top.output and "--experiments-endpoint" in top.output
