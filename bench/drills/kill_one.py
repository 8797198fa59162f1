"""Drill 1: two qclusters serve one batch; SIGKILL one mid-batch.

    .venv/bin/python bench/drills/kill_one.py

Checks: the batch completes, every lead succeeded with its report, the leads the dead cluster held were
retried (attempts 2) and none of their paid provider calls was paid again, the ledger equals the call log
and nothing stays reserved.
"""

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _drill import check_after_kill, group_pids, lease_pids, log, recover_until, run_main
from _setup import Processes, launch, lead_counts, make_leads, wait_finished, wait_for


def drill(
    env: dict, *, leads: int = 300, concurrency: int = 10, recover_in_process: bool = False
) -> list[str]:
    from batches.engine import recover
    from batches.models import BatchReportLead

    ids = make_leads(leads, prefix=f"killone{int(time.time())}")
    with Processes("drill-kill-one") as procs:
        first, second = procs.qcluster(env, "qcluster-a"), procs.qcluster(env, "qcluster-b")
        batch = launch(lead_ids=ids, concurrency=concurrency, name="drill kill one")
        log(f"launched batch {batch.pk}: {leads} leads, concurrency {concurrency}, two qclusters")
        wait_for(lambda: lead_counts(batch.pk).get("succeeded", 0) >= leads // 4, 120, "a quarter done")

        def victim():
            holders = set(lease_pids(batch.pk))
            for cluster in (first, second):
                if holders & group_pids(cluster.pid):
                    return cluster
            return None

        target = wait_for(victim, 30, "a cluster holding leases", interval=0.05)
        held = BatchReportLead.objects.filter(
            batch_id=batch.pk,
            status="processing",
            lease_owner__regex=r":({}):".format("|".join(str(pid) for pid in group_pids(target.pid))),
        )
        held_ids = list(held.values_list("pk", flat=True))
        procs.kill(target)
        log(
            f"SIGKILLed {target.label} (pid {target.pid}) holding {len(held_ids)} leads; "
            f"{lead_counts(batch.pk)}"
        )
        if recover_in_process:
            time.sleep(float(env["BATCH_LEASE_SECONDS"]) + 0.5)
            log(f"recovery: {recover()}")
            # Then keep recovering as the schedule would, should another lease expire later.
            threading.Thread(target=recover_until, args=(batch.pk, 1.0), daemon=True).start()
        batch = wait_finished(batch.pk, timeout=240)
    return check_after_kill(batch, leads=leads, held_ids=held_ids, held="held by the killed cluster")


if __name__ == "__main__":
    run_main("kill_one", drill)
