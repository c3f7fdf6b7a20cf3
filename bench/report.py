"""Render a results dict into BENCHMARKS.md (preamble kept from bench/preamble.md) and plots."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PREAMBLE = Path(__file__).with_name("preamble.md")
PLOTS = Path("docs/bench")

TARGET_INGEST = 100_000
TARGET_P99_MS = 50.0
TARGET_PROJECTOR = 100_000
TARGET_FRESHNESS_P99_MS = 1_000.0


def _n(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f}"


def _cores(c: dict[str, float], keys: tuple[str, ...]) -> list[str]:
    out = []
    for k in keys:
        if k not in c:
            out.append("–")
            continue
        flag = " ⚠" if k == "other" and c[k] > 0.25 else ""
        out.append(f"{c[k]:.2f}{flag}")
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def plots(results: dict[str, Any], root: Path) -> list[str]:
    """The latency-vs-load curve and the Track throughput grid as PNGs; returns their paths."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

    plain = FuncFormatter(lambda v, _: f"{v:g}")

    out_dir = root / PLOTS
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    points = results.get("latency", {}).get("points", [])
    if points:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        x = [p["offered_events_per_s"] / 1000 for p in points]
        for key, style in (("p50", "o-"), ("p99", "s-"), ("p999", "^--")):
            ax.plot(x, [p["latency_ms"][key] for p in points], style, label=key)
        ax.axhline(TARGET_P99_MS, color="grey", linestyle=":", label="p99 target (50 ms)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel("offered load, thousand events/s (Track, 500-event batches, open loop)")
        ax.set_ylabel("latency, ms (log scale)")
        peak = results["latency"]["max_events_per_s"]
        ax.set_title(f"Track latency vs load (measured max {peak / 1000:,.1f}k events/s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / "latency_vs_load.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path.relative_to(root)))
    cells = results.get("track", [])
    if cells:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for batch in sorted({c["batch"] for c in cells}):
            row = [c for c in cells if c["batch"] == batch]
            ax.plot(
                [c["clients"] for c in row],
                [c["events_per_s"] / 1000 for c in row],
                "o-",
                label=f"batch {batch}",
            )
        ax.axhline(TARGET_INGEST / 1000, color="grey", linestyle=":", label="target (100k)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel("concurrent clients (each a stream of Track calls)")
        ax.set_ylabel("thousand events/s (log scale)")
        ax.set_title("Track throughput")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / "track_throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path.relative_to(root)))
    return written


def _profile_lines(title: str, p: dict[str, Any]) -> list[str]:
    lines = [f"#### {title}", ""]
    if not p or p.get("error"):
        return [*lines, f"Profiling failed: {p.get('error', 'no data')}", ""]
    busy = 100 * (p.get("busy_fraction") or 0)
    who = (
        "its threads were busy (summed over threads)"
        if "native" in p.get("tool", "")
        else "its threads were busy (almost all of it the event loop's thread)"
    )
    seconds = p.get("seconds")
    lines.append(
        f"{p['tool']}; {p.get('samples') or '–'} samples over"
        f" {f'{seconds:.1f}' if seconds else '–'} s at {p.get('rate_hz', '–')} Hz: {who}"
        f" {busy:.0f}% of the time. Throughput while profiled (profiler overhead included):"
        f" {_n(p.get('events_per_s_under_profiler'))} events/s."
    )
    lines.append("")
    unit = "samples" if p.get("samples") is not None else "seconds"
    lines.append("Own time by package (or northstar module):")
    lines.append("")
    lines += _table(
        ["package", unit, "%"], [[f"`{k}`", f"{v}", f"{s}"] for k, v, s in p["packages"][:10]]
    )
    lines += ["", "Top lines by own time (C called from a line counts as the line's):", ""]
    lines += _table(["line", unit, "%"], [[f"`{k}`", f"{v}", f"{s}"] for k, v, s in p["own"][:12]])
    lines += ["", "Top functions by inclusive time (event-loop frames left out):", ""]
    lines += _table(
        ["function", unit, "%"],
        [[f"`{k}`", f"{v}", f"{s}"] for k, v, s in _merge_native(p["inclusive"])[:12]],
    )
    return [*lines, ""]


def _merge_native(rows: list[Any]) -> list[Any]:
    """Native frames without symbols (`0x7f… (lib.so)`): one row per library (the largest)."""
    merged: dict[str, Any] = {}
    for k, v, s in rows:
        m = re.match(r"^0x[0-9a-f]+ \((.*)\)$", k)
        key = f"[native code of {m.group(1)}]" if m else k
        if key not in merged or merged[key][1] < v:
            merged[key] = (key, v, s)
    return sorted(merged.values(), key=lambda r: r[1], reverse=True)


def estimate_full_seconds(r: dict[str, Any]) -> float:
    """What the full run takes on this machine, from this run's own timings."""
    if r["mode"] == "full":
        return float(r["wall_seconds"])
    cells = 3 * 4 + 4 + 5  # Track grid, TrackStream, latency points
    per_cell = 10 + 2 + 1.2 + 1.0  # measured, warm-up, start lead, purge and quiet check
    projector = r.get("projector", {}).get("events_per_s") or 30_000
    preload = r.get("preload", {}).get("events_per_s") or 30_000
    data = 2_000_000 / preload + 2 * 2_000_000 / projector + 2_000_000 / 300_000
    return cells * per_cell + data + 5 * 2 + 20 + 30


def render(r: dict[str, Any], plot_paths: list[str]) -> str:
    m = r["machine"]
    lines: list[str] = []
    preamble = PREAMBLE.read_text().rstrip() if PREAMBLE.exists() else "# Benchmarks"
    lines += [preamble, "", "<!-- Everything below is written by `python -m bench.run`. -->", ""]
    lines += [
        f"## The last run: {r['mode']} mode, {r['started_at']}",
        "",
        f"It took {r['wall_seconds']:.0f} s of wall time. `make bench` (the full mode: 10 s"
        " cells after 2 s of warm-up, 64 clients as well, 2 M events replayed) takes about"
        f" {estimate_full_seconds(r) / 60:.0f} minutes on this machine"
        f"{'' if r['mode'] == 'full' else ' (estimated from this run; more when other work'}"
        f"{'' if r['mode'] == 'full' else ' makes it wait or re-measure)'};"
        " `make bench-quick` (3 s cells, 200k events replayed) under 5.",
        "",
        "### Machine",
        "",
    ]
    lines += _table(
        ["", ""],
        [
            ["CPU", f"{m['cpu_model']} ({m['cpu_mhz']} MHz)"],
            ["cores", str(m["cores"])],
            ["memory", f"{m['memory_gib']} GiB"],
            ["kernel", m["kernel"]],
            ["Python", m["python"]],
            ["NATS server", m["nats_server"]],
            ["PostgreSQL", m["postgresql"]],
            [
                "libraries",
                f"grpcio {m['grpcio']}, nats-py {m['nats_py']}, asyncpg {m['asyncpg']},"
                f" protobuf {m['protobuf']}",
            ],
            ["partitions", str(r["settings"]["partitions"])],
        ],
    )
    lines += ["", *_method(r), ""]

    # Targets.
    peak = max((c["events_per_s"] for c in r["track"] if c["batch"] == 500), default=0)
    lat_points = r.get("latency", {}).get("points", [])
    half = min(lat_points, key=lambda p: abs(p["offered_events_per_s"] - peak / 2), default=None)
    fixed = next((p for p in lat_points if p["label"].startswith("50k")), None)
    proj = r.get("projector", {})
    rows = [
        [
            "Ingest, Track, 500-event batches, best of the client counts",
            "≥ 100,000 events/s",
            f"{_n(peak)} events/s",
            _verdict(peak >= TARGET_INGEST),
        ]
    ]
    if half is not None:
        p99 = half["latency_ms"]["p99"]
        rows.append(
            [
                f"Track p99 at half the measured max ({_n(half['offered_events_per_s'])}"
                " events/s offered)",
                "< 50 ms",
                f"{_ms(p99)} ms",
                _verdict(p99 is not None and p99 < TARGET_P99_MS),
            ]
        )
    if fixed is not None:
        p99 = fixed["latency_ms"]["p99"]
        rows.append(
            [
                "Track p99 at 50,000 events/s (half the ingest target)",
                "< 50 ms",
                f"{_ms(p99)} ms",
                _verdict(p99 is not None and p99 < TARGET_P99_MS),
            ]
        )
    else:
        rows.append(
            [
                "Track p99 at 50,000 events/s (half the ingest target)",
                "< 50 ms",
                "not measurable: above the measured max",
                "**FAIL**",
            ]
        )
    if proj:
        rows.append(
            [
                "Projector replay into ActiveUsers",
                "≥ 100,000 events/s",
                f"{_n(proj['events_per_s'])} events/s"
                f" (steady {_n(proj.get('events_per_s_steady'))})",
                _verdict(proj["events_per_s"] >= TARGET_PROJECTOR),
            ]
        )
    fresh = r.get("freshness", {}).get("points", [])
    fresh_half = next((p for p in fresh if p["label"].startswith("50%")), None)
    if fresh_half is not None:
        p99 = fresh_half["freshness_ms"]["p99"]
        lost = fresh_half["probes_not_counted"]
        rows.append(
            [
                "Freshness p99 (Track acknowledged → counted by ActiveUsers) at 50% of the max"
                f" ({_n(fresh_half['offered_events_per_s'])} events/s offered)",
                "< 1 s",
                f"{_ms(p99)} ms" + (f", {lost} probes not counted in time" if lost else ""),
                _verdict(p99 is not None and p99 < TARGET_FRESHNESS_P99_MS and not lost),
            ]
        )
    lines += ["### Targets", ""]
    lines += _table(["target", "goal", "measured", ""], rows)
    lines += [
        "",
        "Below target is acceptable only when measured, profiled and explained: the"
        " explanation is in *Where the time goes* below and in the preamble.",
        "",
    ]

    # Log unit.
    raw = r.get("raw_publish")
    if raw:
        per = raw["per_message"]
        one, many = raw["1"], raw[str(per)]
        lines += ["### The log's unit (raw JetStream publish, no service)", ""]
        lines += _table(
            ["events per message", "messages/s", "events/s", "bytes/message"],
            [
                [
                    k,
                    _n(v["messages_per_s"]),
                    _n(v["events_per_s"]),
                    _n(v["bytes_per_message"]),
                ]
                for k, v in (("1", one), (str(per), many))
            ],
        )
        lines += [
            "",
            f"Ratio in this run: {many['events_per_s'] / one['events_per_s']:.1f}× more events/s"
            f" with {per}-event messages (a 500-event request over"
            f" {r['settings']['partitions']} partitions) than with one event per message.",
            "",
        ]

    # Track grid.
    keys = ("ingest", "nats", "clients", "other", "machine_busy")
    lines += ["### Track throughput (closed loop)", ""]
    rows = []
    for c in r["track"]:
        lat = c["latency_ms"]
        rows.append(
            [
                str(c["batch"]),
                str(c["clients"]),
                _n(c["events_per_s"]),
                f"{c['calls_per_s']:,.0f}",
                _ms(lat["p50"]),
                _ms(lat["p99"]),
                *_cores(c["cpu_cores"], keys),
                _errors(c),
            ]
        )
    lines += _table(
        [
            "batch",
            "clients",
            "events/s",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "ingest cores",
            "NATS cores",
            "client cores",
            "other cores",
            "machine busy",
            "errors",
        ],
        rows,
    )
    so = r.get("scale_out")
    if so:
        single = next((c for c in r["track"] if c["batch"] == 500 and c["clients"] == 16), None)
        c = so["cpu_cores"]
        ratio = (
            f" ({so['events_per_s'] / single['events_per_s']:.2f}× the single process"
            " with the same clients)"
            if single and single["events_per_s"]
            else ""
        )
        lines += [
            "",
            f"Scale-out, same run: two ingest processes (two replicas, clients split between"
            f" them), 500-event batches, 16 clients: **{_n(so['events_per_s'])} events/s**"
            f"{ratio}, p99 {_ms(so['latency_ms']['p99'])} ms; ingest {c.get('ingest', 0):.2f}"
            f" cores, NATS {c.get('nats', 0):.2f}, clients {c.get('clients', 0):.2f},"
            f" other {c.get('other', 0):.2f}, machine {c.get('machine_busy', 0):.2f} of"
            f" {r['machine']['cores']}.",
        ]
    if plot_paths:
        lines += ["", *(f"![{Path(p).stem}]({p})" for p in plot_paths if "throughput" in p)]
    lines += [""]

    # TrackStream.
    if r.get("track_stream"):
        lines += ["### TrackStream throughput (gateway path, 100-event batches)", ""]
        rows = []
        for c in r["track_stream"]:
            lat = c["latency_ms"]
            rows.append(
                [
                    str(c["clients"]),
                    str(c.get("window", "")),
                    _n(c["events_per_s"]),
                    _ms(lat["p50"]),
                    _ms(lat["p99"]),
                    *_cores(c["cpu_cores"], keys),
                    _errors(c),
                ]
            )
        lines += _table(
            [
                "streams",
                "in flight per stream",
                "events/s",
                "p50 ms",
                "p99 ms",
                "ingest cores",
                "NATS cores",
                "client cores",
                "other cores",
                "machine busy",
                "errors",
            ],
            rows,
        )
        lines += [""]

    # Latency.
    if lat_points:
        lines += [
            "### Track latency vs load (open loop, 500-event batches)",
            "",
            f"Measured max for 500-event batches: {_n(r['latency']['max_events_per_s'])}"
            " events/s (the best cell above).",
            "",
        ]
        rows = []
        for p in lat_points:
            lat = p["latency_ms"]
            rows.append(
                [
                    p["label"],
                    _n(p["offered_events_per_s"]),
                    _n(p["events_per_s"]),
                    _ms(lat["p50"]),
                    _ms(lat["p99"]),
                    _ms(lat["p999"]),
                    _ms(lat["max"]),
                    str(lat["samples"]),
                    *_cores(p["cpu_cores"], ("ingest", "other")),
                    _errors(p),
                ]
            )
        lines += _table(
            [
                "point",
                "offered events/s",
                "achieved events/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "requests",
                "ingest cores",
                "other cores",
                "errors",
            ],
            rows,
        )
        lines += ["", *(f"![{Path(p).stem}]({p})" for p in plot_paths if "latency" in p), ""]

    # Freshness.
    if fresh:
        lines += ["### Freshness: Track acknowledged to counted by ActiveUsers", ""]
        lines += [
            "Open-loop load (500-event batches) at a share of the measured max while one probe"
            " at a time sends a single event of a new user, dated on a day no load event"
            " touches, and polls ActiveUsers for that day every 5 ms until it is counted;"
            " ingest and the metrics service (projector and queries in one process) run as in"
            " production.",
            "",
        ]
        lines += _table(
            [
                "point",
                "offered events/s",
                "achieved events/s",
                "freshness p50 ms",
                "p99 ms",
                "max ms",
                "probes",
                "not counted in 30 s",
                "Track p99 ms",
            ],
            [
                [
                    p["label"],
                    _n(p["offered_events_per_s"]),
                    _n(p["achieved_events_per_s"]),
                    _ms(p["freshness_ms"]["p50"]),
                    _ms(p["freshness_ms"]["p99"]),
                    _ms(p["freshness_ms"]["max"]),
                    str(p["freshness_ms"]["samples"]),
                    str(p["probes_not_counted"]),
                    _ms(p["track_p99_ms"]),
                ]
                for p in fresh
            ],
        )
        lines += [""]

    # Projector.
    if proj:
        pre = r["preload"]
        rc = r["raw_consume"]
        lines += ["### Projector replay (ActiveUsers read model)", ""]
        lines += _table(
            ["step", "events", "seconds", "events/s", "notes"],
            [
                [
                    "preload through Track",
                    _n(pre["events"]),
                    f"{pre['seconds']:.1f}",
                    _n(pre["events_per_s"]),
                    f"{pre['messages']:,} log messages, {pre['bytes'] / 2**20:,.0f} MiB",
                ],
                [
                    "raw consume baseline (pull fetch + decode, no database)",
                    _n(rc["events"]),
                    f"{rc['seconds']:.2f}",
                    _n(rc["events_per_s"]),
                    f"{rc['client_cpu_seconds']:.2f} s CPU in the consumer",
                ],
                [
                    "metrics projector, start to checkpoint = last sequence",
                    _n(proj["events"]),
                    f"{proj['seconds_total']:.2f}",
                    _n(proj["events_per_s"]),
                    f"{proj['seconds_to_serving']:.2f} s to SERVING (migrations included);"
                    f" steady {_n(proj.get('events_per_s_steady'))} events/s",
                ],
            ],
        )
        ratio = proj["events_per_s"] / rc["events_per_s"] if rc["events_per_s"] else 0
        c = proj["cpu_cores"]
        lines += [
            "",
            f"The projector runs at {ratio:.2f}× the raw consume rate measured in the same"
            f" run: projection into PostgreSQL costs {100 * (1 - ratio):.0f}% of the log's"
            f" read rate. CPU while replaying: metrics {c.get('metrics', 0):.2f} cores,"
            f" PostgreSQL {c.get('postgres', 0):.2f}, NATS {c.get('nats', 0):.2f},"
            f" other processes {c.get('other', 0):.2f}.",
            "",
        ]
        check = proj.get("active_users_check")
        if check:
            lines += [
                f"Sanity check after the replay: ActiveUsers({check['date']}) answered"
                f" DAU {check['dau']:,}, MAU {check['mau']:,}, MAO {check['mao']:,} at"
                f" log_position {check['log_position']:,} (the stream's last sequence).",
                "",
            ]

    # Where the time goes.
    lines += ["### Where the time goes", ""]
    lines += _profile_lines(
        "Ingest under load (Track, 500-event batches, 16 clients)", r.get("profile_ingest", {})
    )
    if r.get("profile_ingest_batch1"):
        lines += _profile_lines(
            "Ingest under load (Track, 1-event batches, 16 clients): the per-call cost",
            r["profile_ingest_batch1"],
        )
    lines += _profile_lines("Projector replay", r.get("profile_projector", {}))
    lines += [
        "### Reproduce",
        "",
        "```",
        "make bench          # full run, writes this file",
        "make bench-quick    # the short smoke run",
        "uv run python -m bench.run --render-only bench/results/latest.json",
        "```",
        "",
        "Raw results (JSON, every latency summary and CPU split) are kept in"
        " `bench/results/` (not committed). NATS_URL and DATABASE_URL, when set, point the"
        " run at existing servers instead of the ones it starts.",
        "",
    ]
    return "\n".join(lines)


def _errors(c: dict[str, Any]) -> str:
    parts = [f"{k} {v}" for k, v in c.get("errors", {}).items()]
    if c.get("rejected"):
        parts.append(f"rejected {c['rejected']}")
    if c.get("dropped"):
        parts.append(f"not sent (client overload) {c['dropped']}")
    return ", ".join(parts) or "0"


def _method(r: dict[str, Any]) -> list[str]:
    plan = r["plan"]
    return [
        "### Method",
        "",
        "- NATS (JetStream, file storage, one server) and PostgreSQL are started by the run"
        " in a temporary directory (PostgreSQL durable: fsync on), unless NATS_URL or"
        " DATABASE_URL are set. Ingest (`python -m northstar_ingest`) and metrics"
        " (`python -m northstar_metrics`) run as their own processes with a fresh namespace,"
        " `INGEST_RATE_LIMIT=0`, `LOG_LEVEL=WARNING`, production code unchanged.",
        f"- Load comes from {plan['client_procs']} separate worker processes (asyncio,"
        " grpcio aio, one HTTP/2 connection per logical client), never from the service's"
        " process. Requests are serialized once per job from templates and each call"
        " patches a counter into the event ids, so every event has a unique client id while"
        " the client spends little CPU; the CPU each party used is reported per cell"
        " (psutil), because on 2 cores the client's share is capacity the server does not"
        " get.",
        "- Events: 10 event names, user_id from 10,000 users, org_id from 500 orgs, a"
        " session id, timestamp = now, 3-5 properties as `properties_json`, a client event"
        " id. No `sent_at` (no skew correction).",
        f"- Track grid: closed loop, each client a stream of calls, for"
        f" {plan['cell_seconds']:g} s after {plan['warmup_seconds']:g} s of warm-up per cell;"
        " the stream is purged between cells. Latency is per call, client side.",
        "- TrackStream: one bidirectional stream per client with"
        f" {plan['stream_window']} requests in flight (the server pipelines 4).",
        "- Latency vs load: open loop, Poisson arrivals at a fixed rate (25/50/75/90% of the"
        " best 500-event cell, and 50k events/s when below the max); latency runs from the"
        " scheduled send time, so a stalled server is not hidden (no coordinated omission).",
        f"- Projector: {plan['preload_events']:,} events preloaded through Track, then the"
        " metrics service started on a fresh schema; the time runs from process start until"
        " its checkpoint (`projection_checkpoints`) equals the stream's last sequence,"
        " polled every 100 ms. The baseline in the same run: a plain nats-py pull consumer"
        " fetching 2,000 messages at a time and decoding every EventBatch, without PostgreSQL.",
        "- Profiles: py-spy attached to the running service process (`--nonblocking`),"
        " during separate runs, so the measured figures carry no profiler overhead.",
        "- The machine is shared: before each cell the run waits for it to be nearly idle"
        " (up to 20 s in the full mode, 5 s in the quick one); in the full mode a cell in"
        " which other processes took more than 0.25 cores is measured again. The column"
        " *other cores* shows what other processes took during the measurement; ⚠ marks"
        " more than 0.25 cores.",
    ]


QUERIES_START = "<!-- queries:start -->"
QUERIES_END = "<!-- queries:end -->"


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """Put `section` (which begins with the `start` mark and ends with the `end` one) in
    place of the marked part of `path`, or after the rest when the file has none; keep
    everything else."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    first, last = text.find(start), text.find(end)
    if 0 <= first < last:
        text = text[:first] + section.rstrip("\n") + text[last + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def write(results: dict[str, Any], root: Path) -> None:
    """Write BENCHMARKS.md and the plots under docs/bench/."""
    paths = plots(results, root)
    target = root / "BENCHMARKS.md"
    text = render(results, paths)
    # The experiments, alerts and query benchmarks (bench/experiments.py, bench/alerts.py,
    # bench/queries.py) own their marked sections: keep them.
    if target.exists():
        old = target.read_text()
        for begin, finish in (
            ("<!-- experiments:start -->", "<!-- experiments:end -->"),
            ("<!-- alerts:start -->", "<!-- alerts:end -->"),
            (QUERIES_START, QUERIES_END),
            ("<!-- scaling:start -->", "<!-- scaling:end -->"),
        ):
            start, end = old.find(begin), old.find(finish)
            if 0 <= start < end:
                text = text.rstrip("\n") + "\n\n" + old[start : end + len(finish)] + "\n"
    target.write_text(text)
