"""Drill 3: restart Redis mid-batch (a redis-server of the drill's own, never the shared one).

    .venv/bin/python bench/drills/redis_restart.py [--port 6391]

daphne, qcluster and this process use REDIS_URL=redis://127.0.0.1:<port>/0 (channel layer and cache;
the task broker is the ORM). 20 WebSocket clients that reconnect like the live page follow the batch.
Mid-batch Redis is SIGKILLed, left down for 3 s and started again on the same port.
Checks: the workers go on (leads keep succeeding after the restart), every client gets a fresh snapshot
after the restart, every client's last message equals GET /api/batches/<id>/, the batch completes with
no loss and no double charge.
"""

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _drill import Followers, log, recover_until, run_main, settle_followers
from _setup import (
    Processes,
    free_port,
    launch,
    lead_counts,
    ledger_check,
    make_leads,
    session_cookie,
    staff_user,
    wait_finished,
    wait_for,
)

PORT = 6391


def drill(
    env: dict,
    *,
    leads: int = 400,
    concurrency: int = 10,
    clients: int = 20,
    down: float = 3.0,
    recover_every: float | None = None,
) -> list[str]:
    ids = make_leads(leads, prefix=f"redis{int(time.time())}")
    user, token = staff_user()
    cookie = session_cookie(user)
    problems = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    redis_port = int(env["REDIS_URL"].split(":")[2].split("/")[0])
    with Processes("drill-redis") as procs:
        redis = procs.redis(redis_port)
        procs.daphne(env, port)
        procs.qcluster(env)
        batch = launch(lead_ids=ids, concurrency=concurrency, user=user, name="drill redis restart")
        followers = Followers(
            f"ws://127.0.0.1:{port}/ws/batches/{batch.pk}/", {"Cookie": cookie, "Origin": base}, clients
        ).start()
        try:
            wait_for(lambda: lead_counts(batch.pk).get("succeeded", 0) >= leads // 4, 120, "a quarter done")
            procs.kill(redis)
            log(f"SIGKILLed redis on {redis_port}: {lead_counts(batch.pk)}")
            time.sleep(down)
            procs.redis(redis_port)
            restarted = time.monotonic()
            at_restart = lead_counts(batch.pk)
            log(f"restarted redis after {down:.0f}s: {at_restart}")
            wait_for(
                lambda: lead_counts(batch.pk).get("succeeded", 0) > at_restart.get("succeeded", 0) + 10,
                60,
                "leads to keep succeeding after the restart",
            )
            log(f"workers go on: {lead_counts(batch.pk)}")
            if recover_every:
                recovering = threading.Thread(
                    target=recover_until, args=(batch.pk, recover_every), daemon=True
                )
                recovering.start()
            batch = wait_finished(batch.pk, timeout=300)
            snapshot = settle_followers(followers, base, token, batch.pk)
        finally:
            followers.stop()
    log(
        f"batch {batch.pk} {batch.status}: {lead_counts(batch.pk)}; socket connects per client: "
        f"{sorted(set(followers.connects))}; client errors seen: {len(followers.errors)} "
        f"(e.g. {followers.errors[:1]})"
    )
    from batches.models import BatchReportLead

    retried = BatchReportLead.objects.filter(batch_id=batch.pk, attempts__gt=1).count()
    log(f"leads attempted again because of the restart (settled later by recovery): {retried}")
    problems += followers.check_after(restarted, snapshot)
    if batch.status != "completed":
        problems.append(f"status {batch.status}")
    problems += ledger_check(batch.pk, expected_total=leads)
    log(
        "checked: workers went on, every client resynced after the restart and ended on the status API's "
        "snapshot, batch completed, no paid call repeated, ledger == call log, nothing reserved"
    )
    return problems


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    run_main("redis_restart", drill, REDIS_URL=f"redis://127.0.0.1:{args.port}/0")
