"""The budget ledger: reserve a lead's worst case before its paid calls, settle to what it paid after.

Every change is a conditional or relative UPDATE (`SET reserved = reserved + x WHERE actual + reserved
+ x <= budget`), so concurrent workers on any number of hosts can never overspend a batch budget or the
daily budget: the database serialises the updates of one row and re-checks the condition on the row it
finally updates. What a lead paid is always read from the call log (reports.ProviderCall), the truth.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Round

from batches.costs import ZERO
from batches.models import BatchReport, DailySpend

BUDGET_EXHAUSTED = "budget_exhausted"
DAILY_BUDGET_EXHAUSTED = "daily_budget_exhausted"
LEDGER_PLACES = 6


def ledger_reserve(*, batch_id: int, amount: Decimal, day: date) -> str | None:
    """Reserve `amount` on the batch and on `day`'s ledger, both or neither.

    Returns None when reserved, else the reason (BUDGET_EXHAUSTED or DAILY_BUDGET_EXHAUSTED).
    """
    if amount <= 0:
        return None
    with transaction.atomic():
        reserved = (
            BatchReport.objects.filter(pk=batch_id)
            .filter(
                Q(budget_usd__isnull=True)
                | Q(budget_usd__gte=F("actual_cost_usd") + F("reserved_usd") + amount)
            )
            .update(reserved_usd=_money(F("reserved_usd") + amount))
        )
        if not reserved:
            return BUDGET_EXHAUSTED
        fits = Q(spent_usd__lte=settings.DAILY_BUDGET_USD - amount - F("reserved_usd"))
        if not _daily_update(day, fits, reserved_usd=_money(F("reserved_usd") + amount)):
            transaction.set_rollback(True)
            return DAILY_BUDGET_EXHAUSTED
    return None


def ledger_settle(*, batch_id: int, released: Decimal, paid: Decimal, day: date | None) -> None:
    """Release a reservation and book what was paid (both may be zero). Call inside the lead's update."""
    if not released and not paid:
        return
    BatchReport.objects.filter(pk=batch_id).update(
        actual_cost_usd=_money(F("actual_cost_usd") + paid), reserved_usd=_money(F("reserved_usd") - released)
    )
    if day is None:
        if not paid:
            return
        from batches.selectors import today

        day = today()
    _daily_update(
        day, Q(), spent_usd=_money(F("spent_usd") + paid), reserved_usd=_money(F("reserved_usd") - released)
    )


def _money(expression) -> Round:
    """Ledger arithmetic rounded to the columns' 6 places.

    Exact on PostgreSQL's numeric anyway; SQLite computes in binary floats, where adding a group's
    reservation and releasing it lead by lead can leave -0.00000000000000003 behind and trip the
    non-negative CHECK constraints.
    """
    return Round(expression, LEDGER_PLACES)


def _daily_update(day: date, condition: Q, **changes) -> int:
    """UPDATE the day's ledger row where `condition` holds, creating the row on the day's first use."""
    updated = DailySpend.objects.filter(condition, day=day).update(**changes)
    if not updated and DailySpend.objects.get_or_create(day=day)[1]:
        updated = DailySpend.objects.filter(condition, day=day).update(**changes)
    return updated


def paid_for_rows(row_ids) -> Decimal:
    """What the call log says the given batch lead rows paid, over all attempts."""
    from reports.models import ProviderCall

    total = ProviderCall.objects.filter(batch_lead_id__in=row_ids).aggregate(total=Sum("cost_usd"))["total"]
    return total or ZERO


def paid_breakdown(row_id: int) -> tuple[Decimal, dict[str, str]]:
    """What one batch lead row paid in total and per provider (decimal strings), from the call log."""
    from reports.models import ProviderCall

    rows = (
        ProviderCall.objects.filter(batch_lead_id=row_id)
        .values("provider")
        .annotate(total=Sum("cost_usd"))
        .order_by("provider")
    )
    breakdown = {row["provider"]: row["total"] or ZERO for row in rows}
    return sum(breakdown.values(), ZERO), {provider: str(cost) for provider, cost in breakdown.items()}
