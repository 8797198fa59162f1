"""Reads of batches that are more than a `.get()`."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Max, Min, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from batches.costs import ZERO, CostPreview, LeadFacts, money, preview_cost
from batches.eta import batch_eta
from batches.models import BatchReport, BatchReportLead, DailySpend
from leadgen.display import error_line
from leadgen.errors import ServiceError
from leads.models import Lead

STATS_WINDOW = timedelta(days=7)
RECENT_LIMIT = 20
LEAD_STATUSES = [choice for choice, _ in BatchReportLead.Status.choices]

logger = logging.getLogger(__name__)


def today() -> date:
    return timezone.now().date()


def daily_used(*, day=None) -> Decimal:
    """What today's (UTC) ledger has spent plus what it holds reserved."""
    row = DailySpend.objects.filter(day=day or today()).values("spent_usd", "reserved_usd").first()
    return (row["spent_usd"] + row["reserved_usd"]) if row else ZERO


def cost_preview_for_leads(
    *,
    leads: QuerySet[Lead],
    budget_usd: Decimal | None,
    skip_recent_days: int,
    include_recent: bool,
    concurrency: int = 10,
    max_retries: int = 3,
) -> CostPreview:
    """Gather the preview's inputs with a constant number of queries and compute it."""
    from reports import pricing
    from reports.providers import applicable_providers, missing_keys
    from reports.selectors import fresh_cache_pairs, price_table, provider_stats

    now = timezone.now()
    rows = list(leads.only("id", "website", "email", "domain", "last_reported_at").order_by())
    return preview_cost(
        leads=(
            LeadFacts(lead.pk, bool(lead.website), bool(lead.email), lead.last_reported_at) for lead in rows
        ),
        prices=price_table(at=now),
        stats=provider_stats(since=now - STATS_WINDOW),
        cached_pairs=fresh_cache_pairs(leads=rows, at=now),
        applicable=applicable_providers,
        now=now,
        skip_recent_days=skip_recent_days,
        include_recent=include_recent,
        concurrency=concurrency,
        max_retries=max_retries,
        max_input_tokens=pricing.LLM_MAX_INPUT_TOKENS,
        max_output_tokens=pricing.LLM_MAX_OUTPUT_TOKENS,
        budget_usd=budget_usd,
        daily_budget_usd=settings.DAILY_BUDGET_USD,
        daily_used_usd=daily_used(),
        retry_base_seconds=settings.BATCH_RETRY_BASE_SECONDS,
        missing_keys=missing_keys(),
    )


def batch_leads_queryset(*, batch: BatchReport) -> QuerySet[Lead]:
    return Lead.objects.filter(batch_rows__batch=batch)


def batch_lead_rows(*, batch: BatchReport, status: str | None = None) -> QuerySet[BatchReportLead]:
    rows = BatchReportLead.objects.filter(batch=batch).select_related("lead", "report").order_by("position")
    if status:
        if status not in LEAD_STATUSES:
            raise ServiceError(fields={"status": [f"Unknown status {status!r}."]})
        rows = rows.filter(status=status)
    return rows


def batch_list(*, user=None, filters: dict | None = None) -> QuerySet[BatchReport]:
    """Batches, newest first; `filters`: status, created_by (user id), created_after, created_before."""
    batches = BatchReport.objects.select_related("created_by")
    if user is not None:
        batches = batches.filter(created_by=user)
    filters = filters or {}
    unknown = sorted(set(filters) - {"status", "created_by", "created_after", "created_before"})
    if unknown:
        raise ServiceError(fields={name: ["Unknown filter."] for name in unknown})
    if filters.get("status"):
        batches = batches.filter(status=filters["status"])
    if filters.get("created_by"):
        batches = batches.filter(created_by_id=filters["created_by"])
    if filters.get("created_after"):
        batches = batches.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        batches = batches.filter(created_at__lt=filters["created_before"])
    return batches


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def batch_lead_row_dict(row: BatchReportLead) -> dict:
    """One lead's row as the snapshot's `recent`, the live page and the admin show it."""
    return {
        "lead_id": row.lead_id,
        "company_name": row.lead.company_name,
        "status": row.status,
        "attempts": row.attempts,
        "error": error_line(row.last_error),
        "error_code": row.error_code,
        "cost_usd": money(row.cost_usd),
        "duration_ms": row.duration_ms,
        "report_url": reverse("reports:detail", args=[row.report_id]) if row.report_id else None,
        "warnings": row.warnings,
    }


def batch_snapshot(*, batch_id: int) -> dict:
    """The SPEC section 7 snapshot, in three queries whatever the batch size.

    Raises BatchReport.DoesNotExist for an unknown id.
    """
    batch = BatchReport.objects.get(pk=batch_id)
    now = timezone.now()
    counts = dict.fromkeys(LEAD_STATUSES, 0)
    since = batch.started_at
    finished_since = 0
    backoff = Q(next_attempt_at__gt=now)
    aggregates = (
        BatchReportLead.objects.filter(batch_id=batch_id)
        .values("status")
        .annotate(
            n=Count("id"),
            done_since=Count("id", filter=Q(finished_at__gte=since))
            if since
            else Count("id", filter=Q(pk=None)),
            waiting=Count("id", filter=backoff),
            next_due=Min("next_attempt_at", filter=backoff),
            last_due=Max("next_attempt_at", filter=backoff),
        )
        .order_by()
    )
    waiting = {"waiting_for_retry": 0, "next_retry_in": None, "last_retry_in": None}
    for row in aggregates:
        counts[row["status"]] = row["n"]
        if row["status"] in (BatchReportLead.Status.SUCCEEDED, BatchReportLead.Status.FAILED):
            finished_since += row["done_since"]
        if row["status"] == BatchReportLead.Status.PENDING and row["waiting"]:
            waiting = {
                "waiting_for_retry": row["waiting"],
                "next_retry_in": (row["next_due"] - now).total_seconds(),
                "last_retry_in": (row["last_due"] - now).total_seconds(),
            }
    recent_rows = (
        BatchReportLead.objects.filter(batch_id=batch_id)
        .exclude(status=BatchReportLead.Status.PENDING, attempts=0)
        .select_related("lead")
        .only(
            "lead_id",
            "lead__company_name",
            "status",
            "attempts",
            "last_error",
            "error_code",
            "cost_usd",
            "duration_ms",
            "report_id",
            "warnings",
            "updated_at",
        )
        .order_by("-updated_at", "-id")[:RECENT_LIMIT]
    )
    recent = [batch_lead_row_dict(row) for row in recent_rows]

    total = sum(counts.values())
    open_count = counts["pending"] + counts["processing"]
    done = total - open_count
    throughput = None
    elapsed = 0.0
    if since and not batch.is_finished:
        elapsed = max((now - since).total_seconds(), 1.0)
        if finished_since:
            throughput = round(finished_since * 60.0 / elapsed, 1)
    elif since and batch.finished_at:
        elapsed = max((batch.finished_at - since).total_seconds(), 1.0)
        throughput = round(finished_since * 60.0 / elapsed, 1) if finished_since else 0.0
    providers = provider_states(batch)
    eta = batch_eta(
        open_circuits=tuple(name for name, state in providers.items() if state == "open"),
        status=batch.status,
        finished=batch.is_finished,
        started=since is not None,
        stop_reason=batch.stop_reason,
        stop_detail=batch.stop_detail,
        open_leads=open_count,
        processing=counts["processing"],
        finished_since_start=finished_since,
        elapsed_seconds=elapsed,
        **waiting,
    )
    return {
        "id": batch.pk,
        "name": batch.name,
        "status": batch.status,
        "provider_mode": batch.provider_mode,
        "total": total,
        **counts,
        "progress_percent": round(done * 100.0 / total, 1) if total else 100.0,
        "estimated_cost_usd": money(batch.estimated_cost_usd),
        "actual_cost_usd": money(batch.actual_cost_usd),
        "budget_usd": None if batch.budget_usd is None else money(batch.budget_usd),
        "created_at": _iso(batch.created_at),
        "started_at": _iso(batch.started_at),
        "finished_at": _iso(batch.finished_at),
        **eta.as_fields(),
        "throughput_per_minute": throughput,
        "stop_reason": batch.stop_reason,
        "stop_detail": batch.stop_detail,
        "recent": recent,
        "seq": batch.seq,
        "providers": providers,
    }


PROVIDER_UNAVAILABLE = "provider_unavailable"


def provider_states(batch: BatchReport) -> dict[str, str]:
    """Each provider's state for the batch: `ok`; `open` (its circuit is open: leads needing it wait);
    `unavailable` (the batch paused for it: stop_detail names it first, "hunter: ...")."""
    from redis.exceptions import RedisError

    from reports.breaker import OK, breaker_states
    from reports.providers import PROVIDER_ORDER

    states = dict.fromkeys(PROVIDER_ORDER, OK)
    if batch.provider_mode == "live":
        try:
            states = breaker_states(PROVIDER_ORDER)
        except RedisError:  # Redis away: the snapshot still answers, without the circuits' state
            logger.warning("provider circuit states unavailable", exc_info=True)
    if batch.stop_reason == PROVIDER_UNAVAILABLE and batch.status == BatchReport.Status.PAUSED:
        provider = batch.stop_detail.partition(":")[0].strip()
        if provider in states:
            states[provider] = "unavailable"
    return states


HISTORY_POINTS = 40
_HISTORY_SQL = """
SELECT g.at,
       count(*) FILTER (WHERE l.status = 'succeeded' AND l.finished_at <= g.at),
       count(*) FILTER (WHERE l.status = 'failed' AND l.finished_at <= g.at),
       count(*) FILTER (WHERE l.started_at <= g.at AND (l.finished_at IS NULL OR l.finished_at > g.at)
                        AND l.status IN ('processing', 'succeeded', 'failed')),
       coalesce(sum(l.cost_usd) FILTER (WHERE l.finished_at <= g.at), 0)
  FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, %(step)s::interval) AS g(at)
  LEFT JOIN batches_batchreportlead l ON l.batch_id = %(batch_id)s AND l.started_at IS NOT NULL
 GROUP BY g.at
 ORDER BY g.at
"""


def batch_progress_history(*, batch: BatchReport, points: int = HISTORY_POINTS) -> dict:
    """Progress over time for the live page's charts, rebuilt from the lead rows in one query.

    `points` evenly spaced moments from the start to the end (or now): leads succeeded and failed by
    then, leads in flight then, and what the leads finished by then cost. The page appends a point per
    snapshot it receives, so the charts go on from here. A lead retried later counts in flight from
    its last attempt's start.
    """
    from django.db import connection

    now = timezone.now()
    history = {
        "server_now": _iso(now),
        "started_at": _iso(batch.started_at),
        "estimated_cost_usd": money(batch.estimated_cost_usd),
        "points": [],
    }
    if batch.started_at is None:
        return history
    end = batch.finished_at or now
    span = max((end - batch.started_at).total_seconds(), 1.0)
    step = timedelta(seconds=span / max(points - 1, 1))
    with connection.cursor() as cursor:
        cursor.execute(
            _HISTORY_SQL, {"start": batch.started_at, "end": end, "step": step, "batch_id": batch.pk}
        )
        rows = cursor.fetchall()
    history["points"] = [
        {
            "at": _iso(at),
            "elapsed_seconds": round((at - batch.started_at).total_seconds(), 1),
            "elapsed_clock": "{}:{:02d}".format(*divmod(round((at - batch.started_at).total_seconds()), 60)),
            "succeeded": succeeded,
            "failed": failed,
            "processing": processing,
            "actual_cost_usd": money(cost),
        }
        for at, succeeded, failed, processing, cost in rows
    ]
    return history


ACTIVE_STATUSES = [
    BatchReport.Status.QUEUED,
    BatchReport.Status.RUNNING,
    BatchReport.Status.PAUSED,
    BatchReport.Status.CANCELLING,
]


def batch_rows_overview(*, batches) -> list[dict]:
    """List rows (status, leads, progress, cost against estimate, duration) for a page of batches,
    with their lead counts in one query."""
    batches = list(batches)
    counts = {
        row["batch_id"]: row
        for row in BatchReportLead.objects.filter(batch__in=batches)
        .values("batch_id")
        .annotate(
            total=Count("id"),
            done=Count("id", filter=Q(status__in=[status.value for status in BatchReportLead.FINISHED])),
            succeeded=Count("id", filter=Q(status=BatchReportLead.Status.SUCCEEDED)),
            failed=Count("id", filter=Q(status=BatchReportLead.Status.FAILED)),
        )
        .order_by()
    }
    now = timezone.now()
    rows = []
    for batch in batches:
        count = counts.get(batch.pk, {"total": 0, "done": 0, "succeeded": 0, "failed": 0})
        duration = None
        if batch.started_at:
            duration = ((batch.finished_at or now) - batch.started_at).total_seconds()
        rows.append(
            {
                "batch": batch,
                "total": count["total"],
                "done": count["done"],
                "succeeded": count["succeeded"],
                "failed": count["failed"],
                "progress_percent": round(count["done"] * 100.0 / count["total"], 1)
                if count["total"]
                else 0.0,
                "duration_seconds": duration,
                "estimate_accuracy_percent": estimate_accuracy_percent(batch),
            }
        )
    return rows


def estimate_accuracy_percent(batch: BatchReport) -> float | None:
    """Actual spend against the estimate, in percent, once a batch ran every lead it was going to;
    None while it runs or when it stopped early (its spend then says nothing about the estimate)."""
    comparable = (
        batch.status in (BatchReport.Status.COMPLETED, BatchReport.Status.COMPLETED_WITH_ERRORS)
        and not batch.stop_reason
        and batch.estimated_cost_usd > 0
    )
    if not comparable:
        return None
    return round(float(batch.actual_cost_usd) * 100 / float(batch.estimated_cost_usd), 1)


def provider_overview() -> list[dict]:
    """Each provider's state across the product: its circuit (`ok`, `open`, `unknown` when Redis is
    away; `sandbox` outside live mode, where there are none) and the batches paused because it cannot
    serve any lead."""
    from redis.exceptions import RedisError

    from reports.breaker import OK, breaker_states
    from reports.providers import PROVIDER_ORDER

    live = settings.PROVIDER_MODE == "live"
    circuits = dict.fromkeys(PROVIDER_ORDER, OK)
    circuits_known = True
    if live:
        try:
            circuits = breaker_states(PROVIDER_ORDER)
        except RedisError:
            circuits_known = False
            logger.warning("provider circuit states unavailable", exc_info=True)
    paused: dict[str, list[BatchReport]] = {name: [] for name in PROVIDER_ORDER}
    for batch in BatchReport.objects.filter(
        status=BatchReport.Status.PAUSED, stop_reason=PROVIDER_UNAVAILABLE
    ).only("id", "name", "stop_detail"):
        provider = batch.stop_detail.partition(":")[0].strip()
        if provider in paused:
            paused[provider].append(batch)
    return [
        {
            "name": name,
            "circuit": (circuits.get(name, OK) if circuits_known else "unknown") if live else "sandbox",
            "paused_batches": paused[name],
            "ok": circuits.get(name, OK) == OK and not paused[name] and circuits_known,
        }
        for name in PROVIDER_ORDER
    ]


def daily_spend_overview(*, day=None) -> dict:
    """Today's (UTC) spend and reservations against the daily budget."""
    day = day or today()
    row = DailySpend.objects.filter(day=day).values("spent_usd", "reserved_usd").first() or {
        "spent_usd": ZERO,
        "reserved_usd": ZERO,
    }
    budget = settings.DAILY_BUDGET_USD
    used = row["spent_usd"] + row["reserved_usd"]
    return {
        "day": day,
        "spent_usd": row["spent_usd"],
        "reserved_usd": row["reserved_usd"],
        "budget_usd": budget,
        "remaining_usd": max(budget - used, ZERO),
        "used_percent": round(float(used) * 100 / float(budget), 1) if budget else None,
    }
