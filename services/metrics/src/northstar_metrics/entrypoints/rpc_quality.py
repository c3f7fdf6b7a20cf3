"""The quality RPCs of MetricsService: proto in, query, proto out."""

from __future__ import annotations

import time
from typing import Any

import grpc

from northstar.metrics.v1 import quality_pb2
from northstar_metrics.adapters.quality_store import QualityStore
from northstar_metrics.domain import quality
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import date_range
from northstar_runtime.grpc_server import current_principal

_ISSUES = {
    quality.Issue.REJECTED: quality_pb2.QUALITY_ISSUE_REJECTED,
    quality.Issue.MISSING_FIELDS: quality_pb2.QUALITY_ISSUE_MISSING_FIELDS,
    quality.Issue.ID_CONFLICTS: quality_pb2.QUALITY_ISSUE_ID_CONFLICTS,
    quality.Issue.DUPLICATES: quality_pb2.QUALITY_ISSUE_DUPLICATES,
    quality.Issue.CLOCK_SKEW: quality_pb2.QUALITY_ISSUE_CLOCK_SKEW,
    quality.Issue.ORPHAN_ACTIVITY: quality_pb2.QUALITY_ISSUE_ORPHAN_ACTIVITY,
    quality.Issue.SUSPECTED_BOTS: quality_pb2.QUALITY_ISSUE_SUSPECTED_BOTS,
}


class QualityRpcs:
    """RPC methods mixed into MetricsServicer."""

    deps: MetricsDeps

    async def DataQuality(  # noqa: N802 - gRPC method name
        self, request: quality_pb2.DataQualityRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> quality_pb2.DataQualityResponse:
        """Data-quality counts, penalties and score of the events received in a period."""
        first, last = date_range(request.from_date, request.to_date)
        tenant = current_principal().tenant
        facts = await QualityStore(self.deps.pool).period(tenant, first, last)
        now_us = time.time_ns() // 1_000
        rejections = quality.tally_rejections(facts.requests)
        incomplete = facts.missing_fields
        bots = quality.suspected_bots(facts.heavy_users)
        counts = quality.QualityCounts(
            accepted=facts.accepted,
            duplicates=facts.duplicates + facts.ingest_duplicates,
            rejected=rejections.total,
            id_conflicts=facts.id_conflicts,
            missing_fields=sum(m.events for m in incomplete),
            active_users=facts.active_users,
            orphan_activity=facts.orphan_users,
            clock_skew=facts.accepted_skewed + rejections.skewed,
            suspected_bots=len(bots),
        )
        response = quality_pb2.DataQualityResponse(
            received=counts.received,
            accepted=counts.accepted,
            duplicates=counts.duplicates,
            rejected=counts.rejected,
            id_conflicts=counts.id_conflicts,
            missing_fields=counts.missing_fields,
            active_users=counts.active_users,
            orphan_activity=counts.orphan_activity,
            clock_skew=counts.clock_skew,
            suspected_bots=counts.suspected_bots,
            log_position=facts.log_position,
            domain_log_position=facts.domain_log_position,
        )
        for field, rule, count in rejections.reasons():
            response.rejection_reasons.add(field=field, rule=rule, count=count)
        for m in incomplete:
            item = response.missing_fields_by_event.add(event_name=m.event, events=m.events)
            for name, n in m.fields.items():
                item.fields.add(field=name, events=n)
        for bot in bots[: quality.MAX_LISTED_BOTS]:
            response.suspected_bot_users.add(
                user_id=bot.user_id, max_events_in_window=bot.max_events_in_window
            )
        if facts.newest_received_at_us is not None:
            response.freshness_seconds = (now_us - facts.newest_received_at_us) / 1e6
        score = quality.score(counts)
        if score is not None:
            response.score = score
        for p in quality.penalties(counts):
            response.penalties.add(
                issue=_ISSUES[p.issue],
                share=p.share,
                weight=p.weight,
                full_at=p.full_at,
                penalty=p.points,
            )
        return response
