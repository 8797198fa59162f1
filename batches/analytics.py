"""Batch analytics: volume, success, spend and estimate accuracy per day and in total.

Two aggregate queries whatever the range (batches by creation day, lead rows by their batch's creation
day); totals are summed from the daily rows, so nothing is counted twice and no query runs per day.
"""

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, F, FloatField, Q, Sum
from django.db.models.functions import Abs, Cast, TruncDate
from django.utils import timezone

from batches.models import BatchReport, BatchReportLead

ZERO = Decimal("0")
CENT = Decimal("0.0001")
# Batches whose spend can be compared with their estimate: they ran every lead they were going to.
ESTIMATE_COMPARABLE = Q(
    status__in=[BatchReport.Status.COMPLETED, BatchReport.Status.COMPLETED_WITH_ERRORS],
    stop_reason="",
    estimated_cost_usd__gt=0,
)


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
    }
