"""Sync and async clients of ingest, metrics, experiments, alerts and reports: auth, TLS,
deadlines, retries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from northstar.alerts.v1 import alerts_pb2, alerts_pb2_grpc
from northstar.experiments.v1 import experiments_pb2, experiments_pb2_grpc
from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar.metrics.v1 import (
    activation_pb2,
    funnel_pb2,
    kpis_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
    quality_pb2,
    retention_pb2,
    revenue_pb2,
    series_pb2,
    trend_pb2,
)
from northstar.reports.v1 import reports_pb2, reports_pb2_grpc
from northstar_client.config import ClientConfig
from northstar_client.events import Event, new_event_id
from northstar_client.retry import call_async, call_sync

__all__ = [
    "MAX_ASSIGN_BATCH",
    "MAX_TRACK_EVENTS",
    "AlertsClient",
    "AsyncAlertsClient",
    "AsyncExperimentsClient",
    "AsyncIngestClient",
    "AsyncMetricsClient",
    "AsyncReportsClient",
    "ExperimentsClient",
    "IngestClient",
    "MetricsClient",
    "ReportsClient",
    "prepare_track_request",
]

MAX_TRACK_EVENTS = 1_000
MAX_ASSIGN_BATCH = 1_000
_USER_AGENT = "northstar-client/0.1.0"
Req = TypeVar("Req")
Resp = TypeVar("Resp")
AnyEvent = Event | ingest_pb2.Event


def _options() -> list[tuple[str, Any]]:
    return [
        ("grpc.primary_user_agent", _USER_AGENT),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 30_000),
    ]


def _credentials(config: ClientConfig) -> grpc.ChannelCredentials:
    roots = config.ca_file.read_bytes() if config.ca_file else None
    return grpc.ssl_channel_credentials(root_certificates=roots)


def _sync_channel(config: ClientConfig, endpoint: str) -> grpc.Channel:
    if config.tls:
        return grpc.secure_channel(endpoint, _credentials(config), options=_options())
    return grpc.insecure_channel(endpoint, options=_options())


def _async_channel(config: ClientConfig, endpoint: str) -> grpc.aio.Channel:
    if config.tls:
        return grpc.aio.secure_channel(endpoint, _credentials(config), options=_options())
    return grpc.aio.insecure_channel(endpoint, options=_options())


def _metadata(config: ClientConfig) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {config.require_api_key()}"),)


def prepare_track_request(
    events: Sequence[AnyEvent], *, historical_import: bool = False
) -> ingest_pb2.TrackRequest:
    """A TrackRequest whose every event has an id, so that retries are idempotent."""
    if not 1 <= len(events) <= MAX_TRACK_EVENTS:
        raise ValueError(
            f"a Track request carries 1 to {MAX_TRACK_EVENTS} events, got {len(events)}"
        )
    request = ingest_pb2.TrackRequest(historical_import=historical_import)
    for e in events:
        message = request.events.add()
        message.CopyFrom(e.to_proto() if isinstance(e, Event) else e)
        if not message.event_id:
            # Fixed before the first attempt: a retry re-sends the same id and is
            # answered DUPLICATE instead of being counted twice.
            message.event_id = new_event_id()
    return request


def _stamp(request: ingest_pb2.TrackRequest) -> ingest_pb2.TrackRequest:
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    request.sent_at.CopyFrom(now)
    return request


class _SyncBase:
    def __init__(self, config: ClientConfig, endpoint: str) -> None:
        self.config = config
        self._channel = _sync_channel(config, endpoint)

    def _call(
        self,
        name: str,
        rpc: Callable[..., Resp],
        request: Any,
        timeout: float | None,
        *,
        retry: bool = True,
        prepare: Callable[[Any], Any] | None = None,
    ) -> Resp:
        metadata = _metadata(self.config)

        def attempt(deadline: float) -> Resp:
            body = prepare(request) if prepare else request
            return rpc(body, timeout=deadline, metadata=metadata)

        return call_sync(
            name,
            attempt,
            policy=self.config.retry,
            timeout=timeout or self.config.timeout,
            retry=retry,
        )

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncBase:
    def __init__(self, config: ClientConfig, endpoint: str) -> None:
        self.config = config
        self._channel = _async_channel(config, endpoint)

    async def _call(
        self,
        name: str,
        rpc: Callable[..., Awaitable[Resp]],
        request: Any,
        timeout: float | None,
        *,
        retry: bool = True,
        prepare: Callable[[Any], Any] | None = None,
    ) -> Resp:
        metadata = _metadata(self.config)

        async def attempt(deadline: float) -> Resp:
            body = prepare(request) if prepare else request
            return await rpc(body, timeout=deadline, metadata=metadata)

        return await call_async(
            name,
            attempt,
            policy=self.config.retry,
            timeout=timeout or self.config.timeout,
            retry=retry,
        )

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_S = TypeVar("_S", bound=_SyncBase)
_A = TypeVar("_A", bound=_AsyncBase)


class IngestClient(_SyncBase):
    """Blocking client of IngestService."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.ingest_endpoint)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel)

    def track(
        self,
        events: Sequence[AnyEvent],
        *,
        historical_import: bool = False,
        timeout: float | None = None,
    ) -> ingest_pb2.TrackResponse:
        """Append 1 to 1,000 events; retried on UNAVAILABLE / RESOURCE_EXHAUSTED."""
        request = prepare_track_request(events, historical_import=historical_import)
        return self.track_request(request, timeout=timeout)

    def track_request(
        self, request: ingest_pb2.TrackRequest, *, timeout: float | None = None
    ) -> ingest_pb2.TrackResponse:
        """Send a prepared request (every event with an id), with retries."""
        return self._call("Track", self._stub.Track, request, timeout, prepare=_stamp)

    def erase_user(
        self, user_id: str, *, timeout: float | None = None
    ) -> ingest_pb2.EraseUserResponse:
        """Erase a user (admin key); retried, since a repeat is the same erasure."""
        request = ingest_pb2.EraseUserRequest(user_id=user_id)
        return self._call("EraseUser", self._stub.EraseUser, request, timeout)


class AsyncIngestClient(_AsyncBase):
    """asyncio client of IngestService."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.ingest_endpoint)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel)

    async def track(
        self,
        events: Sequence[AnyEvent],
        *,
        historical_import: bool = False,
        timeout: float | None = None,
    ) -> ingest_pb2.TrackResponse:
        """Append 1 to 1,000 events; retried on UNAVAILABLE / RESOURCE_EXHAUSTED."""
        request = prepare_track_request(events, historical_import=historical_import)
        return await self.track_request(request, timeout=timeout)

    async def track_request(
        self, request: ingest_pb2.TrackRequest, *, timeout: float | None = None
    ) -> ingest_pb2.TrackResponse:
        """Send a prepared request (every event with an id), with retries."""
        return await self._call("Track", self._stub.Track, request, timeout, prepare=_stamp)

    async def erase_user(
        self, user_id: str, *, timeout: float | None = None
    ) -> ingest_pb2.EraseUserResponse:
        """Erase a user (admin key); retried, since a repeat is the same erasure."""
        request = ingest_pb2.EraseUserRequest(user_id=user_id)
        return await self._call("EraseUser", self._stub.EraseUser, request, timeout)


class MetricsClient(_SyncBase):
    """Blocking client of MetricsService: one method per RPC."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.metrics_endpoint)
        self._stub = metrics_pb2_grpc.MetricsServiceStub(self._channel)

    def active_users(
        self, request: metrics_pb2.ActiveUsersRequest, *, timeout: float | None = None
    ) -> metrics_pb2.ActiveUsersResponse:
        """DAU, WAU, MAU, stickiness and MAO per day."""
        return self._call("ActiveUsers", self._stub.ActiveUsers, request, timeout)

    def retention(
        self, request: retention_pb2.RetentionRequest, *, timeout: float | None = None
    ) -> retention_pb2.RetentionResponse:
        """The retention matrix of cohorts by period."""
        return self._call("Retention", self._stub.Retention, request, timeout)

    def retention_trend(
        self, request: retention_pb2.RetentionTrendRequest, *, timeout: float | None = None
    ) -> retention_pb2.RetentionTrendResponse:
        """One retention period over a range of cohorts."""
        return self._call("RetentionTrend", self._stub.RetentionTrend, request, timeout)

    def activation(
        self, request: activation_pb2.ActivationRequest, *, timeout: float | None = None
    ) -> activation_pb2.ActivationResponse:
        """Activation, time to value and paid conversion of a signup range."""
        return self._call("Activation", self._stub.Activation, request, timeout)

    def workflows(
        self, request: activation_pb2.WorkflowsRequest, *, timeout: float | None = None
    ) -> activation_pb2.WorkflowsResponse:
        """Workflow runs, error rate and active workflows per period."""
        return self._call("Workflows", self._stub.Workflows, request, timeout)

    def funnel(
        self, request: funnel_pb2.FunnelRequest, *, timeout: float | None = None
    ) -> funnel_pb2.FunnelResponse:
        """Ordered-step conversion."""
        return self._call("Funnel", self._stub.Funnel, request, timeout)

    def trend(
        self, request: trend_pb2.TrendRequest, *, timeout: float | None = None
    ) -> trend_pb2.TrendResponse:
        """A measure per interval, optionally broken down."""
        return self._call("Trend", self._stub.Trend, request, timeout)

    def revenue(
        self, request: revenue_pb2.RevenueRequest, *, timeout: float | None = None
    ) -> revenue_pb2.RevenueResponse:
        """MRR per day and the monthly revenue movements."""
        return self._call("Revenue", self._stub.Revenue, request, timeout)

    def kpis(
        self, request: kpis_pb2.KpisRequest | None = None, *, timeout: float | None = None
    ) -> kpis_pb2.KpisResponse:
        """Every KPI, the alignment score and the priority actions."""
        return self._call("Kpis", self._stub.Kpis, request or kpis_pb2.KpisRequest(), timeout)

    def get_kpi_config(self, *, timeout: float | None = None) -> kpis_pb2.GetKpiConfigResponse:
        """The KPI configuration and its version."""
        request = kpis_pb2.GetKpiConfigRequest()
        return self._call("GetKpiConfig", self._stub.GetKpiConfig, request, timeout)

    def update_kpi_config(
        self, request: kpis_pb2.UpdateKpiConfigRequest, *, timeout: float | None = None
    ) -> kpis_pb2.UpdateKpiConfigResponse:
        """Change KPI targets; a stale expected_version fails with ABORTED (never retried)."""
        return self._call("UpdateKpiConfig", self._stub.UpdateKpiConfig, request, timeout)

    def anomalies(
        self, request: series_pb2.AnomaliesRequest, *, timeout: float | None = None
    ) -> series_pb2.AnomaliesResponse:
        """Anomalous days of a daily series."""
        return self._call("Anomalies", self._stub.Anomalies, request, timeout)

    def forecast(
        self, request: series_pb2.ForecastRequest, *, timeout: float | None = None
    ) -> series_pb2.ForecastResponse:
        """The next days of a daily series with intervals."""
        return self._call("Forecast", self._stub.Forecast, request, timeout)

    def data_quality(
        self, request: quality_pb2.DataQualityRequest, *, timeout: float | None = None
    ) -> quality_pb2.DataQualityResponse:
        """Data-quality counts and score."""
        return self._call("DataQuality", self._stub.DataQuality, request, timeout)


class AsyncMetricsClient(_AsyncBase):
    """asyncio client of MetricsService: one coroutine per RPC."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.metrics_endpoint)
        self._stub = metrics_pb2_grpc.MetricsServiceStub(self._channel)

    async def active_users(
        self, request: metrics_pb2.ActiveUsersRequest, *, timeout: float | None = None
    ) -> metrics_pb2.ActiveUsersResponse:
        """DAU, WAU, MAU, stickiness and MAO per day."""
        return await self._call("ActiveUsers", self._stub.ActiveUsers, request, timeout)

    async def retention(
        self, request: retention_pb2.RetentionRequest, *, timeout: float | None = None
    ) -> retention_pb2.RetentionResponse:
        """The retention matrix of cohorts by period."""
        return await self._call("Retention", self._stub.Retention, request, timeout)

    async def retention_trend(
        self, request: retention_pb2.RetentionTrendRequest, *, timeout: float | None = None
    ) -> retention_pb2.RetentionTrendResponse:
        """One retention period over a range of cohorts."""
        return await self._call("RetentionTrend", self._stub.RetentionTrend, request, timeout)

    async def activation(
        self, request: activation_pb2.ActivationRequest, *, timeout: float | None = None
    ) -> activation_pb2.ActivationResponse:
        """Activation, time to value and paid conversion of a signup range."""
        return await self._call("Activation", self._stub.Activation, request, timeout)

    async def workflows(
        self, request: activation_pb2.WorkflowsRequest, *, timeout: float | None = None
    ) -> activation_pb2.WorkflowsResponse:
        """Workflow runs, error rate and active workflows per period."""
        return await self._call("Workflows", self._stub.Workflows, request, timeout)

    async def funnel(
        self, request: funnel_pb2.FunnelRequest, *, timeout: float | None = None
    ) -> funnel_pb2.FunnelResponse:
        """Ordered-step conversion."""
        return await self._call("Funnel", self._stub.Funnel, request, timeout)

    async def trend(
        self, request: trend_pb2.TrendRequest, *, timeout: float | None = None
    ) -> trend_pb2.TrendResponse:
        """A measure per interval, optionally broken down."""
        return await self._call("Trend", self._stub.Trend, request, timeout)

    async def revenue(
        self, request: revenue_pb2.RevenueRequest, *, timeout: float | None = None
    ) -> revenue_pb2.RevenueResponse:
        """MRR per day and the monthly revenue movements."""
        return await self._call("Revenue", self._stub.Revenue, request, timeout)

    async def kpis(
        self, request: kpis_pb2.KpisRequest | None = None, *, timeout: float | None = None
    ) -> kpis_pb2.KpisResponse:
        """Every KPI, the alignment score and the priority actions."""
        request = request or kpis_pb2.KpisRequest()
        return await self._call("Kpis", self._stub.Kpis, request, timeout)

    async def get_kpi_config(
        self, *, timeout: float | None = None
    ) -> kpis_pb2.GetKpiConfigResponse:
        """The KPI configuration and its version."""
        request = kpis_pb2.GetKpiConfigRequest()
        return await self._call("GetKpiConfig", self._stub.GetKpiConfig, request, timeout)

    async def update_kpi_config(
        self, request: kpis_pb2.UpdateKpiConfigRequest, *, timeout: float | None = None
    ) -> kpis_pb2.UpdateKpiConfigResponse:
        """Change KPI targets; a stale expected_version fails with ABORTED (never retried)."""
        return await self._call("UpdateKpiConfig", self._stub.UpdateKpiConfig, request, timeout)

    async def anomalies(
        self, request: series_pb2.AnomaliesRequest, *, timeout: float | None = None
    ) -> series_pb2.AnomaliesResponse:
        """Anomalous days of a daily series."""
        return await self._call("Anomalies", self._stub.Anomalies, request, timeout)

    async def forecast(
        self, request: series_pb2.ForecastRequest, *, timeout: float | None = None
    ) -> series_pb2.ForecastResponse:
        """The next days of a daily series with intervals."""
        return await self._call("Forecast", self._stub.Forecast, request, timeout)

    async def data_quality(
        self, request: quality_pb2.DataQualityRequest, *, timeout: float | None = None
    ) -> quality_pb2.DataQualityResponse:
        """Data-quality counts and score."""
        return await self._call("DataQuality", self._stub.DataQuality, request, timeout)


# ----------------------------------------------------------------------------- experiments
#
# Every experiments RPC is retried on the transient codes, and none of them can apply twice:
# a change states the version it was made against, so a retry of a change that was applied
# (its answer lost) fails ABORTED instead of applying again, and a retried create fails
# ALREADY_EXISTS; ABORTED and ALREADY_EXISTS are never retried. An exposure logged by Assign
# gets an event id derived from (experiment, user, idempotency key), fixed before the first
# attempt, so a retry stores it once.


def _experiment_key(key: str) -> experiments_pb2.GetExperimentRequest:
    return experiments_pb2.GetExperimentRequest(key=key)


def _assign_request(
    experiment_key: str, user_id: str, log_exposure: bool, idempotency_key: str | None
) -> experiments_pb2.AssignRequest:
    return experiments_pb2.AssignRequest(
        experiment_key=experiment_key,
        user_id=user_id,
        log_exposure=log_exposure,
        idempotency_key=idempotency_key or "",
    )


def _check_batch(request: experiments_pb2.AssignBatchRequest) -> None:
    if len(request.queries) > MAX_ASSIGN_BATCH:
        raise ValueError(
            f"an AssignBatch request carries at most {MAX_ASSIGN_BATCH} queries,"
            f" got {len(request.queries)}"
        )


class ExperimentsClient(_SyncBase):
    """Blocking client of ExperimentsService: one method per RPC."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.experiments_endpoint)
        self._stub = experiments_pb2_grpc.ExperimentsServiceStub(self._channel)

    def create_experiment(
        self, request: experiments_pb2.CreateExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.CreateExperimentResponse:
        """Define a draft; ALREADY_EXISTS when the key is taken (also for a retried create)."""
        return self._call("CreateExperiment", self._stub.CreateExperiment, request, timeout)

    def update_experiment(
        self, request: experiments_pb2.UpdateExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.UpdateExperimentResponse:
        """Replace the definition; ABORTED on a stale expected_version (never retried)."""
        return self._call("UpdateExperiment", self._stub.UpdateExperiment, request, timeout)

    def start_experiment(
        self, request: experiments_pb2.StartExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.StartExperimentResponse:
        """Move a draft to RUNNING; ABORTED on a stale expected_version."""
        return self._call("StartExperiment", self._stub.StartExperiment, request, timeout)

    def stop_experiment(
        self, request: experiments_pb2.StopExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.StopExperimentResponse:
        """Move a running experiment to STOPPED; ABORTED on a stale expected_version."""
        return self._call("StopExperiment", self._stub.StopExperiment, request, timeout)

    def conclude_experiment(
        self, request: experiments_pb2.ConcludeExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.ConcludeExperimentResponse:
        """Record the winner of a stopped experiment; ABORTED on a stale expected_version."""
        return self._call("ConcludeExperiment", self._stub.ConcludeExperiment, request, timeout)

    def archive_experiment(
        self, request: experiments_pb2.ArchiveExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.ArchiveExperimentResponse:
        """Archive an experiment that is not running; ABORTED on a stale expected_version."""
        return self._call("ArchiveExperiment", self._stub.ArchiveExperiment, request, timeout)

    def get_experiment(
        self, key: str, *, timeout: float | None = None
    ) -> experiments_pb2.GetExperimentResponse:
        """One experiment with its history, from the read model (may lag a change briefly)."""
        return self._call("GetExperiment", self._stub.GetExperiment, _experiment_key(key), timeout)

    def list_experiments(
        self,
        status: experiments_pb2.ExperimentStatus.ValueType = (
            experiments_pb2.EXPERIMENT_STATUS_UNSPECIFIED
        ),
        *,
        timeout: float | None = None,
    ) -> experiments_pb2.ListExperimentsResponse:
        """The tenant's experiments, optionally of one status."""
        request = experiments_pb2.ListExperimentsRequest(status=status)
        return self._call("ListExperiments", self._stub.ListExperiments, request, timeout)

    def assign(
        self,
        experiment_key: str,
        user_id: str,
        *,
        log_exposure: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> experiments_pb2.AssignResponse:
        """One user's variant (deterministic); with log_exposure, the exposure stored once.

        The exposure is stored once per idempotency key; without one, once per
        (experiment, user). Either way a retry re-sends the same key and stores nothing new.
        """
        request = _assign_request(experiment_key, user_id, log_exposure, idempotency_key)
        return self._call("Assign", self._stub.Assign, request, timeout)

    def assign_batch(
        self, request: experiments_pb2.AssignBatchRequest, *, timeout: float | None = None
    ) -> experiments_pb2.AssignBatchResponse:
        """Up to 1,000 assignments, in request order; unknown experiments: not in it."""
        _check_batch(request)
        return self._call("AssignBatch", self._stub.AssignBatch, request, timeout)

    def get_results(
        self, request: experiments_pb2.GetResultsRequest, *, timeout: float | None = None
    ) -> experiments_pb2.GetResultsResponse:
        """The analysis (frequentist or Bayesian, CUPED, sequential) at the projected position."""
        return self._call("GetResults", self._stub.GetResults, request, timeout)


class AsyncExperimentsClient(_AsyncBase):
    """asyncio client of ExperimentsService: one coroutine per RPC."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.experiments_endpoint)
        self._stub = experiments_pb2_grpc.ExperimentsServiceStub(self._channel)

    async def create_experiment(
        self, request: experiments_pb2.CreateExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.CreateExperimentResponse:
        """Define a draft; ALREADY_EXISTS when the key is taken (also for a retried create)."""
        return await self._call("CreateExperiment", self._stub.CreateExperiment, request, timeout)

    async def update_experiment(
        self, request: experiments_pb2.UpdateExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.UpdateExperimentResponse:
        """Replace the definition; ABORTED on a stale expected_version (never retried)."""
        return await self._call("UpdateExperiment", self._stub.UpdateExperiment, request, timeout)

    async def start_experiment(
        self, request: experiments_pb2.StartExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.StartExperimentResponse:
        """Move a draft to RUNNING; ABORTED on a stale expected_version."""
        return await self._call("StartExperiment", self._stub.StartExperiment, request, timeout)

    async def stop_experiment(
        self, request: experiments_pb2.StopExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.StopExperimentResponse:
        """Move a running experiment to STOPPED; ABORTED on a stale expected_version."""
        return await self._call("StopExperiment", self._stub.StopExperiment, request, timeout)

    async def conclude_experiment(
        self, request: experiments_pb2.ConcludeExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.ConcludeExperimentResponse:
        """Record the winner of a stopped experiment; ABORTED on a stale expected_version."""
        return await self._call(
            "ConcludeExperiment", self._stub.ConcludeExperiment, request, timeout
        )

    async def archive_experiment(
        self, request: experiments_pb2.ArchiveExperimentRequest, *, timeout: float | None = None
    ) -> experiments_pb2.ArchiveExperimentResponse:
        """Archive an experiment that is not running; ABORTED on a stale expected_version."""
        return await self._call("ArchiveExperiment", self._stub.ArchiveExperiment, request, timeout)

    async def get_experiment(
        self, key: str, *, timeout: float | None = None
    ) -> experiments_pb2.GetExperimentResponse:
        """One experiment with its history, from the read model (may lag a change briefly)."""
        return await self._call(
            "GetExperiment", self._stub.GetExperiment, _experiment_key(key), timeout
        )

    async def list_experiments(
        self,
        status: experiments_pb2.ExperimentStatus.ValueType = (
            experiments_pb2.EXPERIMENT_STATUS_UNSPECIFIED
        ),
        *,
        timeout: float | None = None,
    ) -> experiments_pb2.ListExperimentsResponse:
        """The tenant's experiments, optionally of one status."""
        request = experiments_pb2.ListExperimentsRequest(status=status)
        return await self._call("ListExperiments", self._stub.ListExperiments, request, timeout)

    async def assign(
        self,
        experiment_key: str,
        user_id: str,
        *,
        log_exposure: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> experiments_pb2.AssignResponse:
        """One user's variant (deterministic); with log_exposure, the exposure stored once.

        The exposure is stored once per idempotency key; without one, once per
        (experiment, user). Either way a retry re-sends the same key and stores nothing new.
        """
        request = _assign_request(experiment_key, user_id, log_exposure, idempotency_key)
        return await self._call("Assign", self._stub.Assign, request, timeout)

    async def assign_batch(
        self, request: experiments_pb2.AssignBatchRequest, *, timeout: float | None = None
    ) -> experiments_pb2.AssignBatchResponse:
        """Up to 1,000 assignments, in request order; unknown experiments: not in it."""
        _check_batch(request)
        return await self._call("AssignBatch", self._stub.AssignBatch, request, timeout)

    async def get_results(
        self, request: experiments_pb2.GetResultsRequest, *, timeout: float | None = None
    ) -> experiments_pb2.GetResultsResponse:
        """The analysis (frequentist or Bayesian, CUPED, sequential) at the projected position."""
        return await self._call("GetResults", self._stub.GetResults, request, timeout)


# ----------------------------------------------------------------------------- alerts
#
# Every alerts RPC is retried on the transient codes, except CreateSilence: the service
# gives each silence a new id, so a retry of a create whose answer was lost would add a
# second silence. The rule commands cannot apply twice: a retried CreateRule fails
# ALREADY_EXISTS, a retried UpdateRule or DeleteRule (stating the version it was made
# against) fails ABORTED, and neither code is retried. Failures common to every method:
# UNAUTHENTICATED (no or a bad key), PERMISSION_DENIED (changes and acknowledgements need
# an `admin` key, reads `read`), INVALID_ARGUMENT with field violations (RpcError.violations),
# DEADLINE_EXCEEDED once the deadline is spent.

_TestTarget = str | alerts_pb2.Rule


def _rule_id(rule_id: str) -> alerts_pb2.GetRuleRequest:
    return alerts_pb2.GetRuleRequest(rule_id=rule_id)


def _test_request(rule: _TestTarget) -> alerts_pb2.TestRuleRequest:
    if isinstance(rule, str):
        return alerts_pb2.TestRuleRequest(rule_id=rule)
    return alerts_pb2.TestRuleRequest(definition=rule)


def _ack_request(
    rule_id: str, severity: alerts_pb2.Severity.ValueType, acknowledged_by: str, comment: str
) -> alerts_pb2.AcknowledgeAlertRequest:
    return alerts_pb2.AcknowledgeAlertRequest(
        rule_id=rule_id, severity=severity, acknowledged_by=acknowledged_by, comment=comment
    )


def _notifications_request(
    rule_id: str, page_size: int, page_token: str
) -> alerts_pb2.ListNotificationsRequest:
    return alerts_pb2.ListNotificationsRequest(
        rule_id=rule_id, page_size=page_size, page_token=page_token
    )


class AlertsClient(_SyncBase):
    """Blocking client of AlertsService: one method per RPC."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.alerts_endpoint)
        self._stub = alerts_pb2_grpc.AlertsServiceStub(self._channel)

    def create_rule(
        self, rule: alerts_pb2.Rule, *, timeout: float | None = None
    ) -> alerts_pb2.CreateRuleResponse:
        """Define a rule; ALREADY_EXISTS when its id was ever used (also for a retried create),
        INVALID_ARGUMENT naming each bad field."""
        request = alerts_pb2.CreateRuleRequest(rule=rule)
        return self._call("CreateRule", self._stub.CreateRule, request, timeout)

    def update_rule(
        self, rule: alerts_pb2.Rule, expected_version: int, *, timeout: float | None = None
    ) -> alerts_pb2.UpdateRuleResponse:
        """Replace the definition of `rule.rule_id`; ABORTED on a stale expected_version (never
        retried), NOT_FOUND for an unknown or deleted rule, INVALID_ARGUMENT for a bad one."""
        request = alerts_pb2.UpdateRuleRequest(rule=rule, expected_version=expected_version)
        return self._call("UpdateRule", self._stub.UpdateRule, request, timeout)

    def delete_rule(
        self, rule_id: str, expected_version: int, *, timeout: float | None = None
    ) -> alerts_pb2.DeleteRuleResponse:
        """End a rule; ABORTED on a stale expected_version, NOT_FOUND for an unknown rule."""
        request = alerts_pb2.DeleteRuleRequest(rule_id=rule_id, expected_version=expected_version)
        return self._call("DeleteRule", self._stub.DeleteRule, request, timeout)

    def get_rule(self, rule_id: str, *, timeout: float | None = None) -> alerts_pb2.GetRuleResponse:
        """One rule and the version to state in its next change; NOT_FOUND when unknown."""
        return self._call("GetRule", self._stub.GetRule, _rule_id(rule_id), timeout)

    def list_rules(self, *, timeout: float | None = None) -> alerts_pb2.ListRulesResponse:
        """The tenant's live rules with their versions, by id."""
        request = alerts_pb2.ListRulesRequest()
        return self._call("ListRules", self._stub.ListRules, request, timeout)

    def list_alerts(
        self, rule_id: str = "", *, timeout: float | None = None
    ) -> alerts_pb2.ListAlertsResponse:
        """The current alert of each live rule (or of `rule_id`) at each of its severities."""
        request = alerts_pb2.ListAlertsRequest(rule_id=rule_id)
        return self._call("ListAlerts", self._stub.ListAlerts, request, timeout)

    def alert_history(
        self, rule_id: str, *, timeout: float | None = None
    ) -> alerts_pb2.AlertHistoryResponse:
        """Every transition and acknowledgement of a rule's alerts, oldest first."""
        request = alerts_pb2.AlertHistoryRequest(rule_id=rule_id)
        return self._call("AlertHistory", self._stub.AlertHistory, request, timeout)

    def acknowledge_alert(
        self,
        rule_id: str,
        severity: alerts_pb2.Severity.ValueType,
        *,
        acknowledged_by: str = "",
        comment: str = "",
        timeout: float | None = None,
    ) -> alerts_pb2.AcknowledgeAlertResponse:
        """Acknowledge a pending or firing alert (by the caller's key unless `acknowledged_by`);
        FAILED_PRECONDITION when the alert is inactive or resolved, NOT_FOUND for an unknown
        rule."""
        request = _ack_request(rule_id, severity, acknowledged_by, comment)
        return self._call("AcknowledgeAlert", self._stub.AcknowledgeAlert, request, timeout)

    def test_rule(
        self, rule: _TestTarget, *, timeout: float | None = None
    ) -> alerts_pb2.TestRuleResponse:
        """Evaluate a stored rule (its id) or an inline definition now, changing nothing.

        NOT_FOUND for an unknown id, INVALID_ARGUMENT for a bad definition; metrics failing
        is not an error of the call but the answer's `error`, with no verdict.
        """
        return self._call("TestRule", self._stub.TestRule, _test_request(rule), timeout)

    def create_silence(
        self, silence: alerts_pb2.Silence, *, timeout: float | None = None
    ) -> alerts_pb2.CreateSilenceResponse:
        """Mute matching alerts' notifications from starts_at (unset: now) until ends_at.

        INVALID_ARGUMENT without matchers, reason or author, or with ends_at not in the
        future and after starts_at. Not retried: a retry could create a second silence.
        """
        request = alerts_pb2.CreateSilenceRequest(silence=silence)
        return self._call("CreateSilence", self._stub.CreateSilence, request, timeout, retry=False)

    def expire_silence(
        self, silence_id: str, *, timeout: float | None = None
    ) -> alerts_pb2.ExpireSilenceResponse:
        """End a silence now; FAILED_PRECONDITION when it already ended, NOT_FOUND if unknown."""
        request = alerts_pb2.ExpireSilenceRequest(silence_id=silence_id)
        return self._call("ExpireSilence", self._stub.ExpireSilence, request, timeout)

    def list_silences(
        self, *, include_expired: bool = False, timeout: float | None = None
    ) -> alerts_pb2.ListSilencesResponse:
        """The tenant's pending and active silences (and ended ones too), newest first."""
        request = alerts_pb2.ListSilencesRequest(include_expired=include_expired)
        return self._call("ListSilences", self._stub.ListSilences, request, timeout)

    def list_notifications(
        self,
        rule_id: str = "",
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> alerts_pb2.ListNotificationsResponse:
        """One page of notifications, newest first, each target's delivery and attempts;
        at most 500 a page; INVALID_ARGUMENT for a negative page_size or a foreign page_token."""
        request = _notifications_request(rule_id, page_size, page_token)
        return self._call("ListNotifications", self._stub.ListNotifications, request, timeout)


class AsyncAlertsClient(_AsyncBase):
    """asyncio client of AlertsService: one coroutine per RPC."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.alerts_endpoint)
        self._stub = alerts_pb2_grpc.AlertsServiceStub(self._channel)

    async def create_rule(
        self, rule: alerts_pb2.Rule, *, timeout: float | None = None
    ) -> alerts_pb2.CreateRuleResponse:
        """Define a rule; ALREADY_EXISTS when its id was ever used (also for a retried create),
        INVALID_ARGUMENT naming each bad field."""
        request = alerts_pb2.CreateRuleRequest(rule=rule)
        return await self._call("CreateRule", self._stub.CreateRule, request, timeout)

    async def update_rule(
        self, rule: alerts_pb2.Rule, expected_version: int, *, timeout: float | None = None
    ) -> alerts_pb2.UpdateRuleResponse:
        """Replace the definition of `rule.rule_id`; ABORTED on a stale expected_version (never
        retried), NOT_FOUND for an unknown or deleted rule, INVALID_ARGUMENT for a bad one."""
        request = alerts_pb2.UpdateRuleRequest(rule=rule, expected_version=expected_version)
        return await self._call("UpdateRule", self._stub.UpdateRule, request, timeout)

    async def delete_rule(
        self, rule_id: str, expected_version: int, *, timeout: float | None = None
    ) -> alerts_pb2.DeleteRuleResponse:
        """End a rule; ABORTED on a stale expected_version, NOT_FOUND for an unknown rule."""
        request = alerts_pb2.DeleteRuleRequest(rule_id=rule_id, expected_version=expected_version)
        return await self._call("DeleteRule", self._stub.DeleteRule, request, timeout)

    async def get_rule(
        self, rule_id: str, *, timeout: float | None = None
    ) -> alerts_pb2.GetRuleResponse:
        """One rule and the version to state in its next change; NOT_FOUND when unknown."""
        return await self._call("GetRule", self._stub.GetRule, _rule_id(rule_id), timeout)

    async def list_rules(self, *, timeout: float | None = None) -> alerts_pb2.ListRulesResponse:
        """The tenant's live rules with their versions, by id."""
        request = alerts_pb2.ListRulesRequest()
        return await self._call("ListRules", self._stub.ListRules, request, timeout)

    async def list_alerts(
        self, rule_id: str = "", *, timeout: float | None = None
    ) -> alerts_pb2.ListAlertsResponse:
        """The current alert of each live rule (or of `rule_id`) at each of its severities."""
        request = alerts_pb2.ListAlertsRequest(rule_id=rule_id)
        return await self._call("ListAlerts", self._stub.ListAlerts, request, timeout)

    async def alert_history(
        self, rule_id: str, *, timeout: float | None = None
    ) -> alerts_pb2.AlertHistoryResponse:
        """Every transition and acknowledgement of a rule's alerts, oldest first."""
        request = alerts_pb2.AlertHistoryRequest(rule_id=rule_id)
        return await self._call("AlertHistory", self._stub.AlertHistory, request, timeout)

    async def acknowledge_alert(
        self,
        rule_id: str,
        severity: alerts_pb2.Severity.ValueType,
        *,
        acknowledged_by: str = "",
        comment: str = "",
        timeout: float | None = None,
    ) -> alerts_pb2.AcknowledgeAlertResponse:
        """Acknowledge a pending or firing alert (by the caller's key unless `acknowledged_by`);
        FAILED_PRECONDITION when the alert is inactive or resolved, NOT_FOUND for an unknown
        rule."""
        request = _ack_request(rule_id, severity, acknowledged_by, comment)
        return await self._call("AcknowledgeAlert", self._stub.AcknowledgeAlert, request, timeout)

    async def test_rule(
        self, rule: _TestTarget, *, timeout: float | None = None
    ) -> alerts_pb2.TestRuleResponse:
        """Evaluate a stored rule (its id) or an inline definition now, changing nothing.

        NOT_FOUND for an unknown id, INVALID_ARGUMENT for a bad definition; metrics failing
        is not an error of the call but the answer's `error`, with no verdict.
        """
        return await self._call("TestRule", self._stub.TestRule, _test_request(rule), timeout)

    async def create_silence(
        self, silence: alerts_pb2.Silence, *, timeout: float | None = None
    ) -> alerts_pb2.CreateSilenceResponse:
        """Mute matching alerts' notifications from starts_at (unset: now) until ends_at.

        INVALID_ARGUMENT without matchers, reason or author, or with ends_at not in the
        future and after starts_at. Not retried: a retry could create a second silence.
        """
        request = alerts_pb2.CreateSilenceRequest(silence=silence)
        return await self._call(
            "CreateSilence", self._stub.CreateSilence, request, timeout, retry=False
        )

    async def expire_silence(
        self, silence_id: str, *, timeout: float | None = None
    ) -> alerts_pb2.ExpireSilenceResponse:
        """End a silence now; FAILED_PRECONDITION when it already ended, NOT_FOUND if unknown."""
        request = alerts_pb2.ExpireSilenceRequest(silence_id=silence_id)
        return await self._call("ExpireSilence", self._stub.ExpireSilence, request, timeout)

    async def list_silences(
        self, *, include_expired: bool = False, timeout: float | None = None
    ) -> alerts_pb2.ListSilencesResponse:
        """The tenant's pending and active silences (and ended ones too), newest first."""
        request = alerts_pb2.ListSilencesRequest(include_expired=include_expired)
        return await self._call("ListSilences", self._stub.ListSilences, request, timeout)

    async def list_notifications(
        self,
        rule_id: str = "",
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> alerts_pb2.ListNotificationsResponse:
        """One page of notifications, newest first, each target's delivery and attempts;
        at most 500 a page; INVALID_ARGUMENT for a negative page_size or a foreign page_token."""
        request = _notifications_request(rule_id, page_size, page_token)
        return await self._call("ListNotifications", self._stub.ListNotifications, request, timeout)


def _generate_request(
    source: str | reports_pb2.Schedule, period_date: str, deliver: bool
) -> reports_pb2.GenerateReportRequest:
    request = reports_pb2.GenerateReportRequest(period_date=period_date, deliver=deliver)
    if isinstance(source, str):
        request.schedule_id = source
    else:
        request.definition.CopyFrom(source)
    return request


def _list_reports_request(
    schedule_id: str, from_date: str, to_date: str, page_size: int, page_token: str
) -> reports_pb2.ListReportsRequest:
    return reports_pb2.ListReportsRequest(
        schedule_id=schedule_id,
        from_date=from_date,
        to_date=to_date,
        page_size=page_size,
        page_token=page_token,
    )


class ReportsClient(_SyncBase):
    """Blocking client of ReportsService: one method per RPC."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.reports_endpoint)
        self._stub = reports_pb2_grpc.ReportsServiceStub(self._channel)

    def create_schedule(
        self, schedule: reports_pb2.Schedule, *, timeout: float | None = None
    ) -> reports_pb2.CreateScheduleResponse:
        """Define a schedule; ALREADY_EXISTS when its id was ever used (also for a retried
        create), INVALID_ARGUMENT naming each bad field."""
        request = reports_pb2.CreateScheduleRequest(schedule=schedule)
        return self._call("CreateSchedule", self._stub.CreateSchedule, request, timeout)

    def update_schedule(
        self, schedule: reports_pb2.Schedule, expected_version: int, *, timeout: float | None = None
    ) -> reports_pb2.UpdateScheduleResponse:
        """Replace the definition of `schedule.schedule_id`; ABORTED on a stale
        expected_version (never retried), NOT_FOUND for an unknown or deleted schedule."""
        request = reports_pb2.UpdateScheduleRequest(
            schedule=schedule, expected_version=expected_version
        )
        return self._call("UpdateSchedule", self._stub.UpdateSchedule, request, timeout)

    def delete_schedule(
        self, schedule_id: str, expected_version: int, *, timeout: float | None = None
    ) -> reports_pb2.DeleteScheduleResponse:
        """End a schedule (its reports stay); ABORTED on a stale expected_version."""
        request = reports_pb2.DeleteScheduleRequest(
            schedule_id=schedule_id, expected_version=expected_version
        )
        return self._call("DeleteSchedule", self._stub.DeleteSchedule, request, timeout)

    def get_schedule(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> reports_pb2.GetScheduleResponse:
        """One schedule, its version, next run and last period; NOT_FOUND when unknown."""
        request = reports_pb2.GetScheduleRequest(schedule_id=schedule_id)
        return self._call("GetSchedule", self._stub.GetSchedule, request, timeout)

    def list_schedules(self, *, timeout: float | None = None) -> reports_pb2.ListSchedulesResponse:
        """The tenant's live schedules, by id."""
        request = reports_pb2.ListSchedulesRequest()
        return self._call("ListSchedules", self._stub.ListSchedules, request, timeout)

    def generate_report(
        self,
        source: str | reports_pb2.Schedule,
        *,
        period_date: str = "",
        deliver: bool = False,
        timeout: float | None = None,
    ) -> reports_pb2.GenerateReportResponse:
        """A new report now, for a stored schedule's id or an inline definition, covering the
        period holding `period_date` (default: the latest ended one). Not retried: each call
        makes a new report."""
        request = _generate_request(source, period_date, deliver)
        return self._call(
            "GenerateReport", self._stub.GenerateReport, request, timeout, retry=False
        )

    def get_report(
        self,
        report_id: str,
        fmt: reports_pb2.Format.ValueType = reports_pb2.FORMAT_JSON,
        *,
        timeout: float | None = None,
    ) -> reports_pb2.GetReportResponse:
        """A stored report and its rendering in `fmt`; NOT_FOUND when unknown."""
        request = reports_pb2.GetReportRequest(report_id=report_id, format=fmt)
        return self._call("GetReport", self._stub.GetReport, request, timeout)

    def list_reports(
        self,
        schedule_id: str = "",
        *,
        from_date: str = "",
        to_date: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> reports_pb2.ListReportsResponse:
        """One page of report summaries, newest period first."""
        request = _list_reports_request(schedule_id, from_date, to_date, page_size, page_token)
        return self._call("ListReports", self._stub.ListReports, request, timeout)


class AsyncReportsClient(_AsyncBase):
    """asyncio client of ReportsService: one coroutine per RPC."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        config = config or ClientConfig.from_env()
        super().__init__(config, config.reports_endpoint)
        self._stub = reports_pb2_grpc.ReportsServiceStub(self._channel)

    async def create_schedule(
        self, schedule: reports_pb2.Schedule, *, timeout: float | None = None
    ) -> reports_pb2.CreateScheduleResponse:
        """Define a schedule (see ReportsClient.create_schedule)."""
        request = reports_pb2.CreateScheduleRequest(schedule=schedule)
        return await self._call("CreateSchedule", self._stub.CreateSchedule, request, timeout)

    async def update_schedule(
        self, schedule: reports_pb2.Schedule, expected_version: int, *, timeout: float | None = None
    ) -> reports_pb2.UpdateScheduleResponse:
        """Replace a schedule's definition (see ReportsClient.update_schedule)."""
        request = reports_pb2.UpdateScheduleRequest(
            schedule=schedule, expected_version=expected_version
        )
        return await self._call("UpdateSchedule", self._stub.UpdateSchedule, request, timeout)

    async def delete_schedule(
        self, schedule_id: str, expected_version: int, *, timeout: float | None = None
    ) -> reports_pb2.DeleteScheduleResponse:
        """End a schedule (see ReportsClient.delete_schedule)."""
        request = reports_pb2.DeleteScheduleRequest(
            schedule_id=schedule_id, expected_version=expected_version
        )
        return await self._call("DeleteSchedule", self._stub.DeleteSchedule, request, timeout)

    async def get_schedule(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> reports_pb2.GetScheduleResponse:
        """One schedule (see ReportsClient.get_schedule)."""
        request = reports_pb2.GetScheduleRequest(schedule_id=schedule_id)
        return await self._call("GetSchedule", self._stub.GetSchedule, request, timeout)

    async def list_schedules(
        self, *, timeout: float | None = None
    ) -> reports_pb2.ListSchedulesResponse:
        """The tenant's live schedules, by id."""
        request = reports_pb2.ListSchedulesRequest()
        return await self._call("ListSchedules", self._stub.ListSchedules, request, timeout)

    async def generate_report(
        self,
        source: str | reports_pb2.Schedule,
        *,
        period_date: str = "",
        deliver: bool = False,
        timeout: float | None = None,
    ) -> reports_pb2.GenerateReportResponse:
        """A new report now (see ReportsClient.generate_report); not retried."""
        request = _generate_request(source, period_date, deliver)
        return await self._call(
            "GenerateReport", self._stub.GenerateReport, request, timeout, retry=False
        )

    async def get_report(
        self,
        report_id: str,
        fmt: reports_pb2.Format.ValueType = reports_pb2.FORMAT_JSON,
        *,
        timeout: float | None = None,
    ) -> reports_pb2.GetReportResponse:
        """A stored report and its rendering (see ReportsClient.get_report)."""
        request = reports_pb2.GetReportRequest(report_id=report_id, format=fmt)
        return await self._call("GetReport", self._stub.GetReport, request, timeout)

    async def list_reports(
        self,
        schedule_id: str = "",
        *,
        from_date: str = "",
        to_date: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> reports_pb2.ListReportsResponse:
        """One page of report summaries, newest period first."""
        request = _list_reports_request(schedule_id, from_date, to_date, page_size, page_token)
        return await self._call("ListReports", self._stub.ListReports, request, timeout)
