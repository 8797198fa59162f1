"""Reads of batches that are more than a `.get()`."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from batches.costs import ZERO, CostPreview, LeadFacts, money, preview_cost
from batches.models import BatchReport, BatchReportLead, DailySpend
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
        "error": row.last_error,
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
    counts = dict.fromkeys(LEAD_STATUSES, 0)
    since = batch.started_at
    finished_since = 0
    aggregates = (
        BatchReportLead.objects.filter(batch_id=batch_id)
        .values("status")
        .annotate(
            n=Count("id"),
            done_since=Count("id", filter=Q(finished_at__gte=since))
            if since
            else Count("id", filter=Q(pk=None)),
        )
        .order_by()
    )
    for row in aggregates:
        counts[row["status"]] = row["n"]
        if row["status"] in (BatchReportLead.Status.SUCCEEDED, BatchReportLead.Status.FAILED):
            finished_since += row["done_since"]
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
    eta = None
    if since and not batch.is_finished:
        elapsed = max((timezone.now() - since).total_seconds(), 1.0)
        if finished_since:
            throughput = round(finished_since * 60.0 / elapsed, 1)
            eta = round(open_count * elapsed / finished_since)
    elif since and batch.finished_at:
        elapsed = max((batch.finished_at - since).total_seconds(), 1.0)
        throughput = round(finished_since * 60.0 / elapsed, 1) if finished_since else 0.0
        eta = 0
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
        "eta_seconds": eta,
        "throughput_per_minute": throughput,
        "stop_reason": batch.stop_reason,
        "stop_detail": batch.stop_detail,
        "recent": recent,
        "seq": batch.seq,
        "providers": provider_states(batch),
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
