"""Logs, traces and metrics, configured once per process and failing safe.

Logs are structlog JSON lines carrying `trace_id`/`span_id` of the current
OpenTelemetry span and whatever the request bound (request id, tenant, method).
Traces: spans are always created (so ids exist in logs); they are exported
over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and the exporter is
installed. Metrics: a Prometheus endpoint on `METRICS_ADDRESS` when set. A
broken exporter degrades telemetry, never the service.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

_configured = False


def _add_trace_ids(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def configure_logging(*, service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route structlog (and stdlib logging) to one JSON line per event on stderr."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")


def configure_telemetry(*, service: str, metrics_address: str = "") -> None:
    """Install the tracer and meter providers once; never raises."""
    global _configured  # noqa: PLW0603 - one process-wide configuration
    if _configured:
        return
    _configured = True
    log = structlog.get_logger("northstar.telemetry")
    resource = Resource.create({"service.name": f"northstar-{service}"})
    try:
        provider = TracerProvider(resource=resource)
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            _add_otlp_exporter(provider)
        trace.set_tracer_provider(provider)
    except Exception as e:
        log.warning("tracing disabled", error=repr(e))
    try:
        readers: list[Any] = []
        if metrics_address:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415
            from prometheus_client import start_http_server  # noqa: PLC0415

            host, _, port = metrics_address.rpartition(":")
            start_http_server(int(port), addr=host or "0.0.0.0")  # noqa: S104
            readers.append(PrometheusMetricReader())
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    except Exception as e:
        log.warning("metrics endpoint disabled", error=repr(e), address=metrics_address)


def _add_otlp_exporter(provider: TracerProvider) -> None:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]  # noqa: PLC0415 - optional
            OTLPSpanExporter,
        )
    except ImportError:
        structlog.get_logger("northstar.telemetry").warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT set but the OTLP exporter is not installed"
        )
        return
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))


def tracer(name: str) -> trace.Tracer:
    """A tracer for a module."""
    return trace.get_tracer(name)


def meter(name: str) -> metrics.Meter:
    """A meter for a module."""
    return metrics.get_meter(name)
