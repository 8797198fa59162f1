"""The batch engine: claim, process, settle, finish, recover.

PostgreSQL (or SQLite) is the source of truth and the queue only triggers work:

- claim: a short transaction locks the batch row, counts the unexpired in-flight leads (at most
  `concurrency` across every runner and host), picks the next due pending lead
  (`select_for_update(skip_locked=True)` on PostgreSQL), reserves its worst-case cost in the ledger and
  leases it to one worker (`lease_owner` = host:pid:uuid, `lease_expires_at`);
- process: `reports.services.report_generate` runs outside any transaction; a heartbeat thread keeps
  the leases of in-flight leads alive;
- settle: a transaction whose UPDATE is guarded by `lease_owner` and `status=processing` writes the
  result, books what the call log says was paid and releases the reservation; transient errors go back
  to `pending` with exponential backoff and jitter until `max_retries`;
- finish: whoever sees no open lead left moves the batch to its final status under the batch lock and
  announces it once (conditional UPDATE on `notified_at IS NULL`);
- recover: expired leases (killed workers) are settled and put back, and batches with work and no live
  runner get new runner tasks.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connection, connections, transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from batches import events
from batches.costs import ZERO, worst_case_cost
from batches.ledger import (
    ASYNC_COMMIT_PG,
    BUDGET_EXHAUSTED,
    RESERVE_LEASED_PG,
    LeadOutcome,
    ledger_reserve,
    ledger_settle,
    ledger_settle_lead,
    money_read,
    paid_breakdown,
    paid_for_rows,
)
from batches.models import BatchReport, BatchReportLead

logger = logging.getLogger(__name__)

Lead = BatchReportLead.Status
Batch = BatchReport.Status

STOP = "stop"
DONE = "done"
WAIT = "wait"
WORKER_LOST = "worker_lost"
# How long the dispatcher waits for a result before trying to claim again while it has free threads.
WAIT_SECONDS = 0.25
INTERNAL_ERROR = "internal_error"
# How long the dispatcher waits for a second result after the first before claiming. Each claim takes
# the shared batch lock; at a few milliseconds this is far below any provider's latency.
GATHER_SECONDS = 0.005


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def lease_seconds() -> int:
    return settings.BATCH_LEASE_SECONDS


@dataclass
class Claim:
    """A lead leased to `owner`, with what settling it needs: the row's ledger values as leased.

    Only the lease holder changes a leased row's reservation and cost, and settle's UPDATE is guarded
    by the lease, so these values are the row's own for as long as the UPDATE can match.
    """

    row_id: int
    lead_id: int
    attempt: int
    run_attempt: int
    owner: str
    batch_id: int = 0
    lead: object = None
    reserved_usd: Decimal = ZERO
    reserved_on: object = None
    cost_usd: Decimal = ZERO
    # The lead had nothing in the cache when it was priced ahead, moments before (see PricedAhead).
    nothing_cached: bool = False


@dataclass
class Result:
    """What processing one lead produced, in the runner's own terms."""

    report_id: int | None = None
    error_code: str = ""
    error_message: str = ""
    transient: bool = False
    retry_after: float | None = None
    duration_ms: int = 0

    @property
    def succeeded(self) -> bool:
        return self.report_id is not None and not self.error_code


def runners_enqueue(*, batch_id: int, count: int = 1) -> None:
    """Queue `count` runner tasks for the batch once the current transaction commits."""
    from django_q.tasks import async_task

    def enqueue():
        for _ in range(count):
            async_task("batches.tasks.batch_run_task", batch_id, task_name=f"batch-{batch_id}-runner")

    BatchReport.objects.filter(pk=batch_id).update(runner_heartbeat_at=timezone.now())
    transaction.on_commit(enqueue)


def _worst_case(lead, prices) -> Decimal:
    return _worst_cases([lead], prices)[0]


def _worst_cases(leads: list, prices) -> list[Decimal]:
    return _priced(leads, prices)[0]


def _priced(leads: list, prices) -> tuple[list[Decimal], datetime | None, set[int]]:
    """Each lead's worst-case cost (every applicable provider not fresh in the cache, the LLM at its
    caps), when the first cache entry those costs count on expires (None: they count on none), and
    the ids of the leads with nothing fresh in the cache."""
    from reports import pricing
    from reports.providers import applicable_providers
    from reports.selectors import fresh_cache

    cached = fresh_cache(leads=leads)
    amounts = [
        worst_case_cost(
            providers=applicable_providers(has_website=bool(lead.website), has_email=bool(lead.email)),
            prices=prices,
            cached={provider for lead_id, provider in cached if lead_id == lead.pk},
            max_input_tokens=pricing.LLM_MAX_INPUT_TOKENS,
            max_output_tokens=pricing.LLM_MAX_OUTPUT_TOKENS,
        )
        for lead in leads
    ]
    cached_leads = {lead_id for lead_id, _ in cached}
    return amounts, min(cached.values(), default=None), {lead.pk for lead in leads} - cached_leads


def claim_next(*, batch_id: int, owner: str, prices: dict) -> Claim | str:
    """Lease the next due lead of the batch to `owner`, or say why not (STOP, DONE or WAIT)."""
    claimed = claim_leads(batch_id=batch_id, owner=owner, prices=prices, limit=1)
    return claimed[0] if isinstance(claimed, list) else claimed


# How many times `limit` due leads a single claim reads (and prices) before it locks: enough for the
# leads another runner leases meanwhile, so that the ones this claim gets were usually priced ahead.
READ_AHEAD = 2
# How long a runner reuses the leads it priced ahead (PricedAhead) at most.
PRICED_AHEAD_SECONDS = 5.0


class PricedAhead:
    """The next due leads of a batch and their worst cases, read and priced outside the claim's lock,
    kept by a runner for its next claims.

    A set is read again when it runs short of the claim's limit, when a claim leased a lead not in it
    (the other runners have moved past it), after PRICED_AHEAD_SECONDS, or once the first cache entry
    its costs count on has expired. Until then its costs are what pricing the leads again would give
    or more: cache entries that appear since only lower a lead's cost.

    It also knows which leads had nothing in the cache when it was read, among those whose domain no
    other lead of the batch has: on their first attempt their reports skip the cache lookup (an entry
    for them could only have come since from another batch, within those few seconds).
    """

    def __init__(self, *, rows: int):
        self.rows = rows
        self.leads: dict[int, object] = {}  # batch row id -> Lead
        self.amounts: dict[int, Decimal] = {}
        self.nothing_cached: set[int] = set()  # batch row ids
        self.read_at: float | None = None
        self.valid_until = None
        self.behind = False

    def usable(self, *, now, limit: int) -> bool:
        return (
            self.read_at is not None
            and not self.behind
            and len(self.amounts) >= limit
            and time.monotonic() - self.read_at < PRICED_AHEAD_SECONDS
            and (self.valid_until is None or now < self.valid_until)
        )

    def read(self, *, batch_id: int, prices: dict, now) -> None:
        due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        rows = list(
            BatchReportLead.objects.filter(due, batch_id=batch_id, status=Lead.PENDING)
            .select_related("lead")
            .order_by("position")[: self.rows]
        )
        amounts, valid_until, uncached = (
            _priced([row.lead for row in rows], prices) if rows else ([], None, set())
        )
        self.leads = {row.pk: row.lead for row in rows}
        self.amounts = dict(zip(self.leads, amounts, strict=True))
        shared = _shared_domains(batch_id, {row.lead.domain for row in rows if row.lead_id in uncached})
        self.nothing_cached = {
            row.pk for row in rows if row.lead_id in uncached and row.lead.domain not in shared
        }
        self.read_at, self.valid_until, self.behind = time.monotonic(), valid_until, False

    def add(self, leads: dict, amounts: list[Decimal]) -> None:
        """Leads leased that were not in the set, priced then: the set is behind the other runners."""
        self.leads |= leads
        self.amounts |= zip(leads, amounts, strict=True)
        self.behind = True

    def taken(self, row_ids: list[int]) -> None:
        for row_id in row_ids:
            self.leads.pop(row_id, None)
            self.amounts.pop(row_id, None)
            self.nothing_cached.discard(row_id)


def _shared_domains(batch_id: int, domains: set[str]) -> set[str]:
    """Those of `domains` that more than one lead of the batch has."""
    domains.discard("")
    if not domains:
        return set()
    rows = BatchReportLead.objects.filter(batch_id=batch_id, lead__domain__in=domains)
    return set(
        rows.values("lead__domain")
        .annotate(leads=Count("id"))
        .filter(leads__gt=1)
        .values_list("lead__domain", flat=True)
    )


class _Refused(Exception):
    """The budgets cannot take a whole claim group's reservation: claim lead by lead instead."""


# The batch row, locked for the claim.
_LOCK_BATCH = "SELECT status, concurrency, started_at FROM batches_batchreport WHERE id = %s"
# The next due pending leads (by position), as many as the batch has free slots (its concurrency less
# its unexpired leases, counted by this statement, i.e. once the batch lock is held) and at most the
# claim's limit, leased in one statement that returns their counters. Each gets the reservation priced
# ahead for it, from a JSON object {row id: amount} (0 for a lead not priced ahead).
_LEASE_NEXT = (
    "UPDATE batches_batchreportlead SET status = 'processing', lease_owner = %s, lease_expires_at = %s,"
    " attempts = attempts + 1, run_attempts = run_attempts + 1, started_at = COALESCE(started_at, %s),"
    " reserved_usd = COALESCE({amount}, 0), reserved_on = %s, next_attempt_at = NULL, updated_at = %s"
    " WHERE id IN (SELECT id FROM batches_batchreportlead WHERE batch_id = %s AND status = 'pending'"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= %s) ORDER BY position"
    " LIMIT {greatest}(0, {least}(%s, %s - (SELECT COUNT(*) FROM batches_batchreportlead"
    " WHERE batch_id = %s AND status = 'processing' AND lease_expires_at > %s))){skip_locked})"
    " RETURNING id, lead_id, attempts, run_attempts, cost_usd, reserved_usd"
)
# On PostgreSQL the same statement reserves the leased leads' amounts in the ledger.
_LEASE_AND_RESERVE_PG = (  # noqa: S608 (the module's constant statements)
    "WITH leased AS ({lease}), {reserve} SELECT id, lead_id, attempts, run_attempts, cost_usd,"
    " (SELECT amount FROM total), (SELECT COUNT(*) FROM batch), (SELECT COUNT(*) FROM day), {commit}"
    " FROM leased"
).format(
    commit=ASYNC_COMMIT_PG,
    lease=_LEASE_NEXT.format(
        amount="(%s::jsonb ->> id::text)::numeric",
        greatest="GREATEST",
        least="LEAST",
        skip_locked=" FOR UPDATE SKIP LOCKED",
    ),
    reserve=RESERVE_LEASED_PG.format(rows="leased"),
)
# The whole claim on PostgreSQL, sent with the batch lock and the commit in one round trip (a pipeline),
# so that the batch row is locked only while the server runs them, never while this thread waits for its
# turn on the interpreter. It leases only leads priced ahead (`amounts`, {row id: amount}), the next due
# ones by position, as many as the batch has free slots (its concurrency less its unexpired leases,
# counted once the lock is held), and only if their summed worst case fits the batch budget and the
# day's (whose ledger row must exist): all of it or nothing. Rows are locked lead, then day (the batch
# is locked already), as every settle locks them. It returns one row per leased lead, or one row of
# NULLs, each with how many leads were due and whether the reservation was made.
_CLAIM_PG = (
    "WITH candidates AS (SELECT id, (%(amounts)s::jsonb ->> id::text)::numeric AS amount"  # noqa: S608
    " FROM batches_batchreportlead WHERE batch_id = %(batch)s AND status = 'pending'"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)"
    " AND (%(amounts)s::jsonb ->> id::text) IS NOT NULL"
    " AND EXISTS (SELECT 1 FROM batches_batchreport WHERE id = %(batch)s AND status IN ('queued', 'running'))"
    " ORDER BY position LIMIT GREATEST(0, LEAST(%(limit)s,"
    " (SELECT concurrency FROM batches_batchreport WHERE id = %(batch)s)"
    " - (SELECT COUNT(*) FROM batches_batchreportlead WHERE batch_id = %(batch)s AND status = 'processing'"
    " AND lease_expires_at > %(now)s))) FOR UPDATE SKIP LOCKED),"
    " total AS (SELECT COALESCE(SUM(amount), 0) AS amount FROM candidates),"
    " room AS (SELECT 1 FROM batches_batchreport, total WHERE id = %(batch)s"
    " AND (budget_usd IS NULL OR budget_usd >= actual_cost_usd + reserved_usd + total.amount)),"
    " day AS (UPDATE batches_dailyspend SET reserved_usd = ROUND(reserved_usd + total.amount, 6) FROM total"
    " WHERE day = %(day)s AND total.amount > 0 AND EXISTS (SELECT 1 FROM candidates)"
    " AND EXISTS (SELECT 1 FROM room) AND %(daily_budget)s - spent_usd - reserved_usd - total.amount >= 0"
    " RETURNING 1),"
    " ok AS (SELECT 1 FROM total WHERE EXISTS (SELECT 1 FROM candidates) AND EXISTS (SELECT 1 FROM room)"
    " AND (total.amount = 0 OR EXISTS (SELECT 1 FROM day))),"
    " batch AS (UPDATE batches_batchreport SET reserved_usd = ROUND(reserved_usd + total.amount, 6),"
    " status = 'running', started_at = COALESCE(started_at, %(now)s),"
    " runner_heartbeat_at = CASE WHEN status = 'queued' THEN %(now)s ELSE runner_heartbeat_at END"
    " FROM total WHERE id = %(batch)s AND EXISTS (SELECT 1 FROM ok) RETURNING 1),"
    " leased AS (UPDATE batches_batchreportlead AS lead SET status = 'processing', lease_owner = %(owner)s,"
    " lease_expires_at = %(until)s, attempts = lead.attempts + 1, run_attempts = lead.run_attempts + 1,"
    " started_at = COALESCE(lead.started_at, %(now)s), reserved_usd = candidates.amount,"
    " reserved_on = %(day)s, next_attempt_at = NULL, updated_at = %(now)s FROM candidates"
    " WHERE lead.id = candidates.id AND EXISTS (SELECT 1 FROM batch)"
    " RETURNING lead.id, lead.lead_id, lead.attempts, lead.run_attempts, lead.cost_usd)"
    " SELECT (SELECT COUNT(*) FROM candidates), (SELECT COUNT(*) FROM ok),"
    f" {ASYNC_COMMIT_PG}, leased.* FROM (SELECT 1) AS one LEFT JOIN leased ON true"
)
_LEASE_NEXT_SQLITE = _LEASE_NEXT.format(
    amount="""json_extract(%s, '$."' || id || '"')""", greatest="max", least="min", skip_locked=""
)


def claim_leads(
    *, batch_id: int, owner: str, prices: dict, limit: int, ahead: PricedAhead | None = None
) -> list[Claim] | str:
    """Lease up to `limit` due leads of the batch to `owner`, or say why none (STOP, DONE or WAIT).

    The next due leads and their worst cases come from `ahead` (a runner's PricedAhead, read again
    when no longer usable), read without any lock. Then one short transaction under the batch row lock
    counts the unexpired leads in flight (never more than `concurrency` across every runner), leases
    the next due leads in one statement (skip-locked on PostgreSQL) and reserves their worst case in
    the ledger (in the same statement on PostgreSQL; a lead leased that was not priced ahead, because
    other runners took those, is priced then). If the budgets cannot take the whole group (or the day
    has no ledger row yet), the transaction is undone and leads are claimed one by one.
    """
    now = timezone.now()
    ahead = ahead or PricedAhead(rows=limit * READ_AHEAD)
    if not ahead.usable(now=now, limit=limit):
        ahead.read(batch_id=batch_id, prices=prices, now=now)
    try:
        claimed = None
        db = connections[DEFAULT_DB_ALIAS]
        if db.vendor == "postgresql" and not db.in_atomic_block:
            claimed = _claim_pipelined(batch_id=batch_id, owner=owner, limit=limit, now=now, ahead=ahead)
        if claimed is None:
            # Nothing priced ahead was due (other runners took it, or the batch stopped or has nothing
            # due): the general claim, which also leases and prices leads that were not priced ahead.
            with transaction.atomic():
                claimed = _claim_group(
                    batch_id=batch_id, owner=owner, limit=limit, now=now, ahead=ahead, prices=prices
                )
    except _Refused:
        claimed = _claim_one_by_one(batch_id=batch_id, owner=owner, prices=prices, limit=limit)
    if isinstance(claimed, list):
        ahead.taken([claim.row_id for claim in claimed])
    return claimed


def _claim_pipelined(*, batch_id, owner, limit, now, ahead: PricedAhead) -> list[Claim] | None:
    """The claim on PostgreSQL (_CLAIM_PG): the leads leased, or None when none of those priced ahead
    was due; raises _Refused when the budgets cannot take them all."""
    if not ahead.amounts:
        return None
    day = now.date()
    params = {
        "amounts": json.dumps({str(row_id): str(amount) for row_id, amount in ahead.amounts.items()}),
        "batch": batch_id,
        "now": now,
        "limit": limit,
        "day": day,
        "daily_budget": settings.DAILY_BUDGET_USD,
        "owner": owner,
        "until": now + timedelta(seconds=lease_seconds()),
    }
    db = connections[DEFAULT_DB_ALIAS]
    db.ensure_connection()
    raw = db.connection
    with raw.pipeline(), raw.cursor() as cursor, raw.cursor() as claim:
        cursor.execute("BEGIN")
        cursor.execute(_LOCK_BATCH + " FOR UPDATE", [batch_id])
        claim.execute(_CLAIM_PG, params)
        cursor.execute("COMMIT")
        rows = claim.fetchall()
    due, reserved = rows[0][:2]
    if not due:
        return None
    if not reserved:
        raise _Refused
    leased = sorted(row[3:] for row in rows if row[3])
    return _claims(leased, owner=owner, batch_id=batch_id, day=day, ahead=ahead)


def _claims(leased: list[tuple], *, owner: str, batch_id: int, day, ahead: PricedAhead) -> list[Claim]:
    """The claims of leased rows (id, lead_id, attempts, run_attempts, cost_usd), all priced in `ahead`."""
    return [
        Claim(
            row_id=row_id,
            lead_id=lead_id,
            attempt=attempts,
            run_attempt=run_attempts,
            owner=owner,
            batch_id=batch_id,
            lead=ahead.leads[row_id],
            reserved_usd=ahead.amounts[row_id],
            reserved_on=day,
            cost_usd=money_read(cost_usd),
            nothing_cached=attempts == 1 and row_id in ahead.nothing_cached,
        )
        for row_id, lead_id, attempts, run_attempts, cost_usd in leased
    ]


def _lock_batch(*, batch_id: int) -> tuple | None:
    """The batch's status, concurrency and started_at, under its row lock."""
    sql = _LOCK_BATCH + (" FOR UPDATE" if connection.features.has_select_for_update else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, [batch_id])
        return cursor.fetchone()


def _claim_group(*, batch_id, owner, limit, now, ahead: PricedAhead, prices) -> list[Claim] | str:
    locked = _lock_batch(batch_id=batch_id)
    if locked is None or locked[0] not in (Batch.QUEUED, Batch.RUNNING):
        return STOP
    status, concurrency, started_at = locked
    day = now.date()
    amounts = json.dumps({str(row_id): str(amount) for row_id, amount in ahead.amounts.items()})
    adapt = connection.ops.adapt_datetimefield_value
    params = [owner, adapt(now + timedelta(seconds=lease_seconds())), adapt(now), amounts]
    params += [connection.ops.adapt_datefield_value(day), adapt(now), batch_id, adapt(now)]
    params += [limit, concurrency, batch_id, adapt(now)]
    postgres = connection.vendor == "postgresql"
    if postgres:
        params += [batch_id, connection.ops.adapt_datefield_value(day), settings.DAILY_BUDGET_USD]
    with connection.cursor() as cursor:
        cursor.execute(_LEASE_AND_RESERVE_PG if postgres else _LEASE_NEXT_SQLITE, params)
        rows = cursor.fetchall()
    if not rows:
        exists = BatchReportLead.objects.filter(batch_id=batch_id, status=Lead.PENDING).exists()
        return WAIT if exists else DONE
    leased = sorted(row[:5] for row in rows)
    if postgres:
        amount, batch_reserved, day_reserved, _ = rows[0][5:]
        if amount and not (batch_reserved and day_reserved):
            raise _Refused
    unknown = [(row_id, lead_id) for row_id, lead_id, *_ in leased if row_id not in ahead.amounts]
    if unknown:
        # Other runners leased the leads priced ahead: the ones leased instead get their own worst case
        # here (a larger, blanket reservation could stop a batch near its budget too early).
        _reserve_unknown(unknown, ahead=ahead, prices=prices)
    # What the lease statement has not reserved (on PostgreSQL: the leads priced only now) is reserved here.
    unreserved = {row_id for row_id, _ in unknown} if postgres else {row_id for row_id, *_ in leased}
    claims = _claims(leased, owner=owner, batch_id=batch_id, day=day, ahead=ahead)
    amount = sum((claim.reserved_usd for claim in claims if claim.row_id in unreserved), ZERO)
    if ledger_reserve(batch_id=batch_id, amount=amount, day=day):
        raise _Refused
    if status == Batch.QUEUED:
        BatchReport.objects.filter(pk=batch_id).update(
            status=Batch.RUNNING, started_at=started_at or now, runner_heartbeat_at=now
        )
    return claims


def _reserve_unknown(unknown: list[tuple[int, int]], *, ahead: PricedAhead, prices: dict) -> None:
    """Set the reservation of leased rows that were not priced ahead, and add them to `ahead`."""
    from leads.models import Lead as LeadModel

    by_id = LeadModel.objects.in_bulk([lead_id for _, lead_id in unknown])
    leads = {row_id: by_id[lead_id] for row_id, lead_id in unknown}
    amounts = _worst_cases(list(leads.values()), prices)
    ahead.add(leads, amounts)
    for row_id, amount in zip(leads, amounts, strict=True):
        BatchReportLead.objects.filter(pk=row_id).update(reserved_usd=amount)


def _claim_one_by_one(*, batch_id: int, owner: str, prices: dict, limit: int) -> list[Claim] | str:
    """The claim when the budgets may not take a whole group: reserve lead by lead, in order, and
    skip every lead not started once the next one does not fit."""
    with transaction.atomic():
        batch = (
            BatchReport.objects.select_for_update()
            .only("status", "concurrency", "started_at", "budget_usd")
            .filter(pk=batch_id)
            .first()
        )
        if batch is None or batch.status not in (Batch.QUEUED, Batch.RUNNING):
            return STOP
        now = timezone.now()
        rows = BatchReportLead.objects.filter(batch_id=batch_id)
        free = batch.concurrency - rows.filter(status=Lead.PROCESSING, lease_expires_at__gt=now).count()
        if free <= 0:
            return WAIT
        due = (
            rows.filter(status=Lead.PENDING)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .select_related("lead")
            .order_by("position")
        )
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        picked = list(due[: min(free, limit)])
        if not picked:
            return WAIT if rows.filter(status=Lead.PENDING).exists() else DONE
        day = now.date()
        amounts = _worst_cases([row.lead for row in picked], prices)
        picked, amounts, refused = _reserve(batch_id=batch_id, rows=picked, amounts=amounts, day=day)
        if not picked:
            _budget_exhausted(batch_id=batch_id, reason=refused, now=now)
            return DONE
        lease_until = now + timedelta(seconds=lease_seconds())
        for amount in set(amounts):
            ids = [row.pk for row, row_amount in zip(picked, amounts, strict=True) if row_amount == amount]
            rows.filter(pk__in=ids, status=Lead.PENDING).update(
                status=Lead.PROCESSING,
                lease_owner=owner,
                lease_expires_at=lease_until,
                attempts=F("attempts") + 1,
                run_attempts=F("run_attempts") + 1,
                started_at=Coalesce("started_at", Value(now)),
                reserved_usd=amount,
                reserved_on=day if amount else None,
                next_attempt_at=None,
                updated_at=now,
            )
        if batch.status == Batch.QUEUED:
            BatchReport.objects.filter(pk=batch_id).update(
                status=Batch.RUNNING, started_at=batch.started_at or now, runner_heartbeat_at=now
            )
        return [
            Claim(
                row_id=row.pk,
                lead_id=row.lead_id,
                attempt=row.attempts + 1,
                run_attempt=row.run_attempts + 1,
                owner=owner,
                batch_id=batch_id,
                lead=row.lead,
                reserved_usd=amount,
                reserved_on=day if amount else None,
                cost_usd=row.cost_usd,
            )
            for row, amount in zip(picked, amounts, strict=True)
        ]


def _reserve(
    *, batch_id: int, rows: list, amounts: list[Decimal], day
) -> tuple[list, list[Decimal], str | None]:
    """Reserve the rows' worst cases: all at once when the budgets allow, else lead by lead in order.

    Returns the rows that got their reservation (a prefix of `rows`), their amounts, and why the
    first one that did not fit was refused (None when all fit).
    """
    refused = ledger_reserve(batch_id=batch_id, amount=sum(amounts, ZERO), day=day)
    if refused is None or len(rows) == 1:
        return (rows, amounts, None) if refused is None else ([], [], refused)
    for index, amount in enumerate(amounts):
        refused = ledger_reserve(batch_id=batch_id, amount=amount, day=day)
        if refused:
            return rows[:index], amounts[:index], refused
    return rows, amounts, None


def _budget_exhausted(*, batch_id: int, reason: str, now) -> None:
    """The budget cannot cover the next lead: every lead not yet started is skipped."""
    message = (
        "The batch budget is exhausted." if reason == BUDGET_EXHAUSTED else "The daily budget is exhausted."
    )
    BatchReportLead.objects.filter(batch_id=batch_id, status=Lead.PENDING).update(
        status=Lead.SKIPPED,
        error_code=BUDGET_EXHAUSTED,
        last_error=message,
        next_attempt_at=None,
        finished_at=now,
        updated_at=now,
    )
    BatchReport.objects.filter(pk=batch_id, stop_reason="").update(stop_reason=BUDGET_EXHAUSTED)
    logger.info("batch %s: %s", batch_id, message)


def process(claim: Claim) -> Result:
    """Build the lead's report; provider calls happen here, outside any transaction."""
    from leads.models import Lead as LeadModel
    from reports.services import report_generate

    started = time.monotonic()
    try:
        lead = claim.lead if claim.lead is not None else LeadModel.objects.get(pk=claim.lead_id)
        outcome = report_generate(
            lead=lead,
            batch_lead_id=claim.row_id,
            attempt=claim.attempt,
            cache_lookup=not claim.nothing_cached,
        )
    except Exception as exc:
        logger.exception("lead %s of batch row %s raised", claim.lead_id, claim.row_id)
        return Result(
            error_code=INTERNAL_ERROR,
            error_message=f"{type(exc).__name__}: {exc}"[:2000],
            transient=True,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    duration_ms = int((time.monotonic() - started) * 1000)
    error = outcome.error
    if error is None and outcome.report is not None:
        return Result(report_id=outcome.report.pk, duration_ms=duration_ms)
    if error is None:
        return Result(
            error_code=INTERNAL_ERROR, error_message="No report and no error.", duration_ms=duration_ms
        )
    return Result(
        error_code=error.code or "provider_error",
        error_message=f"{error.provider}: {error.message}"[:2000],
        transient=bool(error.transient),
        retry_after=error.retry_after,
        duration_ms=duration_ms,
    )


def retry_delay(*, run_attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter around the base, at least Retry-After, capped."""
    base = settings.BATCH_RETRY_BASE_SECONDS * 2 ** (run_attempt - 1)
    delay = base * random.uniform(0.5, 1.5)
    if retry_after and settings.BATCH_RETRY_BASE_SECONDS > 0:
        delay = max(delay, retry_after)
    return min(delay, settings.BATCH_RETRY_MAX_SECONDS)


def settle(claim: Claim, result: Result) -> str | None:
    """Write the result if `claim.owner` still holds the lease; returns the lead's new status or None."""
    now = timezone.now()
    outcome = {
        "duration_ms": result.duration_ms,
        "report_id": None,
        "last_error": result.error_message,
        "error_code": result.error_code,
        "finished_at": now,
        "next_attempt_at": None,
        "updated_at": now,
    }
    if result.succeeded:
        status = Lead.SUCCEEDED
        outcome.update(report_id=result.report_id, last_error="", error_code="")
    else:
        # Only a failure needs the batch (its retry budget and whether it is being cancelled).
        batch = BatchReport.objects.only("status", "max_retries").get(pk=claim.batch_id)
        if result.transient and claim.run_attempt <= batch.max_retries and batch.status != Batch.CANCELLING:
            status = Lead.PENDING
            delay = retry_delay(run_attempt=claim.run_attempt, retry_after=result.retry_after)
            outcome.update(finished_at=None, next_attempt_at=now + timedelta(seconds=delay))
        elif result.transient and batch.status == Batch.CANCELLING:
            status = Lead.CANCELLED
        else:
            status = Lead.FAILED
    settled = ledger_settle_lead(
        row_id=claim.row_id,
        owner=claim.owner,
        outcome=LeadOutcome(status=status, **outcome),
        batch_id=claim.batch_id,
        released=claim.reserved_usd,
        paid_before=claim.cost_usd,
        day=claim.reserved_on,
    )
    if not settled:
        logger.warning("batch row %s: lease lost by %s before settling", claim.row_id, claim.owner)
        return None
    events.batch_event_emit(batch_id=claim.batch_id)
    return status


def batch_finish_if_done(*, batch_id: int) -> bool:
    """Give the batch its final status when no lead is open; True only for the caller that did it."""
    with transaction.atomic():
        batch = BatchReport.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.status not in BatchReport.ACTIVE:
            return False
        rows = BatchReportLead.objects.filter(batch_id=batch_id)
        now = timezone.now()
        if batch.status == Batch.CANCELLING:
            # A lead whose settle decided on a retry just before the cancel committed (and updated its
            # row before the cancel's UPDATE could see it) went back to pending: it starts no more.
            rows.filter(status=Lead.PENDING).update(
                status=Lead.CANCELLED, next_attempt_at=None, finished_at=now, updated_at=now
            )
        if rows.filter(status__in=(Lead.PENDING, Lead.PROCESSING)).exists():
            return False
        if batch.status == Batch.CANCELLING:
            status = Batch.CANCELLED
        elif rows.filter(
            Q(status=Lead.FAILED) | Q(status=Lead.SKIPPED, error_code=BUDGET_EXHAUSTED)
        ).exists():
            status = Batch.COMPLETED_WITH_ERRORS
        else:
            status = Batch.COMPLETED
        # The call log is the truth: book what a late (lease-lost) worker paid after its lead was settled.
        paid = paid_for_rows(rows.values("pk"))
        drift = paid - batch.actual_cost_usd
        if drift:
            logger.warning("batch %s: booking %s USD paid after a lost lease", batch_id, drift)
            ledger_settle(batch_id=batch_id, released=ZERO, paid=drift, day=None)
        BatchReport.objects.filter(pk=batch_id).update(status=status, finished_at=now, updated_at=now)
        events.batch_event_emit(batch_id=batch_id, finished=True)
        if BatchReport.objects.filter(pk=batch_id, notified_at__isnull=True).update(notified_at=now):
            transaction.on_commit(lambda: _announce(batch_id))
    logger.info("batch %s finished: %s", batch_id, status)
    return True


def _announce(batch_id: int) -> None:
    from batches.webhooks import completion_announce

    try:
        completion_announce(batch_id=batch_id)
    except Exception:
        logger.exception("could not announce the completion of batch %s", batch_id)


def _worker(claims: queue.SimpleQueue, results: queue.SimpleQueue) -> None:
    """A pool thread: process and settle the claims handed to it until it gets None."""
    try:
        while (claim := claims.get()) is not None:
            try:
                results.put(settle(claim, process(claim)))
            except BaseException as exc:  # handed to the dispatcher, which stops claiming and re-raises
                results.put(exc)
    finally:
        connections.close_all()


def _heartbeat(batch_id: int, owner: str, stop: threading.Event) -> None:
    """Renew the leases of this runner's leads in flight, and say the batch has a live runner."""
    interval = max(lease_seconds() / 3.0, 0.2)
    try:
        while not stop.wait(interval):
            now = timezone.now()
            BatchReportLead.objects.filter(
                batch_id=batch_id, status=Lead.PROCESSING, lease_owner=owner
            ).update(lease_expires_at=now + timedelta(seconds=lease_seconds()))
            BatchReport.objects.filter(pk=batch_id).update(runner_heartbeat_at=now)
    finally:
        connections.close_all()


_frozen_in: int | None = None  # the process that has frozen its start-up objects


def _freeze_startup_objects() -> None:
    """Once per worker process: collect, then keep every object alive by now (Django's apps, models,
    modules and settings) out of the garbage collector's full collections, which would otherwise go
    through all of them every few hundred leads (~0.2 ms of CPU per lead). What the runner allocates
    later is collected as usual."""
    global _frozen_in
    if _frozen_in != os.getpid():
        gc.collect()
        gc.freeze()
        _frozen_in = os.getpid()


def run_slice(
    *, batch_id: int, max_seconds: float | None = None, workers: int | None = None, follow_up: bool = True
) -> int:
    """Work on the batch with up to `concurrency` threads for at most RUNNER_SLICE_SECONDS.

    Re-enqueues itself when work remains (`follow_up`), so long batches run as a chain of bounded
    tasks that any worker on any host may pick up. Returns the number of leads processed.
    """
    from reports.selectors import price_table

    close_old_connections()
    batch = BatchReport.objects.filter(pk=batch_id).only("status", "concurrency").first()
    if batch is None or batch.status not in (Batch.QUEUED, Batch.RUNNING):
        if batch is not None:
            batch_finish_if_done(batch_id=batch_id)
        return 0
    deadline = time.monotonic() + (max_seconds if max_seconds is not None else settings.RUNNER_SLICE_SECONDS)
    _freeze_startup_objects()
    prices = price_table()
    owner = new_owner()
    stop = threading.Event()
    heartbeat = threading.Thread(target=_heartbeat, args=(batch_id, owner, stop), daemon=True)
    heartbeat.start()
    size = max(1, min(workers or batch.concurrency, batch.concurrency))
    try:
        processed = _dispatch(batch_id=batch_id, owner=owner, prices=prices, size=size, deadline=deadline)
    finally:
        stop.set()
        heartbeat.join()
    if not batch_finish_if_done(batch_id=batch_id) and follow_up:
        with transaction.atomic():
            if BatchReportLead.objects.filter(batch_id=batch_id, status=Lead.PENDING).exists() and (
                BatchReport.objects.filter(pk=batch_id, status__in=(Batch.QUEUED, Batch.RUNNING)).exists()
            ):
                runners_enqueue(batch_id=batch_id)
    return processed


def _dispatch(*, batch_id: int, owner: str, prices: dict, size: int, deadline: float) -> int:
    """Keep up to `size` of the batch's leads in flight on a thread pool until the work or the time ends.

    This thread claims leads in groups for the pool's free threads; the threads process and settle
    them. Returns the number of leads processed; an unexpected error in a thread stops the claiming,
    lets the leads in flight finish, and is raised.
    """
    claims: queue.SimpleQueue = queue.SimpleQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()
    threads = [
        threading.Thread(target=_worker, args=(claims, results), name=f"batch-{batch_id}-{n}", daemon=True)
        for n in range(size)
    ]
    for thread in threads:
        thread.start()
    in_flight = processed = 0
    ahead = PricedAhead(rows=size * READ_AHEAD)
    claiming = True
    error: BaseException | None = None
    try:
        while True:
            if claiming and time.monotonic() >= deadline:
                claiming = False
            if claiming and in_flight < size:
                claimed = claim_leads(
                    batch_id=batch_id, owner=owner, prices=prices, limit=size - in_flight, ahead=ahead
                )
                if isinstance(claimed, list):
                    for claim in claimed:
                        claims.put(claim)
                    in_flight += len(claimed)
                elif claimed in (STOP, DONE):
                    claiming = False
            if not in_flight:
                if not claiming:
                    break
                # Every slot is held by other runners, or the pending leads are backing off.
                time.sleep(random.uniform(0.05, 0.25))
                continue
            try:
                outcome = results.get(timeout=None if in_flight >= size or not claiming else WAIT_SECONDS)
            except queue.Empty:
                continue
            freed = 0
            while True:
                in_flight -= 1
                processed += 1
                freed += 1
                if isinstance(outcome, BaseException):
                    error = error or outcome
                    claiming = False
                try:
                    # One free slot: give the next result a moment, so one claim serves two slots.
                    wait = GATHER_SECONDS if claiming and freed == 1 and in_flight else 0
                    outcome = results.get(timeout=wait) if wait else results.get_nowait()
                except queue.Empty:
                    break
    finally:
        for _ in threads:
            claims.put(None)
        for thread in threads:
            thread.join()
    if error is not None:
        raise error
    return processed


def recover(*, now=None) -> dict:
    """Reclaim expired leases and restart batches that have work but no live runner.

    An expired lead's paid calls are booked from the call log and its reservation released; it goes
    back to `pending` (its paid provider data is cached, so the retry does not pay again) or, when its
    attempts are used up, to `failed` with error_code `worker_lost`.
    """
    now = now or timezone.now()
    reclaimed = failed = 0
    expired = list(
        BatchReportLead.objects.filter(status=Lead.PROCESSING, lease_expires_at__lt=now).values_list(
            "pk", flat=True
        )[:5000]
    )
    for row_id in expired:
        with transaction.atomic():
            held = BatchReportLead.objects.filter(pk=row_id, status=Lead.PROCESSING, lease_expires_at__lt=now)
            locked = held
            if connection.features.has_select_for_update_skip_locked:
                locked = held.select_for_update(skip_locked=True, of=("self",))
            row = locked.select_related("batch").order_by().first()
            if row is None:
                continue
            paid_total, breakdown = paid_breakdown(row.pk)
            exhausted = row.run_attempts > row.batch.max_retries
            cancelling = row.batch.status == Batch.CANCELLING
            updates = {
                "lease_owner": "",
                "lease_expires_at": None,
                "reserved_usd": ZERO,
                "reserved_on": None,
                "cost_usd": paid_total,
                "cost_breakdown": breakdown,
                "updated_at": now,
            }
            if exhausted or cancelling:
                updates.update(
                    status=Lead.CANCELLED if cancelling else Lead.FAILED,
                    error_code=WORKER_LOST,
                    last_error="The worker processing this lead stopped responding.",
                    finished_at=now,
                )
                failed += 1
            else:
                updates.update(status=Lead.PENDING, next_attempt_at=None)
                reclaimed += 1
            held.filter(lease_owner=row.lease_owner).update(**updates)
            ledger_settle(
                batch_id=row.batch_id,
                released=row.reserved_usd,
                paid=paid_total - row.cost_usd,
                day=row.reserved_on,
            )
            events.batch_event_emit(batch_id=row.batch_id)

    restarted = finished = 0
    stale = now - timedelta(seconds=lease_seconds())
    for batch in BatchReport.objects.filter(status__in=BatchReport.ACTIVE).only(
        "status", "concurrency", "runner_heartbeat_at"
    ):
        rows = BatchReportLead.objects.filter(batch=batch)
        cancelling = batch.status == Batch.CANCELLING
        still_open = (Lead.PROCESSING,) if cancelling else (Lead.PENDING, Lead.PROCESSING)
        if not rows.filter(status__in=still_open).exists():
            finished += batch_finish_if_done(batch_id=batch.pk)
            continue
        if rows.filter(status=Lead.PROCESSING).exists():
            continue
        if batch.runner_heartbeat_at and batch.runner_heartbeat_at > stale:
            continue
        if batch.status != Batch.CANCELLING:
            with transaction.atomic():
                runners_enqueue(batch_id=batch.pk, count=runner_count(batch.concurrency))
            restarted += 1
    result = {"reclaimed": reclaimed, "failed": failed, "restarted": restarted, "finished": finished}
    if any(result.values()):
        logger.info("batch recovery: %s", result)
    return result


def runner_count(concurrency: int) -> int:
    return max(1, min(settings.BATCH_RUNNERS_PER_BATCH, concurrency))
