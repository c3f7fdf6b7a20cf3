"""The ExperimentsService servicer: proto in, command or query, proto out."""

from __future__ import annotations

import hashlib
import time
import zlib
from typing import Any

import grpc
import orjson

from northstar.experiments.v1 import experiments_pb2 as pb
from northstar.experiments.v1 import experiments_pb2_grpc
from northstar.log.v1 import log_pb2
from northstar_experiments.adapters.experiment_store import ExperimentStore
from northstar_experiments.adapters.projections import EXPOSURE_EVENT
from northstar_experiments.adapters.read_model import ReadModel
from northstar_experiments.domain import experiment as dom
from northstar_experiments.domain.assignment import assign_many
from northstar_experiments.domain.results import KEEP_RUNNING, SHIP, STOP_GUARDRAIL, analyse
from northstar_experiments.entrypoints.convert import (
    STATUS_DOMAIN,
    definition,
    experiment_proto,
)
from northstar_runtime.auth import Scope
from northstar_runtime.codec import encode_batch
from northstar_runtime.errors import (
    Aborted,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from northstar_runtime.grpc_server import current_principal, time_remaining
from northstar_runtime.log import LogClient, LogError, OutgoingMessage

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExperimentsService"].full_name
_ADMIN = {
    "CreateExperiment",
    "UpdateExperiment",
    "StartExperiment",
    "StopExperiment",
    "ConcludeExperiment",
    "ArchiveExperiment",
}
_INGEST = {"Assign", "AssignBatch"}
SCOPES = {
    f"/{SERVICE_NAME}/{m.name}": Scope.ADMIN
    if m.name in _ADMIN
    else Scope.INGEST
    if m.name in _INGEST
    else Scope.READ
    for m in pb.DESCRIPTOR.services_by_name["ExperimentsService"].methods
}
MAX_BATCH = 1_000
_DECISIONS = {
    SHIP: pb.DECISION_KIND_SHIP,
    KEEP_RUNNING: pb.DECISION_KIND_KEEP_RUNNING,
    STOP_GUARDRAIL: pb.DECISION_KIND_STOP_GUARDRAIL,
}


def _now_us() -> int:
    return time.time_ns() // 1000


def exposure_event_id(experiment: str, user_id: str, idempotency_key: str) -> str:
    """The exposure's event_id: the same call (experiment, user, key) always gets the same id."""
    digest = hashlib.sha256(f"{experiment}\x1f{user_id}\x1f{idempotency_key}".encode()).hexdigest()
    return f"exposure-{digest[:48]}"


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field}: {description}",
        reason="INVALID_ARGUMENT",
        violations=[FieldViolation(field, description)],
    )


class ExperimentsServicer(experiments_pb2_grpc.ExperimentsServiceServicer):
    """Experiment commands (to the log), queries (from the read model), assignment, results."""

    def __init__(
        self, *, store: ExperimentStore, read_model: ReadModel, log: LogClient, partitions: int
    ) -> None:
        self._store = store
        self._read = read_model
        self._log = log
        self._partitions = partitions

    # --- commands -------------------------------------------------------------------

    async def _change(
        self, key: str, expected_version: int, decide: Any, *, create: bool = False
    ) -> pb.Experiment:
        principal = current_principal()
        dom.validate_key(key)
        state, history = await self._store.load(principal.tenant, key)
        current = state.version if state is not None else 0
        if state is not None and current != expected_version and not create:
            raise Aborted(
                f"experiment {key!r} is at version {current}, not {expected_version}",
                reason="STALE_VERSION",
            )
        event = decide(state, _now_us(), principal.key_id)
        version = await self._store.append(principal.tenant, event, current)
        new = dom.evolve(state, event, version)
        return experiment_proto(new, [*history, (version, event)])

    async def CreateExperiment(  # noqa: N802 - gRPC method name
        self, request: pb.CreateExperimentRequest, context: Context
    ) -> pb.CreateExperimentResponse:
        """Append ExperimentCreated at version 0."""
        d = definition(request.definition)
        exp = await self._change(
            request.key,
            0,
            lambda s, at, actor: dom.decide_create(s, request.key, d, at, actor),
            create=True,
        )
        return pb.CreateExperimentResponse(experiment=exp)

    async def UpdateExperiment(  # noqa: N802 - gRPC method name
        self, request: pb.UpdateExperimentRequest, context: Context
    ) -> pb.UpdateExperimentResponse:
        """Append ExperimentUpdated against the stated version."""
        d = definition(request.definition)
        exp = await self._change(
            request.key,
            request.expected_version,
            lambda s, at, actor: dom.decide_update(s, request.key, d, at, actor),
        )
        return pb.UpdateExperimentResponse(experiment=exp)

    async def StartExperiment(  # noqa: N802 - gRPC method name
        self, request: pb.StartExperimentRequest, context: Context
    ) -> pb.StartExperimentResponse:
        """Append ExperimentStarted against the stated version."""
        exp = await self._change(
            request.key,
            request.expected_version,
            lambda s, at, actor: dom.decide_start(s, request.key, at, actor),
        )
        return pb.StartExperimentResponse(experiment=exp)

    async def StopExperiment(  # noqa: N802 - gRPC method name
        self, request: pb.StopExperimentRequest, context: Context
    ) -> pb.StopExperimentResponse:
        """Append ExperimentStopped against the stated version."""
        exp = await self._change(
            request.key,
            request.expected_version,
            lambda s, at, actor: dom.decide_stop(s, request.key, at, actor),
        )
        return pb.StopExperimentResponse(experiment=exp)

    async def ConcludeExperiment(  # noqa: N802 - gRPC method name
        self, request: pb.ConcludeExperimentRequest, context: Context
    ) -> pb.ConcludeExperimentResponse:
        """Append ExperimentConcluded against the stated version."""
        exp = await self._change(
            request.key,
            request.expected_version,
            lambda s, at, actor: dom.decide_conclude(
                s, request.key, winner=request.winner, reason=request.reason, at_us=at, actor=actor
            ),
        )
        return pb.ConcludeExperimentResponse(experiment=exp)

    async def ArchiveExperiment(  # noqa: N802 - gRPC method name
        self, request: pb.ArchiveExperimentRequest, context: Context
    ) -> pb.ArchiveExperimentResponse:
        """Append ExperimentArchived against the stated version."""
        exp = await self._change(
            request.key,
            request.expected_version,
            lambda s, at, actor: dom.decide_archive(s, request.key, at, actor),
        )
        return pb.ArchiveExperimentResponse(experiment=exp)

    # --- queries --------------------------------------------------------------------

    async def _get(
        self, key: str, field_name: str = "key"
    ) -> tuple[dom.Experiment, list[tuple[int, dom.ExperimentEvent]]]:
        # A key no experiment can have is the client's mistake, not a lookup to try.
        dom.validate_key(key, field_name)
        found = await self._read.get(current_principal().tenant, key)
        if found is None:
            raise NotFound(
                f"experiment {key!r} does not exist",
                reason="EXPERIMENT_NOT_FOUND",
                resource_type="experiment",
                resource_name=key,
            )
        return found

    async def GetExperiment(  # noqa: N802 - gRPC method name
        self, request: pb.GetExperimentRequest, context: Context
    ) -> pb.GetExperimentResponse:
        """One experiment from the read model, with its history."""
        state, history = await self._get(request.key)
        return pb.GetExperimentResponse(experiment=experiment_proto(state, history))

    async def ListExperiments(  # noqa: N802 - gRPC method name
        self, request: pb.ListExperimentsRequest, context: Context
    ) -> pb.ListExperimentsResponse:
        """The tenant's experiments, optionally of one status."""
        if request.status and request.status not in STATUS_DOMAIN:
            raise _invalid("status", "must be one of the ExperimentStatus values")
        status = STATUS_DOMAIN.get(request.status)
        found = await self._read.list(current_principal().tenant, status=status)
        return pb.ListExperimentsResponse(experiments=[experiment_proto(s, h) for s, h in found])

    # --- assignment -----------------------------------------------------------------

    async def _assign(
        self,
        queries: list[tuple[str, str, str]],
        log_exposure: bool,
        *,
        strict: bool,
        into: pb.AssignBatchResponse,
    ) -> None:
        tenant = current_principal().tenant
        for i, (key, user, _idem) in enumerate(queries):
            where = f"queries[{i}]" if not strict else ""
            if not key:
                raise _invalid(f"{where}.experiment_key".lstrip("."), "must be set")
            dom.validate_key(key, f"{where}.experiment_key".lstrip("."))
            if not 1 <= len(user) <= 200 or "\x00" in user:
                raise _invalid(f"{where}.user_id".lstrip("."), "1-200 characters")
        keys = sorted({q[0] for q in queries})
        experiments = {s.key: s for s, _h in await self._read.list(tenant, keys=keys)}
        if strict and queries[0][0] not in experiments:
            raise NotFound(
                f"experiment {queries[0][0]!r} does not exist",
                reason="EXPERIMENT_NOT_FOUND",
                resource_type="experiment",
                resource_name=queries[0][0],
            )
        # Hash each running experiment's users in one vectorised pass (bit-exact with
        # `assign`), then build the answers in request order.
        by_key: dict[str, list[int]] = {}
        for i, (key, _user, _idem) in enumerate(queries):
            s = experiments.get(key)
            if s is not None and s.status == dom.RUNNING:
                by_key.setdefault(key, []).append(i)
        hashed: dict[int, tuple[int, float]] = {}
        for key, positions in by_key.items():
            d = experiments[key].definition
            indexes, hashes = assign_many(
                experiments[key].seed,
                [queries[i][1] for i in positions],
                [v.weight for v in d.variants],
                d.coverage,
            )
            hashed.update(zip(positions, zip(indexes, hashes, strict=True), strict=True))
        # Answers are added to the response in place: no copy of a thousand messages.
        out = into.assignments
        messages: list[OutgoingMessage] = []
        now = _now_us()
        for i, (key, user, idem) in enumerate(queries):
            found = hashed.get(i)
            if found is None:
                out.add(experiment_key=key, user_id=user, variant_index=-1)
                continue
            index, n = found
            if index < 0:
                out.add(experiment_key=key, user_id=user, variant_index=-1, hash_value=n)
                continue
            variant = experiments[key].definition.variants[index].key
            a = out.add(
                experiment_key=key,
                user_id=user,
                variant_index=index,
                hash_value=n,
                in_experiment=True,
                variant_key=variant,
            )
            if log_exposure:
                a.exposure_event_id = exposure_event_id(key, user, idem)
                messages.append(
                    self._exposure(tenant, a.exposure_event_id, key, variant, user, now)
                )
        if messages:
            try:
                await self._log.publish_many(messages, timeout=time_remaining(5.0))
            except LogError as e:
                raise Unavailable("the log is unavailable", reason="LOG_UNAVAILABLE") from e

    def _exposure(  # noqa: PLR0917 - one exposure's fields
        self, tenant: str, event_id: str, key: str, variant: str, user: str, now: int
    ) -> OutgoingMessage:
        # The same partition function as ingest's: crc32(user_id) % partitions.
        partition = zlib.crc32(user.encode()) % self._partitions
        event = log_pb2.StoredEvent(
            event_id=event_id,
            event=EXPOSURE_EVENT,
            user_id=user,
            timestamp_us=now,
            original_timestamp_us=now,
            received_at_us=now,
            properties_json=orjson.dumps({"experiment": key, "variant": variant}),
        )
        payload, headers = encode_batch(tenant, partition, [event])
        return OutgoingMessage(
            self._log.topology.events_subject(tenant, partition),
            payload,
            msg_id=f"{tenant}:{event_id}",
            headers=headers,
        )

    async def Assign(  # noqa: N802 - gRPC method name
        self, request: pb.AssignRequest, context: Context
    ) -> pb.AssignResponse:
        """One user's variant; with log_exposure, its exposure appended once per key."""
        holder = pb.AssignBatchResponse()
        await self._assign(
            [(request.experiment_key, request.user_id, request.idempotency_key)],
            request.log_exposure,
            strict=True,
            into=holder,
        )
        return pb.AssignResponse(assignment=holder.assignments[0])

    async def AssignBatch(  # noqa: N802 - gRPC method name
        self, request: pb.AssignBatchRequest, context: Context
    ) -> pb.AssignBatchResponse:
        """Up to 1,000 assignments; unknown experiments answer "not in experiment"."""
        if len(request.queries) > MAX_BATCH:
            raise _invalid("queries", f"at most {MAX_BATCH} per request")
        queries = [(q.experiment_key, q.user_id, q.idempotency_key) for q in request.queries]
        if not queries:
            return pb.AssignBatchResponse()
        response = pb.AssignBatchResponse()
        await self._assign(queries, request.log_exposure, strict=False, into=response)
        return response

    # --- results --------------------------------------------------------------------

    async def GetResults(  # noqa: N802 - gRPC method name
        self, request: pb.GetResultsRequest, context: Context
    ) -> pb.GetResultsResponse:
        """The analysis at the projected log position, from sufficient statistics."""
        state, _h = await self._get(request.experiment_key, "experiment_key")
        bayes = request.engine == pb.STATS_ENGINE_BAYESIAN
        if request.sequential and bayes:
            raise _invalid("sequential", "sequential testing applies to the frequentist engine")
        tenant = current_principal().tenant
        position = await self._read.position()
        computed = _now_us()
        start = state.analysis_start_us
        end = state.stopped_at_us or computed
        if request.HasField("as_of_us"):
            end = min(end, request.as_of_us)
        if start == 0:
            start = end + 1  # never started: nobody is in the analysis
        d = state.definition
        roles = [(m, True) for m in d.goal_metrics] + [(m, False) for m in d.guardrail_metrics]
        # The running sums answer when they cover exactly [start, end]; a past as_of before
        # the latest counted timestamp (or a definition not yet rebuilt) takes the exact
        # slower path over the stored per-user rows.
        fast = await self._read.aggregated(tenant, state, end)
        if fast is not None:
            population = fast.population
            metrics = [(m, goal, fast.moments[i]) for i, (m, goal) in enumerate(roles)]
        else:
            population = await self._read.population(tenant, state, start, end)
            metrics = [
                (m, goal, await self._read.metric_moments(tenant, state, m, start, end))
                for m, goal in roles
            ]
        users = [population.users[v.key] for v in d.variants]
        analysis = analyse(
            d.variants,
            users,
            metrics,
            bayes=bayes,
            cuped=request.cuped,
            sequential=request.sequential,
        )
        response = pb.GetResultsResponse(
            experiment_key=state.key,
            analysis_start_us=start,
            analysis_end_us=end,
            log_position=position,
            engine=pb.STATS_ENGINE_BAYESIAN if bayes else pb.STATS_ENGINE_FREQUENTIST,
            srm=pb.SampleRatioCheck(
                users=users,
                weights=[v.weight for v in d.variants],
                p_value=analysis.srm_p_value,
                mismatch=analysis.srm_mismatch,
            ),
            multiple_exposures=population.multiple_exposures,
            unknown_variant_exposures=population.unknown_variant_exposures,
            computed_at_us=computed,
        )
        for o in analysis.metrics:
            mr = response.metrics.add(
                metric=o.metric.name,
                role=pb.METRIC_ROLE_GOAL if o.goal else pb.METRIC_ROLE_GUARDRAIL,
                cuped_theta=o.theta,
            )
            for i, vo in enumerate(o.variants):
                post = vo.moments.post
                vr = mr.variants.add(
                    variant_key=vo.key,
                    users=post.n,
                    sum=post.total,
                    sum_squares=post.total_squares,
                    mean=post.mean,
                    stddev=post.variance**0.5 if post.variance > 0 else 0.0,
                    control=i == 0,
                    users_needed=vo.users_needed,
                )
                c = vo.comparison
                if c is not None:
                    vr.lift, vr.ci_lower, vr.ci_upper = c.lift, c.ci_lower, c.ci_upper
                    vr.p_value = c.p_value
                    vr.chance_to_win = c.chance_to_win
                    vr.risk_control, vr.risk_variant = c.risk_control, c.risk_variant
                    vr.error_message = c.error
                if vo.adjusted_p_value is not None:
                    vr.adjusted_p_value = vo.adjusted_p_value
        dec = analysis.decision
        response.decision.CopyFrom(
            pb.Decision(
                kind=_DECISIONS[dec.kind],
                variant_key=dec.variant,
                metric=dec.metric,
                reason=dec.reason,
                users_needed=dec.users_needed,
            )
        )
        return response
