"""The claim: lease the next due leads of a batch to a runner, each with its worst case reserved.

What it keeps true (the SQL is `batch_claim_v1` in batches/sql/engine_v1.sql, called from one place,
`claim_leads`, in one round trip):
- leads start in position order, and never more than the batch's `concurrency` are in flight across
  every runner and host (counted under the batch row lock);
- a lead is leased only with its whole worst case (every applicable provider not fresh in the cache, the
  LLM at its caps) reserved on the batch and on the day, within both budgets: budgets are never
  exceeded, whatever the number of concurrent claims;
- when the next lead cannot fit and the batch holds no reservation that settling could give back, the
  leads not started are skipped (`budget_exhausted`) and the batch says why in `stop_reason`;
- nothing starts unless the batch is queued or running (a paused or cancelling batch claims nothing).

Pricing needs the cache and the price table, so it happens here in Python before the claim, without
any lock, for a few more leads than one claim takes (`PricedAhead`); the claim reserves exactly those
amounts and asks for more pricing when it reaches a lead that was not priced.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Q
from django.utils import timezone

from batches.costs import worst_case_cost
from batches.models import BatchReportLead
from reports.providers.base import LeadInfo

logger = logging.getLogger(__name__)

STOP = "stop"
DONE = "done"
WAIT = "wait"
_UNPRICED = "unpriced"
_LEASED = "leased"
_LEASED_UNPRICED = "leased_unpriced"

# How many times `limit` due leads a runner reads and prices ahead: enough for the leads the other
# runners lease meanwhile, so that the ones a claim gets were usually priced ahead.
READ_AHEAD = 2
# How long a runner reuses the leads it priced ahead at most.
PRICED_AHEAD_SECONDS = 5.0
# How many times a claim that reached a lead not priced ahead prices more and tries again, each time
# reading four times as many leads (other runners' claims in flight hold the ones it had).
CLAIM_TRIES = 4

_CLAIM = (
    "SELECT outcome, row_id, lead_id, attempts, run_attempts, reserved_usd FROM batch_claim_v1("
    "%s::bigint, %s::text, %s::integer, %s::jsonb, %s::timestamptz, %s::timestamptz, %s::date, %s::numeric)"
)


@dataclass
class Claim:
    """A lead leased to `owner` for one attempt."""

    row_id: int
    lead_id: int
    attempt: int
    run_attempt: int
    owner: str
    batch_id: int
    lead: object = None
    reserved_usd: Decimal = Decimal(0)
    # Priced moments ago with nothing in the cache, its domain shared with no other lead of the batch:
    # its first attempt may skip the report's cache lookup (see PricedAhead).
    nothing_cached: bool = False
    # The batch's brand profile (reports.BrandProfile or None), loaded once per runner slice.
    brand: object = None


def lease_seconds() -> int:
    return settings.BATCH_LEASE_SECONDS


def worst_cases(leads: list, prices: dict) -> tuple[list[Decimal], datetime | None, set[int]]:
    """Each lead's worst-case cost, when the first cache entry those costs count on expires (None: they
    count on none), and the ids of the leads with nothing fresh in the cache."""
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


class PricedAhead:
    """The next due leads of a batch and their worst cases, read and priced outside any lock, kept by a
    runner for its next claims.

    The set is read again when it runs short of a claim's limit, when a claim reached a lead not in it
    (the other runners have moved past it), after PRICED_AHEAD_SECONDS, or once the first cache entry its
    costs count on has expired. Until then its amounts are what pricing the leads again would give or
    more: cache entries that appear meanwhile only lower a lead's cost.

    It also knows which leads had nothing in the cache when read, among those whose domain no other lead
    of the batch has: their first attempt skips the cache lookup (an entry for them could only have come
    since from another batch, within those few seconds).
    """

    def __init__(self, *, rows: int):
        self.rows = rows
        self.leads: dict[int, object] = {}  # batch row id -> leads.Lead
        self.amounts: dict[int, Decimal] = {}
        self.nothing_cached: set[int] = set()  # batch row ids
        self.read_at: float | None = None
        self.valid_until: datetime | None = None
        self.behind = False

    def usable(self, *, now: datetime, limit: int) -> bool:
        return (
            self.read_at is not None
            and not self.behind
            and len(self.amounts) >= limit
            and time.monotonic() - self.read_at < PRICED_AHEAD_SECONDS
            and (self.valid_until is None or now < self.valid_until)
        )

    def read(self, *, batch_id: int, prices: dict, now: datetime, count: int | None = None) -> None:
        due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        rows = list(
            BatchReportLead.objects.filter(due, batch_id=batch_id, status=BatchReportLead.Status.PENDING)
            .select_related("lead")
            # What the claim and the report read, nothing more: every lead is read by every runner.
            .only("lead", *(f"lead__{name}" for name in LeadInfo.LEAD_FIELDS))
            .order_by("position")[: count or self.rows]
        )
        amounts, valid_until, uncached = (
            worst_cases([row.lead for row in rows], prices) if rows else ([], None, set())
        )
        self.leads = {row.pk: row.lead for row in rows}
        self.amounts = dict(zip(self.leads, amounts, strict=True))
        shared = _shared_domains(batch_id, {row.lead.domain for row in rows if row.lead_id in uncached})
        self.nothing_cached = {
            row.pk for row in rows if row.lead_id in uncached and row.lead.domain not in shared
        }
        self.read_at, self.valid_until, self.behind = time.monotonic(), valid_until, False

    def taken(self, row_ids: list[int]) -> None:
        for row_id in row_ids:
            self.leads.pop(row_id, None)
            self.amounts.pop(row_id, None)
            self.nothing_cached.discard(row_id)


# Per domain: its leads through the domain's index, each looked up in the batch by the batch's unique
# (batch, lead) index. The lookup is a subquery, not a join, so that the planner cannot start from the
# batch's rows instead: it estimates a new batch (absent from its statistics) at a row or two, and
# would read every row of the batch for each domain.
_SHARED_DOMAINS = """
SELECT d.domain
  FROM unnest(%s::text[]) AS d (domain)
 WHERE (SELECT count(*)
          FROM leads_lead l
         WHERE l.domain = d.domain
           AND (SELECT true FROM batches_batchreportlead b WHERE b.batch_id = %s AND b.lead_id = l.id)) > 1
"""


def _shared_domains(batch_id: int, domains: set[str]) -> set[str]:
    """Those of `domains` that more than one lead of the batch has."""
    domains.discard("")
    if not domains:
        return set()
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_SHARED_DOMAINS, [sorted(domains), batch_id])
        return {domain for (domain,) in cursor.fetchall()}


def claim_leads(
    *, batch_id: int, owner: str, prices: dict, limit: int, ahead: PricedAhead | None = None
) -> list[Claim] | str:
    """Lease up to `limit` due leads of the batch to `owner`, or say why none (STOP, DONE or WAIT).

    The amounts come from `ahead` (a runner's PricedAhead, read again when no longer usable); a claim
    that reaches a lead not priced there prices more of the next leads and claims again.
    """
    ahead = ahead or PricedAhead(rows=limit * READ_AHEAD)
    for attempt in range(CLAIM_TRIES):
        now = timezone.now()
        if not ahead.usable(now=now, limit=limit):
            ahead.read(batch_id=batch_id, prices=prices, now=now, count=ahead.rows * 4**attempt)
        rows = _claim(batch_id=batch_id, owner=owner, limit=limit, now=now, amounts=ahead.amounts)
        outcome = rows[0][0]
        if outcome == _UNPRICED:
            ahead.behind = True
            continue
        if outcome not in (_LEASED, _LEASED_UNPRICED):
            return outcome
        ahead.behind = outcome == _LEASED_UNPRICED
        claims = [
            Claim(
                row_id=row_id,
                lead_id=lead_id,
                attempt=attempts,
                run_attempt=run_attempts,
                owner=owner,
                batch_id=batch_id,
                lead=ahead.leads[row_id],
                reserved_usd=reserved,
                nothing_cached=attempts == 1 and row_id in ahead.nothing_cached,
            )
            for _, row_id, lead_id, attempts, run_attempts, reserved in rows
        ]
        ahead.taken([claim.row_id for claim in claims])
        return claims
    return WAIT


def claim_next(*, batch_id: int, owner: str, prices: dict) -> Claim | str:
    """Lease the next due lead of the batch to `owner`, or say why not (STOP, DONE or WAIT)."""
    claimed = claim_leads(batch_id=batch_id, owner=owner, prices=prices, limit=1)
    return claimed[0] if isinstance(claimed, list) else claimed


def _claim(
    *, batch_id: int, owner: str, limit: int, now: datetime, amounts: dict[int, Decimal]
) -> list[tuple]:
    params = [
        batch_id,
        owner,
        limit,
        json.dumps({str(row_id): str(amount) for row_id, amount in amounts.items()}),
        now,
        now + timedelta(seconds=lease_seconds()),
        now.date(),
        settings.DAILY_BUDGET_USD,
    ]
    # The connection itself, not the proxy that looks it up on every attribute.
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_CLAIM, params)
        return cursor.fetchall()
