"""The cost curve: how each query-run figure changes from the 1M- to the 10M-event set.

`python -m bench.queries` keeps the last result of each mode (`bench/results/
queries-latest-quick.json`, `…-full.json`); when both exist this module writes the
"Scaling" section of BENCHMARKS.md from them (between `<!-- scaling:start -->` and
`<!-- scaling:end -->`). The two runs are separate, so a ratio mixes the data's growth with
whatever else the machine did in each; their load averages are printed beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import replace_section
from bench.run import RESULTS, ROOT

MARK_START = "<!-- scaling:start -->"
MARK_END = "<!-- scaling:end -->"


def latest(mode: str) -> Path:
    return RESULTS / f"queries-latest-{mode}.json"


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:,.1f}"


def _growth(small: float | None, large: float | None) -> str:
    if not small or large is None:
        return ""
    return f"{large / small:,.1f}×"


def _rows(label: str, small: float | None, large: float | None, unit: str = "") -> str:
    return f"| {label} | {_ms(small)}{unit} | {_ms(large)}{unit} | {_growth(small, large)} |"


def render(quick: dict[str, Any], full: dict[str, Any]) -> str:
    """The Scaling section from a quick and a full run of bench.queries."""
    qe, fe = quick["dataset"]["events"], full["dataset"]["events"]
    lines = [
        MARK_START,
        "",
        "## Scaling: from 1M to 10M events",
        "",
        f"The quick run ({quick['started_at']}, {qe:,} events, {quick['dataset']['users']:,}"
        f" users, load average {quick['machine']['load_average_at_start']} at its start) and"
        f" the full run ({full['started_at']}, {fe:,} events, {full['dataset']['users']:,}"
        f" users, load average {full['machine']['load_average_at_start']}) of"
        " `bench.queries`, same generator and seed, same 90-day questions ending on the data"
        f" set's last day. The data grows {fe / qe:,.1f}×; *growth* is the 10M figure over"
        " the 1M one (for a rate, below 1× means it fell as the data grew).",
        "",
        "### Write side (events/s)",
        "",
        "| figure | 1M | 10M | growth |",
        "|---|---|---|---|",
        _rows(
            "ingest through Track",
            quick["load"]["ingest_events_per_s"],
            full["load"]["ingest_events_per_s"],
        ),
        _rows(
            "projection through the full pipeline",
            quick["load"]["pipeline_events_per_s"],
            full["load"]["pipeline_events_per_s"],
        ),
    ]
    for service in ("metrics", "experiments"):
        q = quick.get("rebuild", {}).get(service)
        f = full.get("rebuild", {}).get(service)
        if q or f:
            lines.append(
                _rows(
                    f"rebuild of {service} (replay of the whole log)",
                    q["events_per_s"] if q else None,
                    f["events_per_s"] if f else None,
                )
            )
    qb = sum(t["bytes"] for t in quick.get("read_model_tables", {}).values())
    fb = sum(t["bytes"] for t in full.get("read_model_tables", {}).values())
    if qb and fb:
        lines.append(_rows("metrics read models on disk (MiB)", qb / 2**20, fb / 2**20))
    lines += [
        "",
        "### Queries through gRPC (p50 / p95 ms)",
        "",
        "| request | 1M p50 | 10M p50 | growth | 1M p95 | 10M p95 | growth |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, f in full.get("northstar", {}).items():
        q = quick.get("northstar", {}).get(label)
        if not q or "p50_ms" not in q or "p50_ms" not in f:
            continue
        lines.append(
            f"| {label} | {_ms(q['p50_ms'])} | {_ms(f['p50_ms'])}"
            f" | {_growth(q['p50_ms'], f['p50_ms'])} | {_ms(q['p95_ms'])}"
            f" | {_ms(f['p95_ms'])} | {_growth(q['p95_ms'], f['p95_ms'])} |"
        )
    lines += [
        "",
        "### The same questions in the baselines (p50 ms)",
        "",
        "| question | Northstar 1M | 10M | DuckDB 1M | 10M | raw PostgreSQL 1M | 10M |",
        "|---|---|---|---|---|---|---|",
    ]
    for question, f in full.get("baselines", {}).items():
        q = quick.get("baselines", {}).get(question)
        if not q:
            continue
        case = f["rpc_case"]
        nq = quick.get("northstar", {}).get(case, {}).get("p50_ms")
        nf = full.get("northstar", {}).get(case, {}).get("p50_ms")
        lines.append(
            f"| {question} | {_ms(nq)} | {_ms(nf)} | {_ms(q['duckdb']['p50_ms'])}"
            f" | {_ms(f['duckdb']['p50_ms'])} | {_ms(q['postgres']['p50_ms'])}"
            f" | {_ms(f['postgres']['p50_ms'])} |"
        )
    lines += [
        "",
        "How ingest scales with a second ingest process is in the ingest part of this file"
        " (*Scale-out*), measured in one run of `bench.run`.",
        "",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def write() -> bool:
    """Rewrite the Scaling section when both runs exist; False when one is missing."""
    quick, full = latest("quick"), latest("full")
    if not (quick.exists() and full.exists()):
        return False
    section = render(json.loads(quick.read_text()), json.loads(full.read_text()))
    replace_section(ROOT / "BENCHMARKS.md", MARK_START, MARK_END, section)
    return True
