"""A realistic weekly report with every section filled: for the README picture and the tests.

The numbers agree with each other the way the services would make them (the score with
its KPIs, the priority actions with their gaps, funnel conversions with their counts).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from northstar.alerts.v1 import alerts_pb2
from northstar.experiments.v1 import experiments_pb2 as ex
from northstar.metrics.v1 import filters_pb2, kpis_pb2, quality_pb2, retention_pb2
from northstar.reports.v1 import reports_pb2 as rp

WEEKLY_SECTIONS = (
    rp.SECTION_KEY_METRICS,
    rp.SECTION_ALIGNMENT,
    rp.SECTION_PRIORITY_ACTIONS,
    rp.SECTION_ALERTS,
    rp.SECTION_EXPERIMENTS,
    rp.SECTION_RETENTION,
    rp.SECTION_FUNNEL,
    rp.SECTION_DATA_QUALITY,
)


def _ts(text: str) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(datetime.fromisoformat(text).astimezone(UTC))
    return t


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def _metric(
    name: str,
    label: str,
    unit: str,
    series: list[float | None],
    *,
    higher_is_better: bool = True,
    end: date,
) -> rp.KeyMetric:
    weeks = [end - timedelta(days=6 + 7 * (len(series) - 1 - i)) for i in range(len(series))]
    m = rp.KeyMetric(name=name, label=label, unit=unit, higher_is_better=higher_is_better)
    for day, v in zip(weeks, series, strict=True):
        p = m.sparkline.add(date=day.isoformat())
        if v is not None:
            p.value = v
    value, previous = series[-1], series[-2]
    if value is not None:
        m.value = value
    if previous is not None:
        m.previous = previous
    if value is not None and previous:
        m.change = (value - previous) / previous
    return m


def _kpi(
    name: str,
    value: float | None,
    target: float,
    weight: float,
    *,
    state: int,
    window: str,
    lower: bool = False,
    warning: float | None = None,
    critical: float | None = None,
) -> kpis_pb2.Kpi:
    k = kpis_pb2.Kpi(
        name=name,
        target=target,
        weight=weight,
        direction=kpis_pb2.KPI_DIRECTION_LOWER if lower else kpis_pb2.KPI_DIRECTION_HIGHER,
        state=state,  # type: ignore[arg-type]
        window=window,
    )
    if warning is not None:
        k.warning = warning
    if critical is not None:
        k.critical = critical
    if value is not None:
        k.value = value
        if lower:
            k.attainment = 1.0 if value <= target else target / value
        else:
            k.attainment = max(0.0, min(value / target, 1.0))
    return k


def _variant(
    key: str, users: int, mean: float, *, control: bool = False, **kw: float
) -> ex.VariantResult:
    return ex.VariantResult(variant_key=key, users=users, mean=mean, control=control, **kw)  # type: ignore[arg-type]


def sample_report() -> rp.Report:
    """The weekly report of Mon 23 – Sun 29 Nov 2026, Europe/Paris, every section present."""
    end = date(2026, 11, 29)
    r = rp.Report()
    s = r.summary
    s.report_id = "weekly-business.2026-11-23"
    s.schedule_id = "weekly-business"
    s.title = "Weekly business report"
    s.kind = rp.REPORT_KIND_WEEKLY
    s.period.CopyFrom(
        rp.Period(
            unit=rp.PERIOD_UNIT_WEEK,
            start_date="2026-11-23",
            end_date="2026-11-29",
            time_zone="Europe/Paris",
        )
    )
    s.generated_at.CopyFrom(_ts("2026-11-30T09:00:04+01:00"))
    s.deliveries.add(channel="email", target="team@example.com", status=rp.DELIVERY_STATUS_PENDING)
    r.sections.extend(WEEKLY_SECTIONS)

    km = r.key_metrics.metrics
    km.append(
        _metric(
            "dau",
            "Daily active users (average)",
            "count",
            [3120, 3254, 3198, 3402, 3511, None, 3630.4, 3787.1],
            end=end,
        )
    )
    km.append(
        _metric("signups", "Signups", "count", [412, 455, 431, 502, 468, 520, 498, 561], end=end)
    )
    km.append(
        _metric(
            "activation_rate",
            "Activation rate",
            "ratio",
            [0.31, 0.33, 0.32, 0.35, 0.34, 0.36, 0.37, 0.352],
            end=end,
        )
    )
    km.append(
        _metric(
            "workflow_runs",
            "Successful workflow runs",
            "count",
            [81_230, 84_120, 86_900, 85_410, 90_220, 93_870, 95_100, 97_342],
            end=end,
        )
    )
    km.append(
        _metric(
            "error_rate",
            "Workflow error rate",
            "ratio",
            [0.021, 0.019, 0.024, 0.018, 0.017, 0.02, 0.016, 0.019],
            higher_is_better=False,
            end=end,
        )
    )
    km.append(
        _metric(
            "mrr",
            "MRR (end of period)",
            "money",
            [
                18_430_000,
                18_702_000,
                18_950_000,
                19_120_000,
                19_388_000,
                19_705_000,
                19_930_000,
                20_264_500,
            ],
            end=end,
        )
    )

    kp = r.alignment.kpis
    r.alignment.as_of_date = "2026-11-30"
    kp.as_of_date = "2026-11-30"
    kp.config_version = 3
    kp.kpis.extend(
        [
            _kpi(
                "d7_retention",
                0.214,
                0.25,
                20,
                state=kpis_pb2.KPI_STATE_OK,
                window="signups 2026-10-24..2026-11-22",
                warning=0.20,
                critical=0.15,
            ),
            _kpi(
                "activation_rate",
                0.352,
                0.40,
                15,
                state=kpis_pb2.KPI_STATE_OK,
                window="signups 2026-10-24..2026-11-22",
                warning=0.30,
                critical=0.20,
            ),
            _kpi(
                "d30_retention",
                0.108,
                0.15,
                15,
                state=kpis_pb2.KPI_STATE_WARNING,
                window="signups 2026-10-01..2026-10-30",
                warning=0.12,
                critical=0.08,
            ),
            _kpi(
                "ltv_to_cac",
                4.6,
                4.0,
                15,
                state=kpis_pb2.KPI_STATE_OK,
                window="month 2026-10",
                warning=3.0,
                critical=2.0,
            ),
            _kpi(
                "signup_to_value_30m",
                0.47,
                0.60,
                10,
                state=kpis_pb2.KPI_STATE_OK,
                window="signups 2026-10-24..2026-11-22",
            ),
            _kpi(
                "mrr_growth_mom",
                0.082,
                0.15,
                10,
                state=kpis_pb2.KPI_STATE_OK,
                window="month 2026-10",
            ),
            _kpi(
                "churn_rate",
                0.061,
                0.05,
                10,
                state=kpis_pb2.KPI_STATE_OK,
                window="month 2026-10",
                lower=True,
                warning=0.07,
                critical=0.10,
            ),
            _kpi(
                "viral_coefficient",
                None,
                0.5,
                5,
                state=kpis_pb2.KPI_STATE_MISSING,
                window="month 2026-10",
            ),
        ]
    )
    with_value = [k for k in kp.kpis if k.HasField("attainment")]
    kp.alignment_score = (
        100 * sum(k.weight * k.attainment for k in with_value) / sum(k.weight for k in with_value)
    )
    kp.status = (
        kpis_pb2.ALIGNMENT_STATUS_ON_TRACK
        if kp.alignment_score >= 80
        else kpis_pb2.ALIGNMENT_STATUS_AT_RISK
        if kp.alignment_score >= 50
        else kpis_pb2.ALIGNMENT_STATUS_OFF_TRACK
    )
    kp.missing.append("viral_coefficient")
    advice = {
        "d30_retention": "Run a week-3 re-engagement email for users with one workflow",
        "mrr_growth_mom": "Prompt teams near their run quota to upgrade",
        "signup_to_value_30m": "Offer a template workflow on the first screen after signup",
        "d7_retention": "Send a day-2 digest of the workflows a user created",
        "activation_rate": "Make connecting the first integration a guided step",
        "churn_rate": "Call the accounts whose run volume fell by half",
    }
    actions = []
    for k in with_value:
        lower = k.direction == kpis_pb2.KPI_DIRECTION_LOWER
        impact = k.weight * (1 - k.attainment)
        if impact <= 0:
            continue
        gap = (k.value - k.target) if lower else (k.target - k.value)
        actions.append(
            kpis_pb2.PriorityAction(
                kpi=k.name, impact=impact, gap=gap, recommended_action=advice.get(k.name, "")
            )
        )
    actions.sort(key=lambda a: -a.impact)
    kp.priority_actions.extend(actions)
    r.priority_actions.actions.extend(actions[:5])

    al = r.alerts
    al.entries.extend(
        [
            rp.AlertEntry(
                rule_id="error-rate-high",
                rule_name="Workflow error rate high",
                severity=alerts_pb2.SEVERITY_WARNING,
                change=rp.ALERT_CHANGE_FIRED,
                at=_ts("2026-11-24T14:05:00+01:00"),
                value=0.031,
                threshold=0.025,
            ),
            rp.AlertEntry(
                rule_id="error-rate-high",
                rule_name="Workflow error rate high",
                severity=alerts_pb2.SEVERITY_WARNING,
                change=rp.ALERT_CHANGE_RESOLVED,
                at=_ts("2026-11-24T17:40:00+01:00"),
                value=0.018,
                threshold=0.025,
            ),
            rp.AlertEntry(
                rule_id="d30-retention",
                rule_name="D30 retention below target",
                severity=alerts_pb2.SEVERITY_WARNING,
                change=rp.ALERT_CHANGE_FIRED,
                at=_ts("2026-11-26T09:00:00+01:00"),
                value=0.108,
                threshold=0.12,
            ),
            rp.AlertEntry(
                rule_id="signups-drop",
                rule_name="Signups dropped",
                severity=alerts_pb2.SEVERITY_CRITICAL,
                change=rp.ALERT_CHANGE_FIRED,
                at=_ts("2026-11-28T06:15:00+01:00"),
                value=38,
                threshold=45,
            ),
            rp.AlertEntry(
                rule_id="signups-drop",
                rule_name="Signups dropped",
                severity=alerts_pb2.SEVERITY_CRITICAL,
                change=rp.ALERT_CHANGE_RESOLVED,
                at=_ts("2026-11-28T11:30:00+01:00"),
                value=71,
                threshold=45,
            ),
        ]
    )
    al.firing_at_end = 1

    onboarding = ex.Experiment(
        key="onboarding-checklist",
        status=ex.EXPERIMENT_STATUS_RUNNING,
        version=4,
        started_at_us=_us("2026-11-09T10:00:00+01:00"),
        definition=ex.ExperimentDefinition(
            name="Onboarding checklist",
            hypothesis="A checklist on the first screen raises activation",
            variants=[
                ex.Variant(key="control", name="Control", weight=0.5),
                ex.Variant(key="checklist", name="Checklist", weight=0.5),
            ],
            coverage=1.0,
        ),
    )
    onboarding_results = ex.GetResultsResponse(
        experiment_key="onboarding-checklist",
        engine=ex.STATS_ENGINE_FREQUENTIST,
        srm=ex.SampleRatioCheck(users=[2412, 2398], weights=[0.5, 0.5], p_value=0.84),
        metrics=[
            ex.MetricResult(
                metric="activated",
                role=ex.METRIC_ROLE_GOAL,
                variants=[
                    _variant("control", 2412, 0.341, control=True),
                    _variant(
                        "checklist",
                        2398,
                        0.377,
                        lift=0.1056,
                        ci_lower=0.041,
                        ci_upper=0.170,
                        p_value=0.0012,
                        adjusted_p_value=0.0012,
                    ),
                ],
            )
        ],
        decision=ex.Decision(
            kind=ex.DECISION_KIND_SHIP,
            variant_key="checklist",
            metric="activated",
            reason="activated +10.6% (p = 0.001)",
        ),
    )
    pricing = ex.Experiment(
        key="pricing-annual-default",
        status=ex.EXPERIMENT_STATUS_RUNNING,
        version=2,
        definition=ex.ExperimentDefinition(name="Annual plan selected by default"),
    )
    pricing_results = ex.GetResultsResponse(
        experiment_key="pricing-annual-default",
        engine=ex.STATS_ENGINE_BAYESIAN,
        srm=ex.SampleRatioCheck(users=[611, 598], weights=[0.5, 0.5], p_value=0.71),
        metrics=[
            ex.MetricResult(
                metric="subscription_started",
                role=ex.METRIC_ROLE_GOAL,
                variants=[
                    _variant("control", 611, 0.062, control=True),
                    _variant(
                        "annual",
                        598,
                        0.065,
                        lift=0.048,
                        ci_lower=-0.21,
                        ci_upper=0.33,
                        chance_to_win=0.61,
                    ),
                ],
            )
        ],
        decision=ex.Decision(kind=ex.DECISION_KIND_KEEP_RUNNING, users_needed=4200),
    )
    r.experiments.running.add(experiment=onboarding, results=onboarding_results)
    r.experiments.running.add(experiment=pricing, results=pricing_results)
    editor = ex.Experiment(
        key="editor-autosave",
        status=ex.EXPERIMENT_STATUS_CONCLUDED,
        winner="autosave",
        conclusion_reason="Fewer abandoned drafts, no guardrail moved",
        definition=ex.ExperimentDefinition(name="Editor autosave"),
    )
    r.experiments.concluded.add(experiment=editor, error="experiments: DEADLINE_EXCEEDED after 5 s")

    ret = r.retention.retention
    ret.granularity = retention_pb2.COHORT_GRANULARITY_WEEK
    ret.as_of_date = "2026-11-30"
    sizes = [402, 455, 431, 502, 468, 520, 498, 561]
    curve = [1.0, 0.46, 0.34, 0.29, 0.26, 0.24, 0.23, 0.22]
    starts = [end - timedelta(days=6 + 7 * (7 - i)) for i in range(8)]
    totals: dict[int, list[int]] = {}
    for i, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        cohort = ret.cohorts.add(
            cohort_start=start.isoformat(),
            cohort_end=(start + timedelta(days=6)).isoformat(),
            size=size,
        )
        mature = 8 - i  # the newest cohort has only its week 0
        for p in range(8):
            cell = cohort.cells.add(period=p, cohort_size=size)
            if p < mature:
                wobble = 1 + 0.03 * ((i + p) % 3 - 1) if p else 1.0
                retained = round(size * curve[p] * wobble)
                cell.retained = retained
                cell.retention = retained / size
                acc = totals.setdefault(p, [0, 0])
                acc[0] += retained
                acc[1] += size
    for p, (retained, size) in sorted(totals.items()):
        ret.combined.add(period=p, retained=retained, cohort_size=size, retention=retained / size)

    steps = [
        "signup",
        "integration_connected",
        "workflow_created",
        "workflow_run_succeeded",
        "subscription_started",
    ]
    users = [3435, 2199, 1730, 1311, 214]
    medians = [None, 1260.0, 5400.0, 9800.0, 4.2 * 86400]
    r.funnel.steps.extend(filters_pb2.EventMatcher(event=e) for e in steps)
    fr = r.funnel.funnel
    fr.window_seconds = 7 * 86400
    for i, (event, n) in enumerate(zip(steps, users, strict=True)):
        st = fr.overall.steps.add(step=i + 1, event=event, users=n)
        if i:
            st.conversion_from_previous = n / users[i - 1]
            st.conversion_from_first = n / users[0]
        median = medians[i]
        if median is not None:
            st.median_seconds_from_first = median

    q = r.data_quality.quality
    q.received, q.accepted, q.duplicates, q.rejected = 1_284_310, 1_279_944, 3_102, 1_264
    q.id_conflicts, q.missing_fields, q.active_users = 12, 8_450, 9_812
    q.orphan_activity, q.clock_skew, q.suspected_bots = 140, 2_210, 3
    q.freshness_seconds = 42.0
    q.rejection_reasons.extend(
        [
            quality_pb2.RejectionReason(field="timestamp", rule="too_old", count=802),
            quality_pb2.RejectionReason(field="event_name", rule="pattern", count=391),
            quality_pb2.RejectionReason(field="properties", rule="too_deep", count=71),
        ]
    )
    q.penalties.extend(
        [
            quality_pb2.QualityPenalty(
                issue=quality_pb2.QUALITY_ISSUE_MISSING_FIELDS,
                share=0.0066,
                weight=30,
                full_at=0.05,
                penalty=3.96,
            ),
            quality_pb2.QualityPenalty(
                issue=quality_pb2.QUALITY_ISSUE_CLOCK_SKEW,
                share=0.0017,
                weight=10,
                full_at=0.05,
                penalty=0.34,
            ),
            quality_pb2.QualityPenalty(
                issue=quality_pb2.QUALITY_ISSUE_REJECTED,
                share=0.00098,
                weight=20,
                full_at=0.05,
                penalty=0.39,
            ),
        ]
    )
    q.score = 100 - sum(p.penalty for p in q.penalties)
    return r
