"""Drill 4: restart daphne mid-batch: the sockets reconnect and resync without a page reload.

    .venv/bin/python bench/drills/daphne_restart.py

20 WebSocket clients that reconnect like the live page (backoff 0.2 s doubling to 2 s) follow a running
batch; daphne is SIGKILLed and started again on the same port. Checks: every client reconnects, its
first message after reconnecting is a full snapshot, its last message equals GET /api/batches/<id>/;
the batch completes with no loss.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _drill import Followers, log, run_main, settle_followers
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


def drill(env: dict, *, leads: int = 300, concurrency: int = 10, clients: int = 20) -> list[str]:
    ids = make_leads(leads, prefix=f"daphne{int(time.time())}")
    user, token = staff_user()
    cookie = session_cookie(user)
    problems = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Processes("drill-daphne") as procs:
        web = procs.daphne(env, port)
        procs.qcluster(env)
        batch = launch(lead_ids=ids, concurrency=concurrency, user=user, name="drill daphne restart")
        followers = Followers(
            f"ws://127.0.0.1:{port}/ws/batches/{batch.pk}/", {"Cookie": cookie, "Origin": base}, clients
        ).start()
        try:
            wait_for(lambda: all(followers.messages), 60, "every client's first message")
            wait_for(lambda: lead_counts(batch.pk).get("succeeded", 0) >= leads // 4, 120, "a quarter done")
            procs.kill(web)
            log(f"SIGKILLed daphne: {lead_counts(batch.pk)}")
            procs.daphne(env, port)
            restarted = time.monotonic()
            log("started daphne again on the same port")
            wait_for(lambda: all(c >= 2 for c in followers.connects), 30, "every client to reconnect")
            log(f"all {clients} clients reconnected in {time.monotonic() - restarted:.1f}s")
            batch = wait_finished(batch.pk, timeout=300)
            snapshot = settle_followers(followers, base, token, batch.pk)
        finally:
            followers.stop()
    log(
        f"batch {batch.pk} {batch.status}: {lead_counts(batch.pk)}; "
        f"connects per client {sorted(set(followers.connects))}"
    )
    problems += followers.check_after(restarted, snapshot)
    if batch.status != "completed":
        problems.append(f"status {batch.status}")
    problems += ledger_check(batch.pk, expected_total=leads)
    log(
        "checked: every client reconnected and resynced from a snapshot, last message == status API, "
        "batch completed, ledger == call log"
    )
    return problems


if __name__ == "__main__":
    run_main("daphne_restart", drill)
