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
from django.db import connection, transaction
from django.db.models import Sum

from batches.costs import ZERO
from batches.models import DailySpend

BUDGET_EXHAUSTED = "budget_exhausted"
DAILY_BUDGET_EXHAUSTED = "daily_budget_exhausted"
LEDGER_PLACES = 6


# The statements every lead runs, as plain SQL: building them through the ORM each time costs several
# times the CPU the database needs to run them. Arithmetic is rounded to the columns' 6 places: exact
# on PostgreSQL's numeric anyway; SQLite computes in binary floats, where adding a group's reservation
# and releasing it lead by lead can leave -0.00000000000000003 behind and trip the non-negative CHECK
# constraints.
_RESERVE_BATCH = (
    "UPDATE batches_batchreport SET reserved_usd = ROUND(reserved_usd + %s, 6)"
    " WHERE id = %s AND (budget_usd IS NULL OR budget_usd >= actual_cost_usd + reserved_usd + %s)"
)
_RESERVE_DAY = (
    "UPDATE batches_dailyspend SET reserved_usd = ROUND(reserved_usd + %s, 6)"
    # Arithmetic on both sides: SQLite compares a number with a text parameter as text.
    " WHERE day = %s AND %s - spent_usd - reserved_usd - %s >= 0"
)
_SETTLE_BATCH = (
    "UPDATE batches_batchreport SET actual_cost_usd = ROUND(actual_cost_usd + %s, 6),"
    " reserved_usd = ROUND(reserved_usd - %s, 6) WHERE id = %s"
)
_SETTLE_DAY = (
    "UPDATE batches_dailyspend SET spent_usd = ROUND(spent_usd + %s, 6),"
    " reserved_usd = ROUND(reserved_usd - %s, 6) WHERE day = %s"
)


def ledger_reserve(*, batch_id: int, amount: Decimal, day: date) -> str | None:
    """Reserve `amount` on the batch and on `day`'s ledger, both or neither.

    Returns None when reserved, else the reason (BUDGET_EXHAUSTED or DAILY_BUDGET_EXHAUSTED).
    """
    if amount <= 0:
        return None
    with transaction.atomic():
        if not _execute(_RESERVE_BATCH, [amount, batch_id, amount]):
            return BUDGET_EXHAUSTED
        if not _daily_update(day, _RESERVE_DAY, [amount, _day(day), settings.DAILY_BUDGET_USD, amount]):
            transaction.set_rollback(True)
            return DAILY_BUDGET_EXHAUSTED
    return None


def ledger_settle(*, batch_id: int, released: Decimal, paid: Decimal, day: date | None) -> None:
    """Release a reservation and book what was paid (both may be zero). Call inside the lead's update."""
    if not released and not paid:
        return
    _execute(_SETTLE_BATCH, [paid, released, batch_id])
    if day is None:
        if not paid:
            return
        from batches.selectors import today

        day = today()
    _daily_update(day, _SETTLE_DAY, [paid, released, _day(day)])


def _execute(sql: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _day(day: date):
    return connection.ops.adapt_datefield_value(day)


def _daily_update(day: date, sql: str, params: list) -> int:
    """Run an UPDATE of the day's ledger row, creating the row on the day's first use."""
    updated = _execute(sql, params)
    if not updated and DailySpend.objects.get_or_create(day=day)[1]:
        updated = _execute(sql, params)
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
