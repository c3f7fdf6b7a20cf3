"""Every overlay renders and validates; the policy check catches what it must."""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def rendered(k8s_validate: ModuleType) -> dict[str, list[dict[str, Any]]]:
    report = k8s_validate.Report()
    result: dict[str, list[dict[str, Any]]] = k8s_validate.validate_manifests(report)
    assert report.problems == []
    return result


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def test_every_overlay_renders_and_validates(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert set(rendered) == {"base", "dev", "prod"}


def test_dev_runs_one_of_everything(rendered: dict[str, list[dict[str, Any]]]) -> None:
    dev = rendered["dev"]
    assert _one(dev, "StatefulSet", "nats")["spec"]["replicas"] == 1
    assert _one(dev, "StatefulSet", "postgresql")["spec"]["replicas"] == 1
    assert _one(dev, "Deployment", "ingest")["spec"]["replicas"] == 1
    assert _one(dev, "Deployment", "metrics")["spec"]["replicas"] == 1
    assert _one(dev, "Deployment", "experiments")["spec"]["replicas"] == 1
    assert all(o["metadata"].get("namespace", "northstar-dev") == "northstar-dev" for o in dev)


def test_prod_is_replicated_and_references_its_secrets(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    prod = rendered["prod"]
    assert not [o for o in prod if o["kind"] == "Secret"]
    nats = _one(prod, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert _one(prod, "ConfigMap", "ingest")["data"]["NORTHSTAR_STREAM_REPLICAS"] == "3"
    assert _one(prod, "ConfigMap", "metrics")["data"]["NORTHSTAR_STREAM_REPLICAS"] == "3"
    assert _one(prod, "Cluster", "northstar-pg")["spec"]["instances"] == 3
    ranges = {}
    for name in ("metrics-p0-7", "metrics-p8-15"):
        deployment = _one(prod, "Deployment", name)
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        ranges[name] = env["PROJECTOR_PARTITIONS"]["value"]
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "northstar-pg-app",
            "key": "uri",
        }
        assert _one(prod, "HorizontalPodAutoscaler", name)["spec"]["scaleTargetRef"]["name"] == name
    assert ranges == {"metrics-p0-7": "0-7", "metrics-p8-15": "8-15"}
    assert not [o for o in prod if o["kind"] == "Deployment" and o["metadata"]["name"] == "metrics"]
    experiments = _one(prod, "Deployment", "experiments")
    assert experiments["spec"]["replicas"] == 3
    pod = experiments["spec"]["template"]["spec"]
    assert [c["args"] for c in pod["initContainers"]] == [["migrate"]]
    for container in (*pod["initContainers"], *pod["containers"]):
        env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "northstar-pg-app"
    assert _one(prod, "ConfigMap", "experiments")["data"]["NORTHSTAR_STREAM_REPLICAS"] == "3"
    kinds = {o["kind"] for o in prod}
    assert {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget"} <= kinds


def test_policy_flags_a_deployment_without_probes_limits_or_security(
    k8s_validate: ModuleType, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    objects = copy.deepcopy(rendered["dev"])
    ingest = _one(objects, "Deployment", "ingest")
    container = ingest["spec"]["template"]["spec"]["containers"][0]
    del container["readinessProbe"]
    del container["resources"]["limits"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["securityContext"]["capabilities"]["drop"] = []
    ingest["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = 1
    report = k8s_validate.Report()
    k8s_validate.check_policy("dev", objects, report)
    problems = "\n".join(report.problems)
    assert "readinessProbe missing" in problems
    assert "resources.limits.cpu missing" in problems
    assert "resources.limits.memory missing" in problems
    assert "readOnlyRootFilesystem must be true" in problems
    assert "capabilities.drop must contain ALL" in problems
    assert "maxUnavailable: 0" in problems


def test_policy_flags_overlapping_partition_ranges(
    k8s_validate: ModuleType, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    deployment = _one(objects, "Deployment", "metrics-p8-15")
    for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if env["name"] == "PROJECTOR_PARTITIONS":
            env["value"] = "6-15"
    report = k8s_validate.Report()
    k8s_validate.check_policy("prod", objects, report)
    assert any("exactly once" in p for p in report.problems)


def test_schemas_reject_misspelt_fields(
    k8s_validate: ModuleType, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    prod = copy.deepcopy(rendered["prod"])
    cluster = _one(prod, "Cluster", "northstar-pg")
    cluster["spec"]["instance"] = 3  # not `instances`
    ingest = _one(prod, "Deployment", "ingest")
    ingest["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    report = k8s_validate.Report()
    k8s_validate.validate_schemas("prod", [cluster, ingest], report)
    assert len(report.problems) == 2
    assert "'instance' was unexpected" in report.problems[0]
    assert "readinesProbe" in report.problems[1]


def test_alert_rules_and_dashboard_are_checked(
    k8s_validate: ModuleType, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    report = k8s_validate.Report()
    k8s_validate.check_dashboards(report)
    assert report.problems == []
    rules = copy.deepcopy(_one(rendered["prod"], "PrometheusRule", "northstar"))
    alerts = [r for g in rules["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} >= {
        "NorthstarIngestDown",
        "NorthstarIngestUnavailable",
        "NorthstarRpcErrorRateHigh",
        "NorthstarProjectorLagging",
        "NorthstarDeadLettersGrowing",
    }
    alerts[0]["expr"] = "sum(rate(northstar_rpc_requests_total[5m]"
    alerts[1]["expr"] = "northstar_no_such_series > 0"
    alerts[2]["labels"] = {}
    k8s_validate.check_rules("prod", [rules], report)
    problems = "\n".join(report.problems)
    assert "PromQL does not parse" in problems
    assert "northstar_no_such_series is not a series the services export" in problems
    assert "labels.severity" in problems
