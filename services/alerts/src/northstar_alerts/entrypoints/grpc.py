"""The AlertsService servicer: proto in, command or query, proto out."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from northstar.alerts.v1 import alerts_pb2 as pb
from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.adapters.delivery_store import DeliveryStore
from northstar_alerts.adapters.rule_store import RuleStore
from northstar_alerts.adapters.silence_store import SilenceStore
from northstar_alerts.application.alerts import AlertBook
from northstar_alerts.domain import rule_events as dom
from northstar_alerts.domain import silences
from northstar_alerts.domain.rules import validate
from northstar_alerts.entrypoints.convert import (
    ack_text,
    alert_to_proto,
    history_entry_to_proto,
    notification_to_proto,
    request_fields,
    required_id,
    rule_from_proto,
    rule_to_proto,
    severity_from_proto,
    silence_from_proto,
    silence_to_proto,
    trial_to_proto,
)
from northstar_runtime.auth import Scope
from northstar_runtime.errors import DeadlineExceeded, FieldViolation, InvalidArgument, NotFound
from northstar_runtime.grpc_server import check_deadline, current_principal

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AlertsService"].full_name
_ADMIN = {
    "CreateRule",
    "UpdateRule",
    "DeleteRule",
    "AcknowledgeAlert",
    "CreateSilence",
    "ExpireSilence",
}
_SILENCE_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
SCOPES = {
    f"/{SERVICE_NAME}/{m.name}": Scope.ADMIN if m.name in _ADMIN else Scope.READ
    for m in pb.DESCRIPTOR.services_by_name["AlertsService"].methods
}


class AlertsServicer(alerts_pb2_grpc.AlertsServiceServicer):
    """Rule commands append domain events with optimistic concurrency; reads fold the log."""

    def __init__(
        self,
        store: RuleStore,
        book: AlertBook,
        silences: SilenceStore,
        deliveries: DeliveryStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._book = book
        self._silences = silences
        self._deliveries = deliveries
        self._clock = clock

    async def CreateRule(  # noqa: N802 - gRPC method name
        self, request: pb.CreateRuleRequest, context: Context
    ) -> pb.CreateRuleResponse:
        """Create a rule."""
        who = current_principal()
        with request_fields(request.rule, "rule"):
            rule = rule_from_proto(request.rule, who.tenant)
            state, _ = await self._store.load(who.tenant, rule.rule_id)
            event = dom.decide_create(state, rule, who.key_id)
        return pb.CreateRuleResponse(version=await self._store.append(who.tenant, event, 0))

    async def UpdateRule(  # noqa: N802 - gRPC method name
        self, request: pb.UpdateRuleRequest, context: Context
    ) -> pb.UpdateRuleResponse:
        """Replace a rule's definition at the stated version."""
        who = current_principal()
        with request_fields(request.rule, "rule"):
            rule = rule_from_proto(request.rule, who.tenant)
            state, _ = await self._store.load(who.tenant, rule.rule_id)
            event = dom.decide_update(state, rule, who.key_id)
        version = await self._store.append(who.tenant, event, request.expected_version)
        return pb.UpdateRuleResponse(version=version)

    async def DeleteRule(  # noqa: N802 - gRPC method name
        self, request: pb.DeleteRuleRequest, context: Context
    ) -> pb.DeleteRuleResponse:
        """Delete a rule at the stated version."""
        who = current_principal()
        state, _ = await self._store.load(who.tenant, request.rule_id)
        event = dom.decide_delete(state, request.rule_id, who.key_id)
        version = await self._store.append(who.tenant, event, request.expected_version)
        return pb.DeleteRuleResponse(version=version)

    async def _live(self, tenant: str, rule_id: str) -> dom.RuleState | None:
        state, _ = await self._store.load(tenant, rule_id)
        return None if state is None or state.deleted else state

    async def GetRule(  # noqa: N802 - gRPC method name
        self, request: pb.GetRuleRequest, context: Context
    ) -> pb.GetRuleResponse:
        """One live rule."""
        state = await self._live(current_principal().tenant, request.rule_id)
        if state is None:
            raise NotFound(
                f"alert rule {request.rule_id!r} does not exist", reason="RULE_NOT_FOUND"
            )
        return pb.GetRuleResponse(rule=rule_to_proto(state.rule), version=state.version)

    async def ListRules(  # noqa: N802 - gRPC method name
        self, request: pb.ListRulesRequest, context: Context
    ) -> pb.ListRulesResponse:
        """The tenant's live rules, by id."""
        tenant = current_principal().tenant
        out = pb.ListRulesResponse()
        for rule_id in await self._store.rule_ids(tenant):
            state = await self._live(tenant, rule_id)
            if state is not None:
                out.rules.append(
                    pb.GetRuleResponse(rule=rule_to_proto(state.rule), version=state.version)
                )
        return out

    async def CreateSilence(  # noqa: N802 - gRPC method name
        self, request: pb.CreateSilenceRequest, context: Context
    ) -> pb.CreateSilenceResponse:
        """Create a silence with a new id."""
        who = current_principal()
        now = self._clock()
        silence = silence_from_proto(request.silence, uuid.uuid4().hex, now)
        event = silences.decide_create(silence, now, who.key_id)
        version = await self._silences.append(who.tenant, event, 0)
        state = silences.SilenceState(silence, version)
        return pb.CreateSilenceResponse(silence=silence_to_proto(state, now))

    async def ExpireSilence(  # noqa: N802 - gRPC method name
        self, request: pb.ExpireSilenceRequest, context: Context
    ) -> pb.ExpireSilenceResponse:
        """End a silence now."""
        who = current_principal()
        if not _SILENCE_ID.match(request.silence_id):
            raise InvalidArgument(
                "silence_id: not a silence id",
                violations=[FieldViolation("silence_id", "32 lower-case hex digits")],
            )
        state, _ = await self._silences.load(who.tenant, request.silence_id)
        now = self._clock()
        event = silences.decide_expire(state, request.silence_id, now, who.key_id)
        assert state is not None  # decide_expire raised NotFound otherwise
        version = await self._silences.append(who.tenant, event, state.version)
        expired = silences.evolve(state, event, version)
        assert expired is not None
        return pb.ExpireSilenceResponse(silence=silence_to_proto(expired, now))

    async def ListSilences(  # noqa: N802 - gRPC method name
        self, request: pb.ListSilencesRequest, context: Context
    ) -> pb.ListSilencesResponse:
        """The tenant's silences, newest start first; ended ones only when asked."""
        now = self._clock()
        out = pb.ListSilencesResponse()
        for state in await self._silences.all(current_principal().tenant):
            if request.include_expired or silences.status_at(state.silence, now) != silences.ENDED:
                out.silences.append(silence_to_proto(state, now))
        return out

    async def ListNotifications(  # noqa: N802 - gRPC method name
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        """A page of the tenant's notifications with their deliveries, newest first."""
        violations = []
        if len(request.rule_id) > 256 or "\x00" in request.rule_id:
            violations.append(FieldViolation("rule_id", "not a rule id"))
        if request.page_size < 0:
            violations.append(FieldViolation("page_size", "must not be negative"))
        token = request.page_token
        if token and not (token.isascii() and token.isdigit() and 0 < len(token) <= 18):
            violations.append(FieldViolation("page_token", "not a token of this list"))
        if violations:
            raise InvalidArgument("invalid page", violations=violations)
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        found = await self._deliveries.notifications(
            current_principal().tenant,
            rule_id=request.rule_id,
            limit=size + 1,
            before=int(token) if token else None,
        )
        page = found[:size]
        more = len(found) > size
        return pb.ListNotificationsResponse(
            notifications=[notification_to_proto(n) for n in page],
            next_page_token=str(page[-1].notification_id) if more else "",
        )

    async def ListAlerts(  # noqa: N802 - gRPC method name
        self, request: pb.ListAlertsRequest, context: Context
    ) -> pb.ListAlertsResponse:
        """The current state of the tenant's alerts."""
        rule_id = required_id(request.rule_id) if request.rule_id else ""
        views = await self._book.alerts(current_principal().tenant, rule_id)
        return pb.ListAlertsResponse(alerts=[alert_to_proto(v) for v in views])

    async def AlertHistory(  # noqa: N802 - gRPC method name
        self, request: pb.AlertHistoryRequest, context: Context
    ) -> pb.AlertHistoryResponse:
        """A rule's alert events, oldest first."""
        rule_id = required_id(request.rule_id)
        events = await self._book.history(current_principal().tenant, rule_id)
        return pb.AlertHistoryResponse(entries=[history_entry_to_proto(e) for e in events])

    async def AcknowledgeAlert(  # noqa: N802 - gRPC method name
        self, request: pb.AcknowledgeAlertRequest, context: Context
    ) -> pb.AcknowledgeAlertResponse:
        """Acknowledge a pending or firing alert."""
        who = current_principal()
        rule_id = required_id(request.rule_id)
        severity = severity_from_proto(request.severity)
        by = ack_text(request.acknowledged_by, "acknowledged_by") or who.key_id
        comment = ack_text(request.comment, "comment")
        view = await self._book.acknowledge(who.tenant, rule_id, severity, who=by, comment=comment)
        return pb.AcknowledgeAlertResponse(alert=alert_to_proto(view))

    async def TestRule(  # noqa: N802 - gRPC method name
        self, request: pb.TestRuleRequest, context: Context
    ) -> pb.TestRuleResponse:
        """Evaluate a stored or inline rule now, changing nothing."""
        tenant = current_principal().tenant
        if request.WhichOneof("rule") == "definition":
            with request_fields(request.definition, "definition"):
                rule = rule_from_proto(request.definition, tenant)
                validate(rule)
        else:
            rule = await self._book.stored_rule(tenant, required_id(request.rule_id))
        try:
            trial = await asyncio.wait_for(self._book.trial(rule), timeout=check_deadline())
        except TimeoutError as e:
            raise DeadlineExceeded(
                "metrics did not answer within the deadline", reason="DEADLINE_EXCEEDED"
            ) from e
        return trial_to_proto(trial)
