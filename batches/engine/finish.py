"""Start runners for a batch, and give a batch its final status once no lead is open.

What it keeps true:
- a batch's counts derive from its lead rows, so its final status is read from them under the batch
  row lock, by whoever first sees nothing open; the completion (email, webhook) is announced once,
  guarded by `notified_at IS NULL`;
- the call log is the truth: what a worker that had lost its lease paid after its lead was settled is
  booked on the batch and the day when the batch finishes, so the ledger equals the call log;
- a paused batch is finished only once nothing is open (its last leads settled after the pause):
  pending leads wait for resume.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from batches import events
from batches.models import BatchReport, BatchReportLead, DailySpend

logger = logging.getLogger(__name__)

Lead = BatchReportLead.Status
Batch = BatchReport.Status

BUDGET_EXHAUSTED = "budget_exhausted"


def runner_count(concurrency: int) -> int:
    return max(1, min(settings.BATCH_RUNNERS_PER_BATCH, concurrency))


def runners_enqueue(*, batch_id: int, count: int = 1) -> None:
    """Queue `count` runner tasks for the batch once the current transaction commits."""
    from django_q.tasks import async_task

    def enqueue():
        for _ in range(count):
            async_task("batches.tasks.batch_run_task", batch_id, task_name=f"batch-{batch_id}-runner")

    BatchReport.objects.filter(pk=batch_id).update(runner_heartbeat_at=timezone.now())
    transaction.on_commit(enqueue)


def batch_finish_if_done(*, batch_id: int) -> bool:
    """Give the batch its final status when no lead is open; True only for the caller that did it."""
    with transaction.atomic():
        batch = BatchReport.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.status not in (*BatchReport.ACTIVE, Batch.PAUSED):
            return False
        rows = BatchReportLead.objects.filter(batch_id=batch_id)
        now = timezone.now()
        if batch.status == Batch.CANCELLING:
            # A lead whose settle decided on a retry just before the cancel committed (and updated its
            # row after the cancel's UPDATE had passed it) went back to pending: it starts no more.
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
        _book_late_payments(batch, rows)
        BatchReport.objects.filter(pk=batch_id).update(status=status, finished_at=now, updated_at=now)
        events.batch_event_emit(batch_id=batch_id, finished=True)
        if BatchReport.objects.filter(pk=batch_id, notified_at__isnull=True).update(notified_at=now):
            transaction.on_commit(lambda: _announce(batch_id))
    logger.info("batch %s finished: %s", batch_id, status)
    return True


def _book_late_payments(batch: BatchReport, rows) -> None:
    from batches.selectors import today
    from reports.models import ProviderCall

    paid = ProviderCall.objects.filter(batch_lead_id__in=rows.values("pk")).aggregate(total=Sum("cost_usd"))
    drift = (paid["total"] or 0) - batch.actual_cost_usd
    if not drift:
        return
    logger.warning("batch %s: booking %s USD paid after a lost lease", batch.pk, drift)
    BatchReport.objects.filter(pk=batch.pk).update(actual_cost_usd=F("actual_cost_usd") + drift)
    day, _ = DailySpend.objects.select_for_update().get_or_create(day=today())
    DailySpend.objects.filter(pk=day.pk).update(spent_usd=F("spent_usd") + drift)


def _announce(batch_id: int) -> None:
    from batches.webhooks import completion_announce

    try:
        completion_announce(batch_id=batch_id)
    except Exception:
        logger.exception("could not announce the completion of batch %s", batch_id)
