"""Process one claimed lead and settle its result.

What it keeps true (the SQL is `batch_settle_v1` in batches/sql/engine_v1.sql, called from one place,
`settle`, in one round trip):
- provider calls happen in `process`, outside any transaction; a lead's failure is its own result and
  never an exception that stops the batch;
- only the lease owner writes the result: a worker that lost its lease (recovery took the lead back)
  changes nothing, and is told so by a None;
- what a lead paid is what the call log says, over all its attempts; the batch and the day book the
  difference from what the row had booked before and release exactly the row's reservation;
- transient failures go back to `pending` with exponential backoff and jitter while the run has
  attempts left (a cancelling batch cancels them instead); other failures end the lead `failed`;
- a failure that is ours and the same for every lead (`unavailable`: a provider's plan, quota or key)
  costs the lead no attempt: it goes back to `pending` and the batch pauses (`provider_unavailable`,
  with the provider's reason in `stop_detail`) until resumed; a provider whose circuit is open defers
  the lead to the end of its cool-down, also without spending an attempt;
- a provider failing for the lead's own reason (its site cannot be loaded) leaves its section out of
  the report: the lead succeeds with `warnings` saying what is missing.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from batches import events
from batches.engine.claim import Claim

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"

_SETTLE = (
    "SELECT batch_settle_v1(%s::bigint, %s::text, %s::text, %s::bigint, %s::integer, %s::text, %s::text,"
    " %s::jsonb, %s::timestamptz, %s::timestamptz, %s::date)"
)
# A provider whose circuit is open answers at once with this transient error: the lead waits for the
# cool-down without spending an attempt (reports.breaker).
CIRCUIT_OPEN = "circuit_open"


@dataclass
class Result:
    """What processing one lead produced, in the engine's own terms."""

    report_id: int | None = None
    error_code: str = ""
    error_message: str = ""
    transient: bool = False
    # The failure is ours and the same for every lead (a provider's plan, quota or key): the batch pauses.
    unavailable: bool = False
    retry_after: float | None = None
    duration_ms: int = 0
    # A succeeded lead's missing sections, for the lead's own reason: [{provider, code, message}].
    warnings: list = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.report_id is not None and not self.error_code

    @property
    def kind(self) -> str:
        if self.succeeded:
            return "succeeded"
        if self.unavailable:
            return "unavailable"
        if self.transient and self.error_code == CIRCUIT_OPEN:
            return "deferred"
        return "transient" if self.transient else "failed"


def process(claim: Claim) -> Result:
    """Build the lead's report; provider calls happen here, outside any transaction."""
    from leads.models import Lead
    from reports.services import report_generate

    started = time.monotonic()
    try:
        lead = claim.lead if claim.lead is not None else Lead.objects.get(pk=claim.lead_id)
        outcome = report_generate(
            lead=lead,
            batch_lead_id=claim.row_id,
            attempt=claim.attempt,
            cache_lookup=not claim.nothing_cached,
            partial=True,
            brand=claim.brand,
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
        return Result(report_id=outcome.report.pk, duration_ms=duration_ms, warnings=list(outcome.warnings))
    if error is None:
        return Result(
            error_code=INTERNAL_ERROR, error_message="No report and no error.", duration_ms=duration_ms
        )
    return Result(
        error_code=error.code or "provider_error",
        error_message=f"{error.provider}: {error.message}"[:2000],
        transient=bool(error.transient),
        unavailable=bool(getattr(error, "unavailable", False)),
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
    retry_at = None
    if result.kind == "deferred":
        retry_at = now + timedelta(seconds=result.retry_after or 1.0)
    elif result.transient:
        retry_at = now + timedelta(
            seconds=retry_delay(run_attempt=claim.run_attempt, retry_after=result.retry_after)
        )
    params = [
        claim.row_id,
        claim.owner,
        result.kind,
        result.report_id,
        result.duration_ms,
        result.error_message,
        result.error_code,
        json.dumps(result.warnings),
        retry_at,
        now,
        now.date(),
    ]
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_SETTLE, params)
        status = cursor.fetchone()[0]
    if status is None:
        logger.warning("batch row %s: lease lost by %s before settling", claim.row_id, claim.owner)
        return None
    events.batch_event_emit(batch_id=claim.batch_id)
    return status
