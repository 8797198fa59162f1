"""Recovery, run by the django-q2 schedule every RECOVERY_INTERVAL_MINUTES and by `recover_batches`.

What it keeps true:
- a lead whose lease expired (its runner died or stopped renewing) is taken back, one lead per
  transaction (`batch_lease_recover_v1`, called from one place, `recover`): what the call log says it
  paid is booked, its reservation released, and it goes back to `pending` (its paid provider data is
  cached, so the retry pays nothing twice) or ends `failed` / `cancelled` with `worker_lost`;
- a queued, running or cancelling batch with nothing in flight and no runner seen for a lease's length
  gets new runner tasks, or its final status when nothing is open: a batch finishes even if every
  worker died mid-run and new ones start later;
- a paused batch is left alone (its expired leases are still taken back, so nothing stays reserved).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from batches import events
from batches.engine.claim import lease_seconds
from batches.engine.finish import batch_finish_if_done, runner_count, runners_enqueue
from batches.models import BatchReport, BatchReportLead

logger = logging.getLogger(__name__)

Lead = BatchReportLead.Status

# Leads taken back in one run at most (the next run takes the rest).
RECOVER_LIMIT = 5000

_RECOVER_ONE = "SELECT batch_id, status FROM batch_lease_recover_v1(%s::timestamptz, %s::date)"


def recover(*, now=None) -> dict:
    """Take back expired leases and restart batches that have work but no live runner."""
    now = now or timezone.now()
    reclaimed = failed = 0
    touched: set[int] = set()
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        for _ in range(RECOVER_LIMIT):
            cursor.execute(_RECOVER_ONE, [now, now.date()])
            row = cursor.fetchone()
            if row is None:
                break
            batch_id, status = row
            touched.add(batch_id)
            if status == Lead.PENDING:
                reclaimed += 1
            else:
                failed += 1
    for batch_id in touched:
        events.batch_event_emit(batch_id=batch_id)

    restarted = finished = 0
    stale = now - timedelta(seconds=lease_seconds())
    for batch in BatchReport.objects.filter(status__in=BatchReport.ACTIVE).only(
        "status", "concurrency", "runner_heartbeat_at"
    ):
        rows = BatchReportLead.objects.filter(batch=batch)
        cancelling = batch.status == BatchReport.Status.CANCELLING
        still_open = (Lead.PROCESSING,) if cancelling else (Lead.PENDING, Lead.PROCESSING)
        if not rows.filter(status__in=still_open).exists():
            finished += batch_finish_if_done(batch_id=batch.pk)
            continue
        if cancelling or rows.filter(status=Lead.PROCESSING).exists():
            continue
        if batch.runner_heartbeat_at and batch.runner_heartbeat_at > stale:
            continue
        with transaction.atomic():
            runners_enqueue(batch_id=batch.pk, count=runner_count(batch.concurrency))
        restarted += 1
    result = {"reclaimed": reclaimed, "failed": failed, "restarted": restarted, "finished": finished}
    if any(result.values()):
        logger.info("batch recovery: %s", result)
    return result
