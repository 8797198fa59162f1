"""Batch analytics: volume, success, spend and estimate accuracy per day and in total, spend by provider,
the estimate's error per batch and how long a lead takes.

A fixed number of aggregate queries whatever the range (batches by creation day, lead rows by their
batch's creation day, provider calls by provider, lead duration percentiles, the compared batches);
totals are summed from the daily rows, so nothing is counted twice and no query runs per day.
"""

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Aggregate, Count, F, FloatField, Q, Sum
from django.db.models.functions import Abs, Cast, TruncDate
from django.utils import timezone

from batches.models import BatchReport, BatchReportLead
from reports.models import ProviderCall

ZERO = Decimal("0")
CENT = Decimal("0.0001")
# Batches whose spend can be compared with their estimate: they ran every lead they were going to.
ESTIMATE_COMPARABLE = Q(
    status__in=[BatchReport.Status.COMPLETED, BatchReport.Status.COMPLETED_WITH_ERRORS],
    stop_reason="",
    estimated_cost_usd__gt=0,
)


class Percentile(Aggregate):
    """PostgreSQL's `percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)`."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, *, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def _money(value: Decimal | None) -> str:
    return str((value or ZERO).quantize(CENT))


def _percent(numerator: float, denominator: float) -> float | None:
    return round(numerator * 100 / denominator, 2) if denominator else None


def _bucket(values: dict) -> dict:
    spend = values["spend"]
    estimated, actual = values["estimated"], values["actual"]
    return {
        "batches": values["batches"],
        "leads": values["leads"],
        "succeeded": values["succeeded"],
        "failed": values["failed"],
        "skipped": values["skipped"],
        "cancelled": values["cancelled"],
        "success_rate_percent": _percent(values["succeeded"], values["succeeded"] + values["failed"]),
        "spend_usd": _money(spend),
        "cost_per_successful_lead_usd": _money(spend / values["succeeded"]) if values["succeeded"] else None,
        "estimated_usd": _money(estimated),
        "actual_usd": _money(actual),
        "actual_vs_estimate_percent": _percent(float(actual), float(estimated)),
        "mean_abs_estimate_error_percent": (
            round(values["abs_error_sum"] * 100 / values["compared"], 2) if values["compared"] else None
        ),
    }


def _empty() -> dict:
    return {
        "batches": 0,
        "leads": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
        "spend": ZERO,
        "estimated": ZERO,
        "actual": ZERO,
        "compared": 0,
        "abs_error_sum": 0.0,
    }


def batch_analytics(*, days: int) -> dict:
    """Launched batches created in the last `days` days (today included, UTC), by creation day.

    success_rate_percent = succeeded / (succeeded + failed); skipped and cancelled leads never ran.
    Estimate accuracy compares estimate and spend of batches that completed without being stopped
    (a budget stop or a cancel ends a batch early, so its spend says nothing about the estimate).
    """
    until = timezone.now().date()
    since = until - timedelta(days=days - 1)
    tz = timezone.get_current_timezone()
    start = datetime.combine(since, time.min, tzinfo=tz)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=tz)
    launched = BatchReport.objects.filter(created_at__gte=start, created_at__lt=end).exclude(
        status=BatchReport.Status.DRAFT
    )

    per_day: dict[date, dict] = {since + timedelta(days=offset): _empty() for offset in range(days)}

    batch_rows = (
        launched.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            batches=Count("id"),
            spend=Sum("actual_cost_usd"),
            estimated=Sum("estimated_cost_usd", filter=ESTIMATE_COMPARABLE),
            actual=Sum("actual_cost_usd", filter=ESTIMATE_COMPARABLE),
            compared=Count("id", filter=ESTIMATE_COMPARABLE),
            abs_error_sum=Sum(
                Abs(Cast("actual_cost_usd", FloatField()) - Cast("estimated_cost_usd", FloatField()))
                / Cast("estimated_cost_usd", FloatField()),
                filter=ESTIMATE_COMPARABLE,
            ),
        )
        .order_by("day")
    )
    for row in batch_rows:
        bucket = per_day[row["day"]]
        bucket["batches"] = row["batches"]
        bucket["spend"] = row["spend"] or ZERO
        bucket["estimated"] = row["estimated"] or ZERO
        bucket["actual"] = row["actual"] or ZERO
        bucket["compared"] = row["compared"]
        bucket["abs_error_sum"] = float(row["abs_error_sum"] or 0)

    statuses = BatchReportLead.Status
    lead_rows = (
        BatchReportLead.objects.filter(batch__in=launched)
        .annotate(day=TruncDate(F("batch__created_at")))
        .values("day")
        .annotate(
            leads=Count("id"),
            succeeded=Count("id", filter=Q(status=statuses.SUCCEEDED)),
            failed=Count("id", filter=Q(status=statuses.FAILED)),
            skipped=Count("id", filter=Q(status=statuses.SKIPPED)),
            cancelled=Count("id", filter=Q(status=statuses.CANCELLED)),
        )
        .order_by("day")
    )
    for row in lead_rows:
        bucket = per_day[row["day"]]
        for key in ("leads", "succeeded", "failed", "skipped", "cancelled"):
            bucket[key] = row[key]

    totals = _empty()
    for bucket in per_day.values():
        for key in totals:
            totals[key] += bucket[key]

    return {
        "days": days,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "totals": _bucket(totals),
        "by_day": [{"date": day.isoformat(), **_bucket(bucket)} for day, bucket in per_day.items()],
        "by_provider": _by_provider(launched),
        "lead_duration_ms": _lead_duration(launched),
        "estimate_by_batch": _estimate_by_batch(launched),
    }


def _by_provider(launched) -> list[dict]:
    """What the call log says each provider cost the batches of the range (cached reuse at $0)."""
    calls = ProviderCall.objects.filter(
        batch_lead_id__in=BatchReportLead.objects.filter(batch__in=launched).values("id")
    )
    statuses = ProviderCall.Status
    rows = (
        calls.values("provider")
        .annotate(
            calls=Count("id"),
            paid_calls=Count("id", filter=Q(status=statuses.SUCCEEDED)),
            failed_calls=Count("id", filter=Q(status=statuses.FAILED)),
            cached_calls=Count("id", filter=Q(status=statuses.CACHED)),
            spend=Sum("cost_usd"),
        )
        .order_by("-spend", "provider")
    )
    return [
        {
            "provider": row["provider"],
            "calls": row["calls"],
            "paid_calls": row["paid_calls"],
            "failed_calls": row["failed_calls"],
            "cached_calls": row["cached_calls"],
            "spend_usd": _money(row["spend"]),
        }
        for row in rows
    ]


def _lead_duration(launched) -> dict:
    """p50 and p95 of how long a finished lead took (its last attempt), in milliseconds."""
    values = BatchReportLead.objects.filter(
        batch__in=launched,
        status__in=[BatchReportLead.Status.SUCCEEDED, BatchReportLead.Status.FAILED],
        duration_ms__isnull=False,
    ).aggregate(
        count=Count("id"),
        p50=Percentile("duration_ms", fraction=0.5),
        p95=Percentile("duration_ms", fraction=0.95),
    )
    return {
        "count": values["count"],
        "p50": None if values["p50"] is None else round(values["p50"]),
        "p95": None if values["p95"] is None else round(values["p95"]),
    }


def _estimate_by_batch(launched) -> list[dict]:
    """Estimate against spend of each batch that ran to completion, newest first."""
    rows = (
        launched.filter(ESTIMATE_COMPARABLE)
        .order_by("-created_at", "-id")
        .values("id", "name", "created_at", "estimated_cost_usd", "actual_cost_usd")
    )
    return [
        {
            "id": row["id"],
            "name": row["name"],
            "created_at": row["created_at"].isoformat(),
            "estimated_usd": _money(row["estimated_cost_usd"]),
            "actual_usd": _money(row["actual_cost_usd"]),
            "error_percent": round(
                float(row["actual_cost_usd"] - row["estimated_cost_usd"])
                * 100
                / float(row["estimated_cost_usd"]),
                2,
            ),
        }
        for row in rows
    ]
