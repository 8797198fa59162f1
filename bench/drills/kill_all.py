"""Drill 2: SIGKILL every qcluster mid-batch, wait, start one: the batch finishes.

    .venv/bin/python bench/drills/kill_all.py

The new cluster runs the scheduled recovery (every minute), which settles the dead leases and
restarts the batch's runners. Same checks as drill 1.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _drill import check_after_kill, log, run_main
from _setup import Processes, launch, lead_counts, make_leads, wait_finished, wait_for


def drill(
    env: dict,
    *,
    leads: int = 300,
    concurrency: int = 10,
    pause: float = 10.0,
    recover_in_process: bool = False,
) -> list[str]:
    from batches.engine import recover
    from batches.models import BatchReportLead

    ids = make_leads(leads, prefix=f"killall{int(time.time())}")
    with Processes("drill-kill-all") as procs:
        clusters = [procs.qcluster(env, "qcluster-a"), procs.qcluster(env, "qcluster-b")]
        batch = launch(lead_ids=ids, concurrency=concurrency, name="drill kill all")
        log(f"launched batch {batch.pk}: {leads} leads, concurrency {concurrency}, two qclusters")
        wait_for(lambda: lead_counts(batch.pk).get("succeeded", 0) >= leads // 4, 120, "a quarter done")
        wait_for(lambda: lead_counts(batch.pk).get("processing", 0) > 0, 30, "leads in flight", interval=0.05)
        for cluster in clusters:
            procs.kill(cluster)
        held_ids = list(
            BatchReportLead.objects.filter(batch_id=batch.pk, status="processing").values_list(
                "pk", flat=True
            )
        )
        log(f"SIGKILLed both qclusters with {len(held_ids)} leads in flight; {lead_counts(batch.pk)}")
        time.sleep(pause)
        frozen = lead_counts(batch.pk)
        log(f"after {pause:.0f}s with no worker: {frozen}")
        procs.qcluster(env, "qcluster-c")
        log("started one new qcluster")
        if recover_in_process:
            log(f"recovery: {recover()}")
        batch = wait_finished(batch.pk, timeout=240)
    return check_after_kill(batch, leads=leads, held_ids=held_ids, held="in flight at the kill")


if __name__ == "__main__":
    run_main("kill_all", drill)
