"""The budget ledger: reserve a lead's worst case before its paid calls, settle to what it paid after.

Every change is a conditional or relative UPDATE (`SET reserved = reserved + x WHERE actual + reserved
+ x <= budget`), so concurrent workers on any number of hosts can never overspend a batch budget or the
daily budget: the database serialises the updates of one row and re-checks the condition on the row it
finally updates. What a lead paid is always read from the call log (reports.ProviderCall), the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Sum

from batches.costs import ZERO
from batches.models import DailySpend

BUDGET_EXHAUSTED = "budget_exhausted"
DAILY_BUDGET_EXHAUSTED = "daily_budget_exhausted"


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
_RESERVE_BOTH_PG = (
    f"WITH batch AS ({_RESERVE_BATCH} RETURNING id),"  # noqa: S608 (the module's constant statements)
    f" day AS ({_RESERVE_DAY} AND EXISTS (SELECT 1 FROM batch) RETURNING id)"
    " SELECT (SELECT COUNT(*) FROM batch), (SELECT COUNT(*) FROM day)"
)
# The claim's reservation on PostgreSQL, as CTEs of the statement that leases the leads (a CTE named by
# `rows` returning their reserved_usd): the sum on the batch and on the day, both or neither, only when
# the budgets allow it. The statement selects (SELECT amount FROM total), (SELECT COUNT(*) FROM batch)
# and (SELECT COUNT(*) FROM day); a day without its ledger row yet counts as refused.
RESERVE_LEASED_PG = (
    "total AS (SELECT COALESCE(SUM(reserved_usd), 0) AS amount FROM {rows}),"
    " batch AS (UPDATE batches_batchreport SET reserved_usd = ROUND(reserved_usd + total.amount, 6)"
    " FROM total WHERE id = %s AND total.amount > 0"
    " AND (budget_usd IS NULL OR budget_usd >= actual_cost_usd + reserved_usd + total.amount) RETURNING id),"
    " day AS (UPDATE batches_dailyspend SET reserved_usd = ROUND(reserved_usd + total.amount, 6)"
    " FROM total WHERE day = %s AND EXISTS (SELECT 1 FROM batch)"
    " AND %s - spent_usd - reserved_usd - total.amount >= 0 RETURNING id)"
)
_SETTLE_BATCH = (
    "UPDATE batches_batchreport SET actual_cost_usd = ROUND(actual_cost_usd + %s, 6),"
    " reserved_usd = ROUND(reserved_usd - %s, 6) WHERE id = %s"
)
_SETTLE_DAY = (
    "UPDATE batches_dailyspend SET spent_usd = ROUND(spent_usd + %s, 6),"
    " reserved_usd = ROUND(reserved_usd - %s, 6) WHERE day = %s"
)


_PAID_BY_PROVIDER = (
    "SELECT provider, SUM(cost_usd) FROM reports_providercall WHERE batch_lead_id = %s"
    " GROUP BY provider ORDER BY provider"
)
MICRO = Decimal("0.000001")


def money_read(value) -> Decimal:
    """A money column or sum read with plain SQL, at the ledger's 6 places (SQLite gives binary floats)."""
    return Decimal(str(value or 0)).quantize(MICRO)


def ledger_reserve(*, batch_id: int, amount: Decimal, day: date) -> str | None:
    """Reserve `amount` on the batch and on `day`'s ledger, both or neither.

    Returns None when reserved, else the reason (BUDGET_EXHAUSTED or DAILY_BUDGET_EXHAUSTED).
    """
    if amount <= 0:
        return None
    batch_params = [amount, batch_id, amount]
    day_params = [amount, _day(day), settings.DAILY_BUDGET_USD, amount]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Both in one round trip: the batch row stays locked for as short a time as possible.
            with connection.cursor() as cursor:
                cursor.execute(_RESERVE_BOTH_PG, batch_params + day_params)
                batch_done, day_done = cursor.fetchone()
            if not batch_done:
                return BUDGET_EXHAUSTED
            if not day_done and DailySpend.objects.get_or_create(day=day)[1]:
                day_done = _execute(_RESERVE_DAY, day_params)  # the day's first reservation
        else:
            if not _execute(_RESERVE_BATCH, batch_params):
                return BUDGET_EXHAUSTED
            day_done = _daily_update(day, _RESERVE_DAY, day_params)
        if not day_done:
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


# Selected by a statement that is a transaction of its own, or by one in a transaction: its commit
# does not wait for the write-ahead log to reach the disk. For the engine's claims and settles only,
# whose effects the call log and lease recovery can always redo: a PostgreSQL crash can lose the last
# fraction of a second of them (never a worker crash), and each paid call's log entry, committed
# synchronously, makes every earlier commit durable, since the log is written in order. The batch and
# day rows, which every claim and settle updates, stay locked for a commit's CPU time instead of a
# disk flush.
ASYNC_COMMIT_PG = "set_config('synchronous_commit', 'off', true)"

# A lead's outcome and its ledger settlement: the lead row UPDATE guarded by the lease, then the batch
# and the day. PostgreSQL runs the three as one statement (data-modifying CTEs), so the shared batch and
# day rows stay locked only while the server runs it and commits, never while a worker thread waits for
# its turn on the interpreter between statements; SQLite runs them one after another in a transaction.
_LEAD_OUTCOME = (
    "UPDATE batches_batchreportlead SET status = %s, lease_owner = '', lease_expires_at = NULL,"
    " reserved_usd = 0, reserved_on = NULL, cost_usd = {cost}, cost_breakdown = {breakdown},"
    " duration_ms = %s, report_id = %s, last_error = %s, error_code = %s, finished_at = %s,"
    " next_attempt_at = %s, updated_at = %s WHERE id = %s AND lease_owner = %s AND status = 'processing'"
)
# On PostgreSQL the same statement reads what the row paid from the call log (its calls of this attempt
# are committed), books the difference from what it had paid before, and creates the day's ledger row
# if a lead paid on a day nothing was reserved on.
_LEAD_SETTLED_PG = (
    "WITH paid AS (SELECT provider, SUM(cost_usd) AS total FROM reports_providercall"  # noqa: S608
    " WHERE batch_lead_id = %s GROUP BY provider),"
    + " lead AS ({lead} RETURNING cost_usd - %s AS paid),".format(
        lead=_LEAD_OUTCOME.format(
            cost="(SELECT COALESCE(SUM(total), 0) FROM paid)",
            breakdown="(SELECT COALESCE(jsonb_object_agg(provider, total::text), '{}') FROM paid)",
        )
    )
    # Each step waits on the one before it, so the rows are locked in the order every other
    # transaction takes them (lead, batch, day) and two settles or a settle and a claim cannot deadlock.
    + " batch AS (UPDATE batches_batchreport SET actual_cost_usd = ROUND(actual_cost_usd + lead.paid, 6),"  # noqa: S608
    " reserved_usd = ROUND(reserved_usd - %s, 6) FROM lead WHERE id = %s RETURNING lead.paid),"
    " day AS (INSERT INTO batches_dailyspend (day, spent_usd, reserved_usd) SELECT %s, paid, 0 FROM batch"
    " WHERE paid <> 0 OR %s <> 0 ON CONFLICT (day) DO UPDATE SET"
    " spent_usd = ROUND(batches_dailyspend.spent_usd + excluded.spent_usd, 6),"
    " reserved_usd = ROUND(batches_dailyspend.reserved_usd - %s, 6))"
    f" SELECT (SELECT COUNT(*) FROM lead), {ASYNC_COMMIT_PG}"
)
_LEAD_OUTCOME_PARAMS = _LEAD_OUTCOME.format(cost="%s", breakdown="%s")


@dataclass(frozen=True)
class LeadOutcome:
    """What settling writes on a lead row (besides clearing its lease and reservation, and what it paid)."""

    status: str
    duration_ms: int
    report_id: int | None
    last_error: str
    error_code: str
    finished_at: datetime | None
    next_attempt_at: datetime | None
    updated_at: datetime


def ledger_settle_lead(
    *,
    row_id: int,
    owner: str,
    outcome: LeadOutcome,
    batch_id: int,
    released: Decimal,
    paid_before: Decimal,
    day,
) -> bool:
    """Write a leased lead's outcome and settle its money, all or nothing; False if `owner` lost the lease.

    What the row paid over all its attempts comes from the call log (in total and per provider, on the
    row); the batch and the day book what it paid beyond `paid_before` (the row's cost when leased) and
    release `released`, reserved on `day` (None when nothing was reserved: paid calls go on today).
    """
    from batches.selectors import today

    connection = connections[DEFAULT_DB_ALIAS]  # not the proxy, which looks it up on every attribute
    day = day or today()
    adapt = connection.ops.adapt_datetimefield_value
    lead_params = [
        outcome.duration_ms,
        outcome.report_id,
        outcome.last_error,
        outcome.error_code,
        adapt(outcome.finished_at),
        adapt(outcome.next_attempt_at),
        adapt(outcome.updated_at),
        row_id,
        owner,
    ]
    if connection.vendor == "postgresql":
        params = [row_id, outcome.status, *lead_params, paid_before, released, batch_id]
        params += [connection.ops.adapt_datefield_value(day), released, released]
        with connection.cursor() as cursor:
            cursor.execute(_LEAD_SETTLED_PG, params)
            return bool(cursor.fetchone()[0])
    from batches.models import BatchReportLead

    field = BatchReportLead._meta.get_field
    with transaction.atomic():
        paid_total, breakdown = paid_breakdown(row_id)
        cost = [
            field("cost_usd").get_db_prep_save(paid_total, connection),
            field("cost_breakdown").get_db_prep_save(breakdown, connection),
        ]
        if not _execute(_LEAD_OUTCOME_PARAMS, [outcome.status, *cost, *lead_params]):
            return False
        paid = paid_total - paid_before
        _execute(_SETTLE_BATCH, [paid, released, batch_id])
        if paid or released:
            _daily_update(day, _SETTLE_DAY, [paid, released, _day(day)])
    return True


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
    with connection.cursor() as cursor:
        cursor.execute(_PAID_BY_PROVIDER, [row_id])
        rows = cursor.fetchall()
    breakdown = {provider: money_read(total) for provider, total in rows}
    return sum(breakdown.values(), ZERO), {provider: str(cost) for provider, cost in breakdown.items()}
