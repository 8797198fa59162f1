"""Drill 6: one provider fails every call for 30 s.

    .venv/bin/python bench/drills/provider_outage.py

The sandbox's per-provider failure rate (SANDBOX_PROVIDER_FAILURE_RATES, read by reports/sandbox.py)
is a setting, so the outage is a qcluster started with `pagespeed=1.0`, stopped gracefully after 30 s
(SIGTERM: its slices finish their leads) and replaced by one without the override. Retries: backoff
from BATCH_RETRY_BASE_SECONDS=1, max_retries 3 (4 attempts).
Checks: leads that hit the outage either failed after 4 attempts with a transient error code or
succeeded on a retry; the other providers kept working during the outage; the batch ends
`completed_with_errors` with the failures grouped by error code; no paid call repeated; ledger == log.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _drill import log, run_main
from _setup import Processes, launch, lead_counts, ledger_check, make_leads, wait_finished


def drill(env: dict, *, leads: int = 600, concurrency: int = 10, outage: float = 30.0) -> list[str]:
    from django.db.models import Count, Q
    from django.utils import timezone

    from batches.models import BatchReportLead
    from reports.models import ProviderCall

    ids = make_leads(leads, prefix=f"outage{int(time.time())}")
    problems = []
    with Processes("drill-outage") as procs:
        broken = procs.qcluster({**env, "SANDBOX_PROVIDER_FAILURE_RATES": "pagespeed=1.0"}, "qcluster-outage")
        batch = launch(lead_ids=ids, concurrency=concurrency, max_retries=3, name="drill provider outage")
        began = timezone.now()
        log(f"batch {batch.pk}: {leads} leads; pagespeed fails every call for {outage:.0f}s")
        time.sleep(outage)
        procs.stop(broken, grace=60)
        ended = timezone.now()
        log(f"outage over: {lead_counts(batch.pk)}; starting a qcluster without the override")
        procs.qcluster(env, "qcluster-healthy")
        batch = wait_finished(batch.pk, timeout=300)
    rows = BatchReportLead.objects.filter(batch_id=batch.pk)
    counts = lead_counts(batch.pk)
    groups = dict(rows.filter(status="failed").values_list("error_code").annotate(n=Count("id")).order_by())
    log(f"batch {batch.pk} {batch.status}: {counts}; failures grouped by error code: {groups}")
    during = ProviderCall.objects.filter(
        batch_lead_id__in=rows.values("pk"), created_at__gte=began, created_at__lt=ended
    )
    by_provider = {
        provider: (ok, failed)
        for provider, ok, failed in during.values("provider")
        .annotate(ok=Count("id", filter=Q(status="succeeded")), failed=Count("id", filter=Q(status="failed")))
        .values_list("provider", "ok", "failed")
    }
    log(f"calls during the outage (succeeded, failed) by provider: {by_provider}")
    if batch.status != "completed_with_errors":
        problems.append(f"status {batch.status}, expected completed_with_errors")
    if not groups:
        problems.append("no lead failed: the outage did not bite")
    if by_provider.get("pagespeed", (0, 0))[0] != 0:
        problems.append("pagespeed succeeded during its outage")
    if not all(ok > 0 for name, (ok, _) in by_provider.items() if name != "pagespeed"):
        problems.append(f"another provider stopped during the outage: {by_provider}")
    bad_attempts = rows.filter(status="failed").exclude(run_attempts=4).count()
    if bad_attempts:
        problems.append(f"{bad_attempts} failed leads without exactly 4 attempts")
    if rows.filter(status="failed").exclude(error_code__in=list(groups)).exists():
        problems.append("a failed lead has no error code")
    retried_ok = rows.filter(status="succeeded", attempts__gt=1).count()
    log(f"leads that succeeded on a retry: {retried_ok}; failed leads all had 4 attempts: {not bad_attempts}")
    problems += ledger_check(batch.pk, expected_total=leads)
    log(
        "checked: completed_with_errors, failures grouped, other providers kept working, "
        "no paid call repeated, ledger == call log, nothing reserved"
    )
    return problems


if __name__ == "__main__":
    run_main("provider_outage", drill)
