"""The AlertsService servicer: proto in, command or query, proto out."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from northstar.alerts.v1 import alerts_pb2 as pb
from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.adapters.rule_store import RuleStore
from northstar_alerts.application.alerts import AlertBook
from northstar_alerts.domain import rule_events as dom
from northstar_alerts.domain.rules import validate
from northstar_alerts.entrypoints.convert import (
    ack_text,
    alert_to_proto,
    history_entry_to_proto,
    required_id,
    rule_from_proto,
    rule_to_proto,
    severity_from_proto,
    trial_to_proto,
)
from northstar_runtime.auth import Scope
from northstar_runtime.errors import DeadlineExceeded, NotFound
from northstar_runtime.grpc_server import check_deadline, current_principal

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AlertsService"].full_name
_ADMIN = {"CreateRule", "UpdateRule", "DeleteRule", "AcknowledgeAlert"}
SCOPES = {
    f"/{SERVICE_NAME}/{m.name}": Scope.ADMIN if m.name in _ADMIN else Scope.READ
    for m in pb.DESCRIPTOR.services_by_name["AlertsService"].methods
}


class AlertsServicer(alerts_pb2_grpc.AlertsServiceServicer):
    """Rule commands append domain events with optimistic concurrency; reads fold the log."""

    def __init__(self, store: RuleStore, book: AlertBook) -> None:
        self._store = store
        self._book = book

    async def CreateRule(  # noqa: N802 - gRPC method name
        self, request: pb.CreateRuleRequest, context: Context
    ) -> pb.CreateRuleResponse:
        """Create a rule."""
        who = current_principal()
        rule = rule_from_proto(request.rule, who.tenant)
        state, _ = await self._store.load(who.tenant, rule.rule_id)
        event = dom.decide_create(state, rule, who.key_id)
        return pb.CreateRuleResponse(version=await self._store.append(who.tenant, event, 0))

    async def UpdateRule(  # noqa: N802 - gRPC method name
        self, request: pb.UpdateRuleRequest, context: Context
    ) -> pb.UpdateRuleResponse:
        """Replace a rule's definition at the stated version."""
        who = current_principal()
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
