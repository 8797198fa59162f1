"""Drill 5: the same runner task delivered twice at once: one effect.

    .venv/bin/python bench/drills/double_delivery.py

The batch is launched without the usual enqueue; one runner task is queued through django-q2 and its
queue message is then copied, so the broker holds the same signed task (same task id) twice and the two
worker processes of one qcluster (Q_WORKERS=2) pick both up at once - what a broker redelivery does.
Each runner keeps at most half the batch's concurrency in flight (RUNNER_THREADS), so both deliveries
hold leads at the same time: with a runner as wide as the batch, the first one would hold every slot
and the second would get a lead only in the moment between a settle and the first one's next claim.
Checks: every lead processed exactly once (attempts 1, one report, one succeeded call per provider),
the completion announced once, the ledger equals the call log.
"""

import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _drill import lease_pids, log, run_main
from _setup import Processes, batch_status, lead_counts, ledger_check, make_leads, wait_for


def drill(env: dict, *, leads: int = 200, concurrency: int = 10) -> list[str]:
    from django.db.models import Count
    from django.utils import timezone
    from django_q.models import OrmQ, Schedule
    from django_q.tasks import async_task

    from batches.models import BatchReportLead
    from batches.services import batch_create_and_launch
    from reports.models import ProviderCall, Report

    ids = make_leads(leads, prefix=f"twice{int(time.time())}")
    problems = []
    batch, _ = batch_create_and_launch(
        user=None, lead_ids=ids, concurrency=concurrency, name="drill double delivery", enqueue=False
    )
    # Only the two deliveries may run the batch: the scheduled recovery, which would also start runners
    # for a batch without a live one, is held back for the drill.
    Schedule.objects.filter(func="batches.tasks.batch_recover_task").update(
        next_run=timezone.now() + timedelta(hours=1)
    )
    OrmQ.objects.all().delete()
    task_id = async_task("batches.tasks.batch_run_task", batch.pk, task_name=f"batch-{batch.pk}-runner")
    original = OrmQ.objects.get()
    OrmQ.objects.create(key=original.key, payload=original.payload, lock=original.lock)
    log(
        f"batch {batch.pk}: {leads} leads; task {task_id} is in the queue twice "
        f"({OrmQ.objects.count()} messages)"
    )
    with Processes("drill-double") as procs:
        procs.qcluster({**env, "RUNNER_THREADS": str(max(1, concurrency // 2))})
        holders: set[int] = set()

        def finished() -> bool:
            holders.update(lease_pids(batch.pk))
            return batch_status(batch.pk) in ("completed", "completed_with_errors", "failed", "cancelled")

        wait_for(finished, 240, "the batch to finish", interval=0.05)
        batch.refresh_from_db()
    log(f"worker processes seen holding leads: {len(holders)} (pids {sorted(holders)})")
    if len(holders) < 2:
        problems.append("only one worker process ran the task: the double delivery did not happen")
    counts = lead_counts(batch.pk)
    rows = BatchReportLead.objects.filter(batch_id=batch.pk)
    log(f"batch {batch.pk} {batch.status}: {counts}")
    if batch.status != "completed" or counts.get("succeeded") != leads:
        problems.append(f"expected {leads} succeeded and status completed, got {batch.status} {counts}")
    attempts = dict(rows.values_list("attempts").annotate(n=Count("id")).order_by())
    log(f"leads by attempts: {attempts}")
    if attempts != {1: leads}:
        problems.append(f"a lead was processed more than once: attempts {attempts}")
    reports = Report.objects.filter(lead_id__in=ids).count()
    if reports != leads:
        problems.append(f"{reports} reports for {leads} leads")
    calls = ProviderCall.objects.filter(batch_lead_id__in=rows.values("pk"))
    per_lead = calls.filter(status="succeeded").values("batch_lead_id", "provider").annotate(n=Count("id"))
    if per_lead.filter(n__gt=1).exists():
        problems.append("a provider was called twice for one lead")
    if batch.notified_at is None:
        problems.append("completion not announced")
    problems += ledger_check(batch.pk, expected_total=leads)
    log(
        f"checked: {reports} reports for {leads} leads, every lead attempted once, "
        "one call per provider and lead, "
        "announced once, ledger == call log, nothing reserved"
    )
    return problems


if __name__ == "__main__":
    run_main("double_delivery", drill)
