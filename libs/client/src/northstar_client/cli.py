"""`northstar`: track and import events, load a demo, query every metric, run experiments,
manage alerts and read reports."""

# Typer reads a command's options from its parameters, so commands take many of them.
# ruff: noqa: PLR0917

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import grpc
import typer
import yaml
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from northstar.alerts.v1 import alerts_pb2 as al
from northstar.experiments.v1 import experiments_pb2 as xp
from northstar.ingest.v1 import ingest_pb2
from northstar.metrics.v1 import (
    activation_pb2,
    filters_pb2,
    funnel_pb2,
    kpis_pb2,
    metrics_pb2,
    quality_pb2,
    retention_pb2,
    revenue_pb2,
    series_pb2,
    trend_pb2,
)
from northstar.reports.v1 import reports_pb2 as rp
from northstar_client.clients import (
    AlertsClient,
    ExperimentsClient,
    IngestClient,
    MetricsClient,
    ReportsClient,
)
from northstar_client.config import ENDPOINTS, ClientConfig, ConfigError
from northstar_client.demo import DemoShape, generate_demo, load_demo
from northstar_client.errors import NorthstarClientError, RpcError
from northstar_client.events import Event
from northstar_client.importer import FileFormat, ImportSummary, run_import
from northstar_client.render import as_json, print_answer, print_plain
from northstar_client.retry import backoff_delay

__all__ = ["app"]

app = typer.Typer(
    name="northstar",
    help=(
        "Northstar from the command line: send events, import files, load a demo data set,"
        " query every metric, run experiments, manage alerts and read reports.\n\n"
        "Examples:\n\n"
        "  northstar demo\n\n"
        "  northstar kpis\n\n"
        "  northstar --profile prod active-users --from 2026-10-01 --to 2026-10-31 --json"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
kpi_config_app = typer.Typer(help="Show or change the KPI targets, weights and thresholds.")
app.add_typer(kpi_config_app, name="kpi-config")
experiments_app = typer.Typer(
    help=(
        "Define, start, stop and conclude experiments; assign users; read the results.\n\n"
        "Examples:\n\n"
        "  northstar experiments create checkout-button --variant control:0.5"
        " --variant green:0.5 --goal order.completed\n\n"
        "  northstar experiments start checkout-button\n\n"
        "  northstar experiments assign checkout-button u-1 --log-exposure\n\n"
        "  northstar experiments results checkout-button --json"
    ),
    no_args_is_help=True,
)
app.add_typer(experiments_app, name="experiments")

out = Console(soft_wrap=False)
err = Console(stderr=True)


@dataclass
class _State:
    config: ClientConfig


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: 29 days ago).")
]
ToOpt = Annotated[
    str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (default: today, UTC).")
]


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


@app.callback()
def main(
    ctx: typer.Context,
    endpoint: Annotated[
        str | None,
        typer.Option(help="HOST:PORT serving every service (a gateway). [env: NORTHSTAR_ENDPOINT]"),
    ] = None,
    ingest_endpoint: Annotated[
        str | None,
        typer.Option(
            help="Ingest HOST:PORT (default 127.0.0.1:50051). [env: NORTHSTAR_INGEST_ENDPOINT]"
        ),
    ] = None,
    metrics_endpoint: Annotated[
        str | None,
        typer.Option(
            help="Metrics HOST:PORT (default 127.0.0.1:50052). [env: NORTHSTAR_METRICS_ENDPOINT]"
        ),
    ] = None,
    experiments_endpoint: Annotated[
        str | None,
        typer.Option(
            help="Experiments HOST:PORT (default 127.0.0.1:50053)."
            " [env: NORTHSTAR_EXPERIMENTS_ENDPOINT]"
        ),
    ] = None,
    alerts_endpoint: Annotated[
        str | None,
        typer.Option(
            help="Alerts HOST:PORT (default 127.0.0.1:50054). [env: NORTHSTAR_ALERTS_ENDPOINT]"
        ),
    ] = None,
    reports_endpoint: Annotated[
        str | None,
        typer.Option(
            help="Reports HOST:PORT (default 127.0.0.1:50055). [env: NORTHSTAR_REPORTS_ENDPOINT]"
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="API key (default: the profile's, else .northstar/demo-keys.json)."
            " [env: NORTHSTAR_API_KEY]",
            show_default=False,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Profile of the config file to use. [env: NORTHSTAR_PROFILE]"),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (default ~/.config/northstar/config.toml). [env: NORTHSTAR_CONFIG]",
        ),
    ] = None,
    tls: Annotated[
        bool | None, typer.Option("--tls/--plaintext", help="Use TLS. [env: NORTHSTAR_TLS]")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA bundle for TLS. [env: NORTHSTAR_CA_FILE]")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Deadline of each call, seconds (default 10).")
    ] = None,
) -> None:
    """Northstar from the command line.

    Settings come from the options, else environment variables, else a profile of the
    config file, e.g.

        [profiles.default]
        endpoint = "northstar.example.com:443"
        tls = true
        api_key = "..."

    Examples:

        northstar demo
        northstar kpis
        northstar --profile prod active-users --from 2026-10-01 --to 2026-10-31 --json
    """
    try:
        config = ClientConfig.from_env(profile=profile, config_file=config_file)
        if endpoint:
            config = config.with_overrides(**dict.fromkeys(ENDPOINTS, endpoint))
        config = config.with_overrides(
            ingest_endpoint=ingest_endpoint,
            metrics_endpoint=metrics_endpoint,
            experiments_endpoint=experiments_endpoint,
            alerts_endpoint=alerts_endpoint,
            reports_endpoint=reports_endpoint,
            api_key=api_key,
            tls=tls if tls is not None else (True if ca_file else None),
            ca_file=ca_file,
            timeout=timeout,
        )
    except ConfigError as e:
        _fail(str(e), 2)
    ctx.obj = _State(config)


def _config(ctx: typer.Context) -> ClientConfig:
    state: _State = ctx.obj
    return state.config


def _range(from_date: str | None, to_date: str | None, days: int = 30) -> tuple[str, str]:
    today = datetime.now(UTC).date()
    end = _day(to_date, "--to") if to_date else today
    start = _day(from_date, "--from") if from_date else end - timedelta(days=days - 1)
    if start > end:
        _fail(f"--from {start} is after --to {end}", 2)
    return start.isoformat(), end.isoformat()


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        _fail(f"{option} must be a day as YYYY-MM-DD, got {text!r}", 2)


C = TypeVar("C", ExperimentsClient, AlertsClient, ReportsClient)
R = TypeVar("R")
M = TypeVar("M", bound=Message)


def _with_client(
    ctx: typer.Context, client_type: Callable[[ClientConfig], C], call: Callable[[C], R]
) -> R:
    """Call a service through a client; a failed call is one line with its status, exit 1."""
    try:
        with client_type(_config(ctx)) as client:
            return call(client)
    except (RpcError, ConfigError) as e:
        _fail(str(e))


def _query(ctx: typer.Context, method: str, request: Message | None, json_output: bool) -> None:
    """Call one metrics RPC and print its answer."""
    try:
        with MetricsClient(_config(ctx)) as client:
            rpc = getattr(client, method)
            answer = rpc(request) if request is not None else rpc()
    except (RpcError, ConfigError) as e:
        _fail(str(e))
    print_answer(out, answer, json_output=json_output)


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: list[str] | None, option: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"{option} takes KEY=VALUE, got {item!r}", 2)
        values[key] = _json_value(value)
    return values


def _filters(items: list[str] | None) -> list[filters_pb2.PropertyFilter]:
    """`prop=value`, `prop!=value`, `prop>n`, `prop>=n`, `prop<n`, `prop<=n`, `prop=a|b` (in)."""
    result = []
    operators = (
        ("!=", filters_pb2.FILTER_OPERATOR_NOT_EQUALS),
        (">=", filters_pb2.FILTER_OPERATOR_GREATER_THAN_OR_EQUAL),
        ("<=", filters_pb2.FILTER_OPERATOR_LESS_THAN_OR_EQUAL),
        ("=", filters_pb2.FILTER_OPERATOR_EQUALS),
        (">", filters_pb2.FILTER_OPERATOR_GREATER_THAN),
        ("<", filters_pb2.FILTER_OPERATOR_LESS_THAN),
    )
    for item in items or []:
        parsed = _filter_parts(item, operators)
        if parsed is None:
            _fail(f"cannot read the filter {item!r}; e.g. status=success or mrr>=1000", 2)
        prop, op, value = parsed
        raw = (
            value.split("|")
            if op == filters_pb2.FILTER_OPERATOR_EQUALS and "|" in value
            else [value]
        )
        if len(raw) > 1:
            op = filters_pb2.FILTER_OPERATOR_IN
        values = []
        for v in raw:
            pv = struct_pb2.Value()
            pv.MergeFrom(_to_value(_json_value(v)))
            values.append(pv)
        result.append(filters_pb2.PropertyFilter(property=prop, operator=op, values=values))
    return result


def _filter_parts(
    item: str, operators: tuple[tuple[str, filters_pb2.FilterOperator.ValueType], ...]
) -> tuple[str, filters_pb2.FilterOperator.ValueType, str] | None:
    for token, op in operators:
        prop, sep, value = item.partition(token)
        if sep and prop:
            return prop, op, value
    return None


def _to_value(value: Any) -> struct_pb2.Value:
    holder = struct_pb2.Struct()
    holder.update({"v": value})
    return holder.fields["v"]


# ---------------------------------------------------------------------------- ingest


@app.command()
def track(
    ctx: typer.Context,
    event: Annotated[str, typer.Argument(help="Event name, e.g. user.signup.")],
    user: Annotated[str, typer.Option("--user", "-u", help="The acting user_id.")] = "",
    org: Annotated[str, typer.Option("--org", "-o", help="The user's org_id.")] = "",
    session: Annotated[str, typer.Option(help="The session_id.")] = "",
    prop: Annotated[
        list[str] | None,
        typer.Option(
            "--prop", "-p", help="A property KEY=VALUE (JSON values: 42, true); repeatable."
        ),
    ] = None,
    properties: Annotated[
        str | None, typer.Option(help="Properties as a JSON object (merged with --prop).")
    ] = None,
    timestamp: Annotated[
        str | None, typer.Option(help="When it happened, ISO 8601 (default: now).")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option(help="Idempotency key (default: a new UUIDv7).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Send one event and print its outcome.

    Examples:

        northstar track user.signup -u u-1 -o acme -p plan=free -p channel=seo
        northstar track workflow.run -u u-1 -p status=success -p workflow_id=w-1
        northstar track subscription.started -o acme --properties '{"plan": "pro", "mrr": 9900}'
    """
    props: dict[str, Any] = {}
    if properties:
        loaded = _json_value(properties)
        if not isinstance(loaded, dict):
            _fail("--properties must be a JSON object", 2)
        props.update(loaded)
    props.update(_pairs(prop, "--prop"))
    when = None
    if timestamp:
        try:
            when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            _fail(f"--timestamp must be ISO 8601, got {timestamp!r}", 2)
    built = Event(
        event, user_id=user, org_id=org, session_id=session, properties=props, timestamp=when
    )
    if event_id:
        built = Event(event, user, org, session, when, props, event_id)
    try:
        with IngestClient(_config(ctx)) as client:
            response = client.track([built])
    except (RpcError, ConfigError) as e:
        _fail(str(e))
    if json_output:
        print_plain(out, as_json(response))
    else:
        result = response.results[0]
        status = ingest_pb2.EventStatus.Name(result.status).removeprefix("EVENT_STATUS_")
        style = {"ACCEPTED": "green", "DUPLICATE": "yellow"}.get(status, "red")
        out.print(Text.assemble((status, f"bold {style}"), f"  {result.event_id}"))
        if result.status == ingest_pb2.EVENT_STATUS_REJECTED:
            rej = result.rejection
            out.print(f"  {rej.field}: {rej.rule}: {rej.description}", highlight=False)
    if response.rejected:
        raise typer.Exit(1)


@app.command("erase-user")
def erase_user(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user_id to erase, as events carry it.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Erase a user (GDPR, PIPEDA): needs an admin key; cannot be undone.

    Once the services have applied it, no answer holds the user's events, properties or
    id, and every number is as if its events had never been accepted. Events of the user
    sent later with a timestamp before the erasure are dropped; later ones count anew.

    Examples:

        northstar erase-user u-1
        northstar erase-user u-1 --yes --json
    """
    if not yes and not typer.confirm(
        f"Erase user {user_id!r} and everything derived from its events?", err=True
    ):
        _fail("not erased", 1)
    try:
        with IngestClient(_config(ctx)) as client:
            response = client.erase_user(user_id)
    except (RpcError, ConfigError) as e:
        _fail(str(e))
    if json_output:
        print_plain(out, as_json(response))
        return
    at = response.erased_at.ToDatetime(UTC).isoformat(timespec="seconds")
    out.print(
        Text.assemble(
            ("ERASED", "bold green"),
            f"  {user_id}  erasure {response.erasure_id} at log position"
            f" {response.log_position} ({at})",
        )
    )


class Format(StrEnum):
    """Input formats of `import`."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


class _Rate(ProgressColumn):
    """Events per second, measured over the recent past."""

    def render(self, task: Task) -> Text:
        speed = task.fields.get("events_per_s")
        return Text(f"{speed:,.0f} events/s" if speed else "– events/s", style="cyan")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A .jsonl, .csv or .parquet file.", exists=True)],
    format_: Annotated[
        Format | None, typer.Option("--format", help="Input format (default: from the name).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Events per request (1-1000).")] = 500,
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 4,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint file (default FILE.checkpoint.json).")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Rejected records, JSON Lines (default FILE.rejects.jsonl).")
    ] = None,
    historical: Annotated[
        bool, typer.Option(help="Backfill older than 400 days (needs an admin key).")
    ] = False,
    restart: Annotated[bool, typer.Option(help="Ignore the checkpoint and start over.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Import events from JSON Lines, CSV or Parquet; resumable after an interruption.

    Each record has `event` and optionally `event_id`, `user_id`, `org_id`, `session_id`,
    `timestamp` (ISO 8601 or epoch seconds) or `timestamp_us`, and `properties` (an
    object; in CSV, JSON text). Other columns become properties. A record without
    `event_id` gets one derived from the file and the record number, so running the same
    import again answers DUPLICATE instead of counting twice. Progress is checkpointed
    after every answered batch: run the same command again to resume.

    Examples:

        northstar import events.jsonl
        northstar import export.csv --batch-size 1000 --concurrency 8
        northstar import events.parquet --rejects bad.jsonl --json
    """
    fmt: FileFormat | None = format_.value if format_ else None
    config = _config(ctx)
    show_progress = not json_output and err.is_terminal
    try:
        from northstar_client.importer import count_records, detect_format  # noqa: PLC0415

        total = count_records(file, fmt or detect_format(file))
    except NorthstarClientError as e:
        _fail(str(e))
    progress = Progress(
        TextColumn("[bold]importing"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not show_progress,
    )
    task = progress.add_task("import", total=total)
    window: list[tuple[float, int]] = []

    def advance(records: int, events: int) -> None:
        now = asyncio.get_running_loop().time()
        window.append((now, events))
        while window and now - window[0][0] > 5.0:
            window.pop(0)
        span = now - window[0][0] if len(window) > 1 else 0.0
        rate = sum(n for _, n in window[1:]) / span if span > 0 else 0.0
        progress.update(task, advance=records, events_per_s=rate)

    try:
        with progress:
            summary = asyncio.run(
                run_import(
                    file,
                    config=config,
                    fmt=fmt,
                    batch_size=batch_size,
                    concurrency=concurrency,
                    checkpoint_path=checkpoint,
                    rejects_path=rejects,
                    historical_import=historical,
                    restart=restart,
                    on_progress=advance,
                )
            )
    except (NorthstarClientError, ConfigError) as e:
        _fail(str(e))
    _print_import(summary, json_output)


def _print_import(summary: ImportSummary, json_output: bool) -> None:
    if json_output:
        data = {
            "source": summary.source,
            "records": summary.records,
            "accepted": summary.accepted,
            "duplicate": summary.duplicate,
            "rejected": summary.rejected,
            "rejection_reasons": summary.reasons,
            "resumed_from": summary.resumed_from,
            "elapsed_seconds": round(summary.elapsed_seconds, 3),
            "rejects_file": str(summary.rejects_path) if summary.rejects_path else None,
            "checkpoint_file": str(summary.checkpoint_path),
        }
        print_plain(out, json.dumps(data, indent=2))
        return
    table = Table(title=f"Imported {Path(summary.source).name}", show_header=False)
    table.add_column("outcome")
    table.add_column("records", justify="right")
    table.add_row("records", f"{summary.records:,}")
    table.add_row(Text("accepted", style="green"), f"{summary.accepted:,}")
    table.add_row(Text("duplicate", style="yellow"), f"{summary.duplicate:,}")
    table.add_row(Text("rejected", style="red"), f"{summary.rejected:,}")
    for reason, n in sorted(summary.reasons.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {reason}", f"{n:,}")
    out.print(table)
    if summary.resumed_from:
        out.print(f"resumed after record {summary.resumed_from:,}", highlight=False)
    if summary.rejects_path:
        out.print(f"rejected records written to {summary.rejects_path}", highlight=False)


@app.command()
def demo(
    ctx: typer.Context,
    users: Annotated[int, typer.Option(help="Users signing up over the period.")] = 1_500,
    days: Annotated[int, typer.Option(help="Days of history, ending today.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same data.")] = 7,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for metrics to show the data.")
    ] = 60.0,
) -> None:
    """Load a realistic generated data set (~20k events, 60 days) into a running suite.

    Signups with plans and channels, integrations, workflows created and run, page views,
    subscriptions with upgrades and cancellations, marketing spend, and a launch-day spike.
    Running it again the same day answers DUPLICATE and changes nothing.

    Examples:

        northstar demo
        northstar --api-key $KEY --endpoint northstar.example.com:443 --tls demo --users 300
    """
    config = _config(ctx)
    shape = DemoShape(now=datetime.now(UTC), users=users, days=days, seed=seed)
    total = len(generate_demo(shape))
    progress = Progress(
        TextColumn("[bold]loading demo"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    task = progress.add_task("demo", total=total)
    try:
        with progress:
            result = asyncio.run(
                load_demo(
                    config,
                    shape,
                    wait_seconds=wait,
                    on_progress=lambda n: progress.update(task, advance=n),
                )
            )
    except (NorthstarClientError, ConfigError) as e:
        _fail(str(e))
    out.print(
        f"[bold green]demo loaded[/]: {result.events:,} events"
        f" ({result.accepted:,} accepted, {result.duplicate:,} duplicate,"
        f" {result.rejected:,} rejected), {result.first_day} … {result.last_day}",
        highlight=False,
    )
    if not result.visible:
        out.print(f"[yellow]metrics had not caught up after {wait:g}s; queries may lag[/]")
    out.print(
        "\nTry:\n"
        "  northstar kpis\n"
        "  northstar active-users\n"
        "  northstar funnel user.signup integration.connected 'workflow.run:status=success'"
        " --breakdown channel\n"
        f"  northstar retention --granularity week --from {result.first_day} --periods 6\n"
        "  northstar trend page.view --breakdown page\n"
        "  northstar revenue\n"
        "  northstar anomalies --series signups\n"
        "  northstar forecast --series dau\n"
        "  northstar data-quality",
        highlight=False,
    )


# ---------------------------------------------------------------------------- metrics


@app.command("active-users")
def active_users(
    ctx: typer.Context,
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """DAU, WAU, MAU, stickiness and MAO per day.

    Examples:

        northstar active-users
        northstar active-users --from 2026-10-01 --to 2026-10-31 --json
    """
    start, end = _range(from_date, to_date)
    _query(
        ctx,
        "active_users",
        metrics_pb2.ActiveUsersRequest(from_date=start, to_date=end),
        json_output,
    )


class Granularity(StrEnum):
    """Cohort or period lengths."""

    day = "day"
    week = "week"
    month = "month"


class Mode(StrEnum):
    """What counts as retained."""

    on_day = "on-day"
    on_or_after = "on-or-after"


def _segment(segment: str | None) -> retention_pb2.CohortSegment | None:
    if not segment:
        return None
    attribute, sep, value = segment.partition("=")
    attributes = {
        "plan": retention_pb2.COHORT_ATTRIBUTE_PLAN,
        "channel": retention_pb2.COHORT_ATTRIBUTE_CHANNEL,
    }
    if not sep or attribute not in attributes:
        _fail("--segment takes plan=VALUE or channel=VALUE", 2)
    return retention_pb2.CohortSegment(attribute=attributes[attribute], value=value)


_COHORT = {
    Granularity.day: retention_pb2.COHORT_GRANULARITY_DAY,
    Granularity.week: retention_pb2.COHORT_GRANULARITY_WEEK,
    Granularity.month: retention_pb2.COHORT_GRANULARITY_MONTH,
}
_MODE = {
    Mode.on_day: retention_pb2.RETENTION_MODE_ON_DAY,
    Mode.on_or_after: retention_pb2.RETENTION_MODE_ON_OR_AFTER,
}
SegmentOpt = Annotated[
    str | None, typer.Option(help="Only signups with plan=VALUE or channel=VALUE.")
]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="The query's end day (default today).")
]


@app.command()
def retention(
    ctx: typer.Context,
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    granularity: Annotated[Granularity, typer.Option(help="Cohort period.")] = Granularity.week,
    periods: Annotated[int, typer.Option(help="Periods per cohort, period 0 included.")] = 8,
    mode: Annotated[
        Mode, typer.Option(help="Retained on the period, or on or after it.")
    ] = Mode.on_day,
    segment: SegmentOpt = None,
    as_of: AsOfOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The retention matrix: retained users per signup cohort and period.

    Examples:

        northstar retention --granularity week --periods 6
        northstar retention --granularity day --from 2026-10-01 --periods 14 --segment plan=free
    """
    start, end = _range(from_date, to_date, days=56)
    request = retention_pb2.RetentionRequest(
        granularity=_COHORT[granularity],
        from_date=start,
        to_date=end,
        periods=periods,
        mode=_MODE[mode],
        as_of_date=as_of or "",
    )
    if (seg := _segment(segment)) is not None:
        request.segment.CopyFrom(seg)
    _query(ctx, "retention", request, json_output)


@app.command("retention-trend")
def retention_trend(
    ctx: typer.Context,
    period: Annotated[int, typer.Option(help="The period N, e.g. 7 for D7 with day cohorts.")] = 7,
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    granularity: Annotated[Granularity, typer.Option(help="Cohort period.")] = Granularity.day,
    mode: Annotated[
        Mode, typer.Option(help="Retained on the period, or on or after it.")
    ] = Mode.on_day,
    segment: SegmentOpt = None,
    as_of: AsOfOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """One retention period (e.g. D7) across a range of cohorts.

    Examples:

        northstar retention-trend --period 7
        northstar retention-trend --period 1 --granularity week --segment channel=seo
    """
    start, end = _range(from_date, to_date)
    request = retention_pb2.RetentionTrendRequest(
        granularity=_COHORT[granularity],
        from_date=start,
        to_date=end,
        period=period,
        mode=_MODE[mode],
        as_of_date=as_of or "",
    )
    if (seg := _segment(segment)) is not None:
        request.segment.CopyFrom(seg)
    _query(ctx, "retention_trend", request, json_output)


class Breakdown(StrEnum):
    """Activation breakdowns."""

    none = "none"
    plan = "plan"
    channel = "channel"


@app.command()
def activation(
    ctx: typer.Context,
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    breakdown: Annotated[
        Breakdown, typer.Option(help="Split by signup plan or channel.")
    ] = Breakdown.none,
    json_output: JsonOpt = False,
) -> None:
    """Activation rate, time to first value and paid conversion of the signups of a range.

    Examples:

        northstar activation
        northstar activation --breakdown channel --json
    """
    start, end = _range(from_date, to_date)
    kinds = {
        Breakdown.none: activation_pb2.ACTIVATION_BREAKDOWN_UNSPECIFIED,
        Breakdown.plan: activation_pb2.ACTIVATION_BREAKDOWN_PLAN,
        Breakdown.channel: activation_pb2.ACTIVATION_BREAKDOWN_CHANNEL,
    }
    request = activation_pb2.ActivationRequest(
        from_date=start, to_date=end, breakdown=kinds[breakdown]
    )
    _query(ctx, "activation", request, json_output)


@app.command()
def workflows(
    ctx: typer.Context,
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    granularity: Annotated[Granularity, typer.Option(help="Period length.")] = Granularity.week,
    json_output: JsonOpt = False,
) -> None:
    """Workflow runs, successes, error rate and active workflows per period.

    Examples:

        northstar workflows
        northstar workflows --granularity day --from 2026-10-01
    """
    start, end = _range(from_date, to_date)
    kinds = {
        Granularity.day: activation_pb2.WORKFLOWS_GRANULARITY_DAY,
        Granularity.week: activation_pb2.WORKFLOWS_GRANULARITY_WEEK,
        Granularity.month: activation_pb2.WORKFLOWS_GRANULARITY_MONTH,
    }
    request = activation_pb2.WorkflowsRequest(
        from_date=start, to_date=end, granularity=kinds[granularity]
    )
    _query(ctx, "workflows", request, json_output)


def _duration(text: str, option: str = "--window") -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    try:
        if text[-1:] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        _fail(f"{option} takes seconds or a duration like 30m, 12h, 7d; got {text!r}", 2)


def _instant(text: str, option: str) -> datetime:
    """An ISO 8601 time (Z allowed); without an offset, UTC."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{option} must be ISO 8601, got {text!r}", 2)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _matcher(step: str) -> filters_pb2.EventMatcher:
    """`event` or `event:prop=value,prop2>=3`."""
    name, _, conditions = step.partition(":")
    filters = _filters([c for c in conditions.split(",") if c]) if conditions else []
    return filters_pb2.EventMatcher(event=name, filters=filters)


@app.command()
def funnel(
    ctx: typer.Context,
    steps: Annotated[
        list[str],
        typer.Argument(help="2 to 10 steps: EVENT or EVENT:PROP=VALUE[,PROP>=N…]."),
    ],
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    window: Annotated[
        str, typer.Option(help="Conversion window: seconds, or 30m, 12h, 7d.")
    ] = "7d",
    breakdown: Annotated[
        str, typer.Option(help="A property of the first step's event to break down by.")
    ] = "",
    json_output: JsonOpt = False,
) -> None:
    """Conversion through ordered steps within a window.

    Examples:

        northstar funnel user.signup integration.connected workflow.created
        northstar funnel user.signup 'workflow.run:status=success' --window 1d --breakdown channel
    """
    if not 2 <= len(steps) <= 10:
        _fail("a funnel has 2 to 10 steps", 2)
    start, end = _range(from_date, to_date)
    request = funnel_pb2.FunnelRequest(
        steps=[_matcher(s) for s in steps],
        from_date=start,
        to_date=end,
        window_seconds=_duration(window),
        breakdown_property=breakdown,
    )
    _query(ctx, "funnel", request, json_output)


class Interval(StrEnum):
    """Trend bucket widths."""

    hour = "hour"
    day = "day"
    week = "week"
    month = "month"


class Measure(StrEnum):
    """What a trend computes per bucket."""

    COUNT = "count"
    USERS = "users"
    SUM = "sum"
    AVERAGE = "average"
    MIN = "min"
    MAX = "max"


@app.command()
def trend(
    ctx: typer.Context,
    event: Annotated[str, typer.Argument(help="Event name; omit for every event.")] = "",
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    interval: Annotated[Interval, typer.Option(help="Bucket width.")] = Interval.day,
    measure: Annotated[Measure, typer.Option(help="What to compute per bucket.")] = Measure.COUNT,
    property_: Annotated[
        str, typer.Option("--property", help="Numeric property for sum/average/min/max.")
    ] = "",
    breakdown: Annotated[str, typer.Option(help="Property to break down by.")] = "",
    where: Annotated[
        list[str] | None,
        typer.Option(help="Filter: prop=value, prop!=value, prop>=n, prop=a|b; repeatable."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """A series per interval: event counts, unique users or a property aggregate.

    Examples:

        northstar trend page.view --breakdown page
        northstar trend workflow.run --measure users --where status=success --interval week
        northstar trend subscription.started --measure sum --property mrr
    """
    start, end = _range(from_date, to_date)
    intervals = {
        Interval.hour: trend_pb2.TREND_INTERVAL_HOUR,
        Interval.day: trend_pb2.TREND_INTERVAL_DAY,
        Interval.week: trend_pb2.TREND_INTERVAL_WEEK,
        Interval.month: trend_pb2.TREND_INTERVAL_MONTH,
    }
    measures = {
        Measure.COUNT: trend_pb2.TREND_MEASURE_EVENT_COUNT,
        Measure.USERS: trend_pb2.TREND_MEASURE_UNIQUE_USERS,
        Measure.SUM: trend_pb2.TREND_MEASURE_SUM,
        Measure.AVERAGE: trend_pb2.TREND_MEASURE_AVERAGE,
        Measure.MIN: trend_pb2.TREND_MEASURE_MIN,
        Measure.MAX: trend_pb2.TREND_MEASURE_MAX,
    }
    request = trend_pb2.TrendRequest(
        from_date=start,
        to_date=end,
        interval=intervals[interval],
        event=event,
        filters=_filters(where),
        measure=measures[measure],
        property=property_,
        breakdown_property=breakdown,
    )
    _query(ctx, "trend", request, json_output)


@app.command()
def revenue(
    ctx: typer.Context,
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """MRR per day and monthly movements: new, expansion, contraction, churn, LTV, CAC.

    Examples:

        northstar revenue
        northstar revenue --from 2026-01-01 --to 2026-06-30 --json
    """
    start, end = _range(from_date, to_date, days=60)
    _query(ctx, "revenue", revenue_pb2.RevenueRequest(from_date=start, to_date=end), json_output)


@app.command()
def kpis(ctx: typer.Context, as_of: AsOfOpt = None, json_output: JsonOpt = False) -> None:
    """Every KPI as of a day, the alignment score and the priority actions.

    Examples:

        northstar kpis
        northstar kpis --as-of 2026-11-01 --json
    """
    _query(ctx, "kpis", kpis_pb2.KpisRequest(as_of_date=as_of or ""), json_output)


@kpi_config_app.command("show")
def kpi_config_show(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """The KPI targets, weights and thresholds in force, and their version.

    Examples:

        northstar kpi-config show
    """
    _query(ctx, "get_kpi_config", None, json_output)


@kpi_config_app.command("set")
def kpi_config_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The KPI, e.g. d7_retention.")],
    target: Annotated[float | None, typer.Option(help="New target.")] = None,
    weight: Annotated[float | None, typer.Option(help="New weight.")] = None,
    warning: Annotated[float | None, typer.Option(help="New warning threshold.")] = None,
    critical: Annotated[float | None, typer.Option(help="New critical threshold.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Change one KPI; unspecified values are kept (needs an admin key).

    Examples:

        northstar kpi-config set d7_retention --target 0.35
        northstar kpi-config set activation_rate --warning 0.3 --critical 0.2
    """
    config = _config(ctx)
    try:
        with MetricsClient(config) as client:
            current = client.get_kpi_config()
            found = [t for t in current.config.targets if t.name == name]
            if not found:
                names = ", ".join(t.name for t in current.config.targets)
                _fail(f"no KPI {name!r}; KPIs: {names}", 2)
            changed = kpis_pb2.KpiTarget()
            changed.CopyFrom(found[0])
            for field, value in (
                ("target", target),
                ("weight", weight),
                ("warning", warning),
                ("critical", critical),
            ):
                if value is not None:
                    setattr(changed, field, value)
            answer = client.update_kpi_config(
                kpis_pb2.UpdateKpiConfigRequest(targets=[changed], expected_version=current.version)
            )
    except (RpcError, ConfigError) as e:
        _fail(str(e))
    print_answer(out, answer, json_output=json_output)


class Series(StrEnum):
    """Daily series."""

    dau = "dau"
    signups = "signups"
    workflow_runs = "workflow-runs"
    error_rate = "error-rate"
    mrr = "mrr"
    events = "events"


def _selector(series: Series, event: str) -> series_pb2.SeriesSelector:
    kinds = {
        Series.dau: series_pb2.DAILY_SERIES_DAU,
        Series.signups: series_pb2.DAILY_SERIES_SIGNUPS,
        Series.workflow_runs: series_pb2.DAILY_SERIES_WORKFLOW_RUNS,
        Series.error_rate: series_pb2.DAILY_SERIES_ERROR_RATE,
        Series.mrr: series_pb2.DAILY_SERIES_MRR,
        Series.events: series_pb2.DAILY_SERIES_EVENT_COUNT,
    }
    if (series == Series.events) != bool(event):
        _fail("--event is needed with --series events, and only then", 2)
    return series_pb2.SeriesSelector(series=kinds[series], event_name=event)


SeriesOpt = Annotated[Series, typer.Option(help="The daily series.")]
EventOpt = Annotated[str, typer.Option(help="Event name, for --series events.")]


@app.command()
def anomalies(
    ctx: typer.Context,
    series: SeriesOpt = Series.dau,
    event: EventOpt = "",
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    z: Annotated[float | None, typer.Option(help="Z-score threshold (default 3).")] = None,
    relative: Annotated[
        float | None, typer.Option(help="Also flag a relative change above this, e.g. 0.5.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Anomalous days of a daily series, against the 28 days before each.

    Examples:

        northstar anomalies --series signups
        northstar anomalies --series events --event page.view --z 2.5 --relative 0.5
    """
    start, end = _range(from_date, to_date)
    request = series_pb2.AnomaliesRequest(
        selector=_selector(series, event), from_date=start, to_date=end
    )
    if z is not None:
        request.z_threshold = z
    if relative is not None:
        request.relative_threshold = relative
    _query(ctx, "anomalies", request, json_output)


@app.command()
def forecast(
    ctx: typer.Context,
    series: SeriesOpt = Series.dau,
    event: EventOpt = "",
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Last observed day (default: the latest with data)."),
    ] = None,
    horizon: Annotated[int, typer.Option(help="Days to forecast (1-365).")] = 14,
    fit_days: Annotated[int, typer.Option(help="Days of history to fit on (14-365).")] = 56,
    json_output: JsonOpt = False,
) -> None:
    """The next days of a daily series with 80 % and 95 % intervals, and past accuracy.

    Examples:

        northstar forecast --series dau
        northstar forecast --series mrr --horizon 30 --json
    """
    request = series_pb2.ForecastRequest(
        selector=_selector(series, event), horizon_days=horizon, fit_days=fit_days
    )
    if as_of:
        request.as_of_date = as_of
    _query(ctx, "forecast", request, json_output)


@app.command("data-quality")
def data_quality(
    ctx: typer.Context,
    from_date: FromOpt = None,
    to_date: ToOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Data-quality counts and score of the events received in a period.

    Examples:

        northstar data-quality
        northstar data-quality --from 2026-10-01 --to 2026-10-31 --json
    """
    start, end = _range(from_date, to_date)
    request = quality_pb2.DataQualityRequest(from_date=start, to_date=end)
    _query(ctx, "data_quality", request, json_output)


# ----------------------------------------------------------------------- experiments


class ExperimentStatusName(StrEnum):
    """Statuses `experiments list --status` filters on."""

    draft = "draft"
    running = "running"
    stopped = "stopped"
    concluded = "concluded"
    archived = "archived"


_STATUSES = {
    ExperimentStatusName.draft: xp.EXPERIMENT_STATUS_DRAFT,
    ExperimentStatusName.running: xp.EXPERIMENT_STATUS_RUNNING,
    ExperimentStatusName.stopped: xp.EXPERIMENT_STATUS_STOPPED,
    ExperimentStatusName.concluded: xp.EXPERIMENT_STATUS_CONCLUDED,
    ExperimentStatusName.archived: xp.EXPERIMENT_STATUS_ARCHIVED,
}
KeyArg = Annotated[str, typer.Argument(help="The experiment key.")]
VersionOpt = Annotated[
    int | None,
    typer.Option(
        "--expected-version",
        help="The version the change is made against (default: the current one).",
    ),
]


def _experiments_call(ctx: typer.Context, call: Callable[[ExperimentsClient], R]) -> R:
    return _with_client(ctx, ExperimentsClient, call)


def _versioned(
    ctx: typer.Context,
    key: str,
    expected_version: int | None,
    send: Callable[[ExperimentsClient, int], R],
) -> R:
    """Send a change against `expected_version`, or against the current version.

    The current version comes from the read model, which may lag a change made a moment
    ago (NOT_FOUND just after a create, ABORTED just after another change): then it is read
    again, with backoff, within the deadline. A stale version never applies a change.
    """
    config = _config(ctx)

    def call(client: ExperimentsClient) -> R:
        if expected_version is not None:
            return send(client, expected_version)
        deadline = time.monotonic() + config.timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                version = client.get_experiment(key).experiment.version
                return send(client, version)
            except RpcError as e:
                lagging = e.code in {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED}
                delay = backoff_delay(config.retry, attempt, None)
                if not lagging or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)

    return _experiments_call(ctx, call)


def _variant(text: str) -> xp.Variant:
    """`KEY:WEIGHT` or `KEY:WEIGHT:Display name`."""
    key, _, rest = text.partition(":")
    weight, _, name = rest.partition(":")
    try:
        share = float(weight)
    except ValueError:
        _fail(f"--variant takes KEY:WEIGHT[:NAME], e.g. control:0.5; got {text!r}", 2)
    return xp.Variant(key=key, name=name or key, weight=share)


def _metric(spec: str, window_seconds: int, inverse: set[str]) -> xp.Metric:
    """`[NAME=]EVENT[:FILTER,…]` (binomial) or `[NAME=]sum(PROPERTY)@EVENT[:FILTER,…]`."""
    name, sep, body = spec.partition("=")
    if not sep or ":" in name or "(" in name:
        name, body = "", spec
    target, _, conditions = body.partition(":")
    prop = ""
    if target.startswith("sum(") and ")@" in target:
        prop, _, event = target[len("sum(") :].partition(")@")
    else:
        event = target
    if not event:
        _fail(
            f"cannot read the metric {spec!r};"
            " e.g. order.completed or revenue=sum(amount)@order.completed",
            2,
        )
    filters = []
    for f in _filters([c for c in conditions.split(",") if c]):
        op = xp.FilterOperator.Value(filters_pb2.FilterOperator.Name(f.operator))
        filters.append(xp.PropertyFilter(property=f.property, operator=op, values=f.values))
    metric_name = name or (f"{event} {prop}" if prop else event)
    return xp.Metric(
        name=metric_name,
        kind=xp.METRIC_KIND_CONTINUOUS if prop else xp.METRIC_KIND_BINOMIAL,
        event=event,
        filters=filters,
        property=prop,
        window_seconds=window_seconds,
        inverse=metric_name in inverse,
    )


@experiments_app.command("list")
def experiments_list(
    ctx: typer.Context,
    status: Annotated[
        ExperimentStatusName | None, typer.Option(help="Only experiments of this status.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """The tenant's experiments, by key.

    Examples:

        northstar experiments list

        northstar experiments list --status running --json
    """
    wanted = _STATUSES[status] if status else xp.EXPERIMENT_STATUS_UNSPECIFIED
    answer = _experiments_call(ctx, lambda c: c.list_experiments(wanted))
    print_answer(out, answer, json_output=json_output)


@experiments_app.command("show")
def experiments_show(ctx: typer.Context, key: KeyArg, json_output: JsonOpt = False) -> None:
    """One experiment: definition, status, version and change history.

    Examples:

        northstar experiments show checkout-button

        northstar experiments show checkout-button --json
    """
    answer = _experiments_call(ctx, lambda c: c.get_experiment(key))
    print_answer(out, answer, json_output=json_output)


@experiments_app.command("create")
def experiments_create(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The experiment key: letters, digits, _ and -.")],
    variant: Annotated[
        list[str],
        typer.Option(
            help="KEY:WEIGHT[:NAME], 2 to 10 times; the first is the control; weights sum to 1."
        ),
    ],
    name: Annotated[str, typer.Option(help="Display name (default: the key).")] = "",
    hypothesis: Annotated[str, typer.Option(help="What the experiment should show.")] = "",
    coverage: Annotated[float, typer.Option(help="Share of users who enter, 0-1.")] = 1.0,
    seed: Annotated[str, typer.Option(help="Hash seed (default: the key).")] = "",
    goal: Annotated[
        list[str] | None,
        typer.Option(
            help="Goal metric: [NAME=]EVENT[:FILTER,…] (converted users) or"
            " [NAME=]sum(PROPERTY)@EVENT (per-user sum); repeatable."
        ),
    ] = None,
    guardrail: Annotated[
        list[str] | None, typer.Option(help="Guardrail metric, as --goal; repeatable.")
    ] = None,
    lower_is_better: Annotated[
        list[str] | None,
        typer.Option(help="A metric NAME for which lower is better (e.g. errors); repeatable."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="Metric window after the first exposure: 30m, 12h, 7d (default: none)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Define an experiment as a draft (needs an admin key); `start` it to assign users.

    Examples:

        northstar experiments create btn --variant control:0.5 --variant green:0.5 --goal purchase=order.completed

        northstar experiments create onboarding --variant a:0.5 --variant b:0.5 --coverage 0.2 --goal 'activated=workflow.run:status=success' --goal 'mrr=sum(mrr)@subscription.started' --guardrail errors=app.error --lower-is-better errors --window 7d
    """  # noqa: E501 - examples are kept whole, to copy
    seconds = _duration(window) if window else 0
    inverse = set(lower_is_better or [])
    definition = xp.ExperimentDefinition(
        name=name or key,
        hypothesis=hypothesis,
        variants=[_variant(v) for v in variant],
        coverage=coverage,
        seed=seed,
        goal_metrics=[_metric(m, seconds, inverse) for m in goal or []],
        guardrail_metrics=[_metric(m, seconds, inverse) for m in guardrail or []],
    )
    request = xp.CreateExperimentRequest(key=key, definition=definition)
    answer = _experiments_call(ctx, lambda c: c.create_experiment(request))
    print_answer(out, answer, json_output=json_output)


@experiments_app.command("start")
def experiments_start(
    ctx: typer.Context,
    key: KeyArg,
    expected_version: VersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Start a draft: from now on users are assigned (needs an admin key).

    Examples:

        northstar experiments start checkout-button

        northstar experiments start checkout-button --expected-version 42
    """
    answer = _versioned(
        ctx,
        key,
        expected_version,
        lambda c, v: c.start_experiment(xp.StartExperimentRequest(key=key, expected_version=v)),
    )
    print_answer(out, answer, json_output=json_output)


@experiments_app.command("stop")
def experiments_stop(
    ctx: typer.Context,
    key: KeyArg,
    expected_version: VersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Stop a running experiment: nobody is assigned any more (needs an admin key).

    Examples:

        northstar experiments stop checkout-button
    """
    answer = _versioned(
        ctx,
        key,
        expected_version,
        lambda c, v: c.stop_experiment(xp.StopExperimentRequest(key=key, expected_version=v)),
    )
    print_answer(out, answer, json_output=json_output)


@experiments_app.command("conclude")
def experiments_conclude(
    ctx: typer.Context,
    key: KeyArg,
    winner: Annotated[str, typer.Option(help="The winning variant's key.")],
    reason: Annotated[str, typer.Option(help="Why that variant won.")] = "",
    expected_version: VersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Record the winner of a stopped experiment (needs an admin key).

    Examples:

        northstar experiments conclude checkout-button --winner green --reason "+12% purchases"
    """
    answer = _versioned(
        ctx,
        key,
        expected_version,
        lambda c, v: c.conclude_experiment(
            xp.ConcludeExperimentRequest(key=key, expected_version=v, winner=winner, reason=reason)
        ),
    )
    print_answer(out, answer, json_output=json_output)


@experiments_app.command("archive")
def experiments_archive(
    ctx: typer.Context,
    key: KeyArg,
    expected_version: VersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Archive an experiment that is not running (needs an admin key).

    Examples:

        northstar experiments archive checkout-button
    """
    answer = _versioned(
        ctx,
        key,
        expected_version,
        lambda c, v: c.archive_experiment(xp.ArchiveExperimentRequest(key=key, expected_version=v)),
    )
    print_answer(out, answer, json_output=json_output)


@experiments_app.command("assign")
def experiments_assign(
    ctx: typer.Context,
    key: KeyArg,
    user: Annotated[str, typer.Argument(help="The user_id to assign.")],
    log_exposure: Annotated[
        bool,
        typer.Option(help="Append an experiment.exposure event when the user is in a variant."),
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="The exposure is stored once per key (default: once per user)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """A user's variant: the same user always gets the same answer (needs an ingest key).

    Examples:

        northstar experiments assign checkout-button u-1

        northstar experiments assign checkout-button u-1 --log-exposure --json
    """
    answer = _experiments_call(
        ctx,
        lambda c: c.assign(key, user, log_exposure=log_exposure, idempotency_key=idempotency_key),
    )
    print_answer(out, answer, json_output=json_output)


@experiments_app.command("results")
def experiments_results(
    ctx: typer.Context,
    key: KeyArg,
    bayesian: Annotated[
        bool, typer.Option(help="Bayesian engine: chance to win and risk (default frequentist).")
    ] = False,
    cuped: Annotated[
        bool, typer.Option(help="CUPED adjustment on the 14 days before the first exposure.")
    ] = False,
    sequential: Annotated[
        bool, typer.Option(help="Sequential testing (frequentist only): peeking-safe intervals.")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Analysis end, ISO 8601 (default: now or the stop time)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """The analysis: per-variant numbers, lift and intervals, sample ratio check, decision.

    Examples:

        northstar experiments results checkout-button

        northstar experiments results checkout-button --cuped --sequential

        northstar experiments results checkout-button --bayesian --json
    """
    if bayesian and sequential:
        _fail("--sequential applies to the frequentist engine only", 2)
    request = xp.GetResultsRequest(
        experiment_key=key,
        engine=xp.STATS_ENGINE_BAYESIAN if bayesian else xp.STATS_ENGINE_FREQUENTIST,
        cuped=cuped,
        sequential=sequential,
    )
    if as_of:
        request.as_of_us = int(_instant(as_of, "--as-of").timestamp() * 1_000_000)
    answer = _experiments_call(ctx, lambda c: c.get_results(request))
    print_answer(out, answer, json_output=json_output)


# ---------------------------------------------------------------------------- alerts

alerts_app = typer.Typer(
    help=(
        "Alert rules, the alerts they raise, silences and notifications.\n\n"
        "Examples:\n\n"
        "  northstar alerts rules create dau-low.yaml\n\n"
        "  northstar alerts list\n\n"
        "  northstar alerts ack dau-low --severity critical --comment 'on it'\n\n"
        "  northstar alerts silences create --match team=growth --ends-in 2h"
        " --reason 'planned migration'"
    ),
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")
rules_app = typer.Typer(
    help="List, show, create, update and delete alert rules.", no_args_is_help=True
)
alerts_app.add_typer(rules_app, name="rules")
silences_app = typer.Typer(
    help="Mute the notifications of matching alerts for a while.", no_args_is_help=True
)
alerts_app.add_typer(silences_app, name="silences")

RuleArg = Annotated[str, typer.Argument(help="The rule's id.")]
RuleFileArg = Annotated[
    str,
    typer.Argument(help="A JSON or YAML file with the rule in the proto's JSON form; - : stdin."),
]
RuleVersionOpt = Annotated[
    int | None,
    typer.Option(
        "--expected-version",
        help="The version the change is made against (default: the current one).",
    ),
]


class SeverityName(StrEnum):
    """Alert severities."""

    warning = "warning"
    critical = "critical"


_SEVERITIES = {
    SeverityName.warning: al.SEVERITY_WARNING,
    SeverityName.critical: al.SEVERITY_CRITICAL,
}


def _alerts_call(ctx: typer.Context, call: Callable[[AlertsClient], R]) -> R:
    return _with_client(ctx, AlertsClient, call)


def _read_message(source: str, message: M, key: str) -> M:
    """A message from a JSON or YAML file (`-`: stdin), in the proto's JSON form.

    The answer of a `get --json` (the message under `key`, with its "version" and what the
    service adds) is read too, so a definition can be fetched, edited and sent back.
    """
    name = "stdin" if source == "-" else source
    what = key.replace("_", " ")
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as e:
        _fail(f"cannot read {name}: {e.strerror or e}", 2)
    try:
        data = json.loads(text)
    except ValueError as e:
        if source.endswith(".json"):
            _fail(f"{name} is not JSON: {e}", 2)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            _fail(f"{name} is neither JSON nor YAML: {e}", 2)
    for _ in range(2):  # GetScheduleResponse nests the definition twice
        wrapped = isinstance(data, dict) and isinstance(data.get(key), dict)
        if wrapped and (set(data) == {key} or "version" in data):
            data = data[key]
    if not isinstance(data, dict):
        _fail(f"{name} must hold one {what}, as a JSON or YAML object", 2)
    try:
        return json_format.ParseDict(data, message)
    except json_format.ParseError as e:
        _fail(f"{name}: {e}", 2)


def _read_rule(source: str) -> al.Rule:
    """A rule from a JSON or YAML file (`-`: stdin), or the answer of `rules get --json`."""
    return _read_message(source, al.Rule(), "rule")


@rules_app.command("list")
def alerts_rules_list(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """The tenant's rules with their conditions and versions, by id.

    Examples:

        northstar alerts rules list

        northstar alerts rules list --json
    """
    print_answer(out, _alerts_call(ctx, lambda c: c.list_rules()), json_output=json_output)


@rules_app.command("get")
def alerts_rules_get(ctx: typer.Context, rule_id: RuleArg, json_output: JsonOpt = False) -> None:
    """One rule and its version; `--json` prints it in the form `create`/`update` read.

    Examples:

        northstar alerts rules get dau-low

        northstar alerts rules get dau-low --json > dau-low.json
    """
    print_answer(out, _alerts_call(ctx, lambda c: c.get_rule(rule_id)), json_output=json_output)


@rules_app.command("create")
def alerts_rules_create(
    ctx: typer.Context, file: RuleFileArg = "-", json_output: JsonOpt = False
) -> None:
    """Define a rule from a file or stdin (needs an admin key); prints its version.

    A rule in YAML:

        rule_id: dau-low
        name: DAU low
        series: {kind: SERIES_KIND_METRIC, name: dau}
        threshold: {comparator: COMPARATOR_LESS, warning: 100, critical: 50}
        for_seconds: 600
        labels: {team: growth}
        channels: {webhooks: ["https://hooks.example.com/northstar"]}

    Examples:

        northstar alerts rules create dau-low.yaml

        cat dau-low.json | northstar alerts rules create -
    """
    rule = _read_rule(file)
    answer = _alerts_call(ctx, lambda c: c.create_rule(rule))
    print_answer(out, answer, json_output=json_output)


@rules_app.command("update")
def alerts_rules_update(
    ctx: typer.Context,
    file: RuleFileArg = "-",
    expected_version: RuleVersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Replace the definition of the rule the file names (its rule_id; needs an admin key).

    Examples:

        northstar alerts rules update dau-low.yaml

        northstar alerts rules get dau-low --json > r.json; $EDITOR r.json; northstar alerts rules update r.json --expected-version 42
    """  # noqa: E501 - examples are kept whole, to copy
    rule = _read_rule(file)

    def call(client: AlertsClient) -> al.UpdateRuleResponse:
        version = expected_version
        if version is None:
            version = client.get_rule(rule.rule_id).version
        return client.update_rule(rule, version)

    print_answer(out, _alerts_call(ctx, call), json_output=json_output)


@rules_app.command("delete")
def alerts_rules_delete(
    ctx: typer.Context,
    rule_id: RuleArg,
    expected_version: RuleVersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Delete a rule: it is evaluated no more (needs an admin key).

    Examples:

        northstar alerts rules delete dau-low

        northstar alerts rules delete dau-low --expected-version 42
    """

    def call(client: AlertsClient) -> al.DeleteRuleResponse:
        version = expected_version
        if version is None:
            version = client.get_rule(rule_id).version
        return client.delete_rule(rule_id, version)

    print_answer(out, _alerts_call(ctx, call), json_output=json_output)


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    rule_id: Annotated[str, typer.Option("--rule", help="Only this rule's alerts.")] = "",
    json_output: JsonOpt = False,
) -> None:
    """The current alerts: each rule's state at each severity, value, since, acknowledgement.

    Examples:

        northstar alerts list

        northstar alerts list --rule dau-low --json
    """
    answer = _alerts_call(ctx, lambda c: c.list_alerts(rule_id))
    print_answer(out, answer, json_output=json_output)


@alerts_app.command("history")
def alerts_history(ctx: typer.Context, rule_id: RuleArg, json_output: JsonOpt = False) -> None:
    """Every transition and acknowledgement of a rule's alerts, oldest first.

    Examples:

        northstar alerts history dau-low
    """
    answer = _alerts_call(ctx, lambda c: c.alert_history(rule_id))
    print_answer(out, answer, json_output=json_output)


@alerts_app.command("ack")
def alerts_ack(
    ctx: typer.Context,
    rule_id: RuleArg,
    severity: Annotated[SeverityName, typer.Option(help="The alert's severity.")],
    comment: Annotated[str, typer.Option(help="Shown with the next notification.")] = "",
    by: Annotated[
        str, typer.Option("--by", help="Who acknowledges (default: the API key's id).")
    ] = "",
    json_output: JsonOpt = False,
) -> None:
    """Acknowledge a pending or firing alert (needs an admin key).

    Examples:

        northstar alerts ack dau-low --severity critical --comment "looking into it"
    """
    answer = _alerts_call(
        ctx,
        lambda c: c.acknowledge_alert(
            rule_id, _SEVERITIES[severity], acknowledged_by=by, comment=comment
        ),
    )
    print_answer(out, answer, json_output=json_output)


@alerts_app.command("test")
def alerts_test(
    ctx: typer.Context,
    rule_id: Annotated[str, typer.Argument(help="A stored rule's id.")] = "",
    file: Annotated[
        str | None,
        typer.Option("--file", help="Test this rule definition instead (JSON or YAML; -: stdin)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Evaluate a rule now: the value and each severity's verdict; nothing is changed.

    Examples:

        northstar alerts test dau-low

        northstar alerts test --file dau-low.yaml --json
    """
    if bool(rule_id) == (file is not None):
        _fail("name a stored RULE or give --file, not both", 2)
    target: str | al.Rule = _read_rule(file) if file is not None else rule_id
    print_answer(out, _alerts_call(ctx, lambda c: c.test_rule(target)), json_output=json_output)


@silences_app.command("list")
def alerts_silences_list(
    ctx: typer.Context,
    include_expired: Annotated[
        bool, typer.Option("--all", help="Also silences that ended or were expired.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """The tenant's pending and active silences, newest first.

    Examples:

        northstar alerts silences list

        northstar alerts silences list --all --json
    """
    answer = _alerts_call(ctx, lambda c: c.list_silences(include_expired=include_expired))
    print_answer(out, answer, json_output=json_output)


@silences_app.command("create")
def alerts_silences_create(
    ctx: typer.Context,
    match: Annotated[
        list[str],
        typer.Option(
            help="A label KEY=VALUE the alerts must have (alertname, rule_id, severity or a"
            " rule's label); repeatable."
        ),
    ],
    reason: Annotated[str, typer.Option(help="Why (required).")],
    ends_in: Annotated[
        str | None, typer.Option(help="How long from the start: 30m, 2h, 1d.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="When it ends, ISO 8601.")] = None,
    starts_at: Annotated[
        str | None, typer.Option(help="When it starts, ISO 8601 (default: now).")
    ] = None,
    author: Annotated[str, typer.Option(help="Who asks (default: your user name).")] = "",
    json_output: JsonOpt = False,
) -> None:
    """Mute the notifications of alerts with every matching label (needs an admin key).

    Evaluation goes on; only notifications are muted.

    Examples:

        northstar alerts silences create --match rule_id=dau-low --ends-in 2h --reason "deploy"

        northstar alerts silences create --match team=growth --match severity=warning --until 2026-12-24T08:00:00Z --reason "holidays" --author ops
    """  # noqa: E501 - examples are kept whole, to copy
    if (ends_in is None) == (until is None):
        _fail("give --ends-in or --until (one of them)", 2)
    matchers: dict[str, str] = {}
    for item in match:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--match takes KEY=VALUE, got {item!r}", 2)
        matchers[key] = value
    start = _instant(starts_at, "--starts-at") if starts_at else None
    if until is not None:
        end = _instant(until, "--until")
    else:
        end = (start or datetime.now(UTC)) + timedelta(
            seconds=_duration(ends_in or "", "--ends-in")
        )
    silence = al.Silence(matchers=matchers, reason=reason, author=author or getpass.getuser())
    if start is not None:
        silence.starts_at.FromDatetime(start)
    silence.ends_at.FromDatetime(end)
    answer = _alerts_call(ctx, lambda c: c.create_silence(silence))
    print_answer(out, answer, json_output=json_output)


@silences_app.command("expire")
def alerts_silences_expire(
    ctx: typer.Context,
    silence_id: Annotated[str, typer.Argument(help="The silence's id.")],
    json_output: JsonOpt = False,
) -> None:
    """End a silence now (needs an admin key).

    Examples:

        northstar alerts silences expire 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b
    """
    answer = _alerts_call(ctx, lambda c: c.expire_silence(silence_id))
    print_answer(out, answer, json_output=json_output)


@alerts_app.command("notifications")
def alerts_notifications(
    ctx: typer.Context,
    rule_id: Annotated[str, typer.Option("--rule", help="Only this rule's notifications.")] = "",
    limit: Annotated[int, typer.Option(help="Notifications per page (at most 500).")] = 50,
    page_token: Annotated[
        str, typer.Option(help="The token printed under the previous page: older ones.")
    ] = "",
    json_output: JsonOpt = False,
) -> None:
    """Notifications, newest first: each channel target's delivery status and attempts.

    Examples:

        northstar alerts notifications

        northstar alerts notifications --rule dau-low --limit 10 --json
    """
    answer = _alerts_call(
        ctx, lambda c: c.list_notifications(rule_id, page_size=limit, page_token=page_token)
    )
    print_answer(out, answer, json_output=json_output)


# ---------------------------------------------------------------------------- reports

reports_app = typer.Typer(
    help=(
        "Report schedules, generated reports and their renderings.\n\n"
        "Examples:\n\n"
        "  northstar reports schedules list\n\n"
        "  northstar reports generate weekly --date 2026-11-23 --format html -o week.html\n\n"
        "  northstar reports list --schedule daily\n\n"
        "  northstar reports get REPORT_ID --format markdown"
    ),
    no_args_is_help=True,
)
app.add_typer(reports_app, name="reports")
schedules_app = typer.Typer(
    help="List, show, create, update and delete report schedules.", no_args_is_help=True
)
reports_app.add_typer(schedules_app, name="schedules")

ScheduleArg = Annotated[str, typer.Argument(help="The schedule's id.")]
ScheduleFileArg = Annotated[
    str,
    typer.Argument(
        help="A JSON or YAML file with the schedule in the proto's JSON form; - : stdin."
    ),
]


class ReportFormat(StrEnum):
    """Renderings of a report."""

    markdown = "markdown"
    html = "html"
    json = "json"


_FORMATS = {
    ReportFormat.markdown: rp.FORMAT_MARKDOWN,
    ReportFormat.html: rp.FORMAT_HTML,
    ReportFormat.json: rp.FORMAT_JSON,
}
FormatOpt = Annotated[ReportFormat, typer.Option("--format", "-f", help="The rendering to print.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the rendering to this file.")
]


def _reports_call(ctx: typer.Context, call: Callable[[ReportsClient], R]) -> R:
    return _with_client(ctx, ReportsClient, call)


def _write_rendering(answer: rp.GetReportResponse, output: Path | None) -> None:
    if output is None:
        print_plain(out, answer.content)
        return
    try:
        output.write_text(answer.content, encoding="utf-8")
    except OSError as e:
        _fail(f"cannot write {output}: {e.strerror or e}", 2)
    err.print(f"{answer.content_type} written to {output}", highlight=False)


@schedules_app.command("list")
def reports_schedules_list(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """The tenant's report schedules: what, when, where to, next run, last period.

    Examples:

        northstar reports schedules list

        northstar reports schedules list --json
    """
    answer = _reports_call(ctx, lambda c: c.list_schedules())
    print_answer(out, answer, json_output=json_output)


@schedules_app.command("get")
def reports_schedules_get(
    ctx: typer.Context, schedule_id: ScheduleArg, json_output: JsonOpt = False
) -> None:
    """One schedule and its version; `--json` prints it in the form `create`/`update` read.

    Examples:

        northstar reports schedules get weekly

        northstar reports schedules get weekly --json > weekly.json
    """
    answer = _reports_call(ctx, lambda c: c.get_schedule(schedule_id))
    print_answer(out, answer, json_output=json_output)


@schedules_app.command("create")
def reports_schedules_create(
    ctx: typer.Context, file: ScheduleFileArg = "-", json_output: JsonOpt = False
) -> None:
    """Define a schedule from a file or stdin (needs an admin key).

    A schedule in YAML:

        schedule_id: growth-weekly
        name: Growth weekly
        kind: REPORT_KIND_WEEKLY
        cron: "0 8 * * 1"
        time_zone: Europe/Paris
        channels: {emails: ["growth@example.com"], slack: ["https://hooks.slack.com/..."]}

    Examples:

        northstar reports schedules create growth-weekly.yaml
    """
    schedule = _read_message(file, rp.Schedule(), "schedule")
    answer = _reports_call(ctx, lambda c: c.create_schedule(schedule))
    print_answer(out, answer, json_output=json_output)


@schedules_app.command("update")
def reports_schedules_update(
    ctx: typer.Context,
    file: ScheduleFileArg = "-",
    expected_version: RuleVersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Replace the definition of the schedule the file names (needs an admin key).

    Examples:

        northstar reports schedules get weekly --json > w.json; $EDITOR w.json; northstar reports schedules update w.json
    """  # noqa: E501 - examples are kept whole, to copy
    schedule = _read_message(file, rp.Schedule(), "schedule")

    def call(client: ReportsClient) -> rp.UpdateScheduleResponse:
        version = expected_version
        if version is None:
            version = client.get_schedule(schedule.schedule_id).schedule.version
        return client.update_schedule(schedule, version)

    print_answer(out, _reports_call(ctx, call), json_output=json_output)


@schedules_app.command("delete")
def reports_schedules_delete(
    ctx: typer.Context,
    schedule_id: ScheduleArg,
    expected_version: RuleVersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Delete a schedule: it generates no more reports; those it made stay (admin key).

    Examples:

        northstar reports schedules delete growth-weekly
    """

    def call(client: ReportsClient) -> rp.DeleteScheduleResponse:
        version = expected_version
        if version is None:
            version = client.get_schedule(schedule_id).schedule.version
        return client.delete_schedule(schedule_id, version)

    print_answer(out, _reports_call(ctx, call), json_output=json_output)


@reports_app.command("generate")
def reports_generate(
    ctx: typer.Context,
    schedule_id: ScheduleArg,
    period_date: Annotated[
        str,
        typer.Option(
            "--date", help="Any day of the period, YYYY-MM-DD (default: the latest ended one)."
        ),
    ] = "",
    deliver: Annotated[bool, typer.Option(help="Also send it to the schedule's channels.")] = False,
    fmt: FormatOpt = ReportFormat.markdown,
    output: OutputOpt = None,
) -> None:
    """Generate a report now for a past period of a schedule (admin key) and print it.

    Examples:

        northstar reports generate daily

        northstar reports generate weekly --date 2026-11-23 --format html -o week.html

        northstar reports generate weekly --deliver
    """

    def call(client: ReportsClient) -> rp.GetReportResponse:
        report = client.generate_report(schedule_id, period_date=period_date, deliver=deliver)
        return client.get_report(report.report.summary.report_id, _FORMATS[fmt])

    answer = _reports_call(ctx, call)
    err.print(f"report {answer.report.summary.report_id}", highlight=False)
    _write_rendering(answer, output)


@reports_app.command("list")
def reports_list(
    ctx: typer.Context,
    schedule_id: Annotated[str, typer.Option("--schedule", help="Only this schedule's.")] = "",
    from_date: Annotated[
        str, typer.Option("--from", help="Periods starting on or after this day.")
    ] = "",
    to_date: Annotated[
        str, typer.Option("--to", help="Periods starting on or before this day.")
    ] = "",
    limit: Annotated[int, typer.Option(help="Reports per page (at most 1000).")] = 50,
    page_token: Annotated[
        str, typer.Option(help="The token printed under the previous page: older ones.")
    ] = "",
    json_output: JsonOpt = False,
) -> None:
    """Stored reports, newest period first, with their deliveries.

    Examples:

        northstar reports list

        northstar reports list --schedule weekly --from 2026-10-01 --json
    """
    answer = _reports_call(
        ctx,
        lambda c: c.list_reports(
            schedule_id,
            from_date=from_date,
            to_date=to_date,
            page_size=limit,
            page_token=page_token,
        ),
    )
    print_answer(out, answer, json_output=json_output)


@reports_app.command("get")
def reports_get(
    ctx: typer.Context,
    report_id: Annotated[str, typer.Argument(help="The report's id.")],
    fmt: FormatOpt = ReportFormat.markdown,
    output: OutputOpt = None,
) -> None:
    """A stored report in one of its renderings.

    Examples:

        northstar reports get REPORT_ID

        northstar reports get REPORT_ID --format html -o report.html
    """
    answer = _reports_call(ctx, lambda c: c.get_report(report_id, _FORMATS[fmt]))
    _write_rendering(answer, output)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
