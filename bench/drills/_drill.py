"""What the fault drills share: their settings, a reconnecting WebSocket follower, the report.

Each drill is a function `drill(env) -> list[str]` (the problems found; empty means it passed) that
expects this process's ORM to point at the database in `env["DATABASE_URL"]`. The scripts' `main()`
makes a fresh database first; batches/tests/test_drills.py runs the same functions on the test database.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _setup import (  # noqa: E402
    DATABASE,
    bench_env,
    django_setup,
    fresh_database,
    lead_counts,
    ledger_check,
    log,
)

# Short leases and slices so that a killed worker's leads come back within seconds, and a recovery
# that runs (as scheduled by the migration) every minute.
DRILL_SETTINGS = {
    "BATCH_LEASE_SECONDS": "5",
    "RUNNER_SLICE_SECONDS": "15",
    "SANDBOX_FAILURE_RATE": "0",
    "SANDBOX_LATENCY_MS": "200",
    "BATCH_RETRY_BASE_SECONDS": "1",
}


def drill_env(database: str, **overrides: object) -> dict[str, str]:
    return bench_env(database, **{**DRILL_SETTINGS, **{k: str(v) for k, v in overrides.items()}})


def run_main(name: str, drill, **overrides: object) -> None:
    """Fresh database, run the drill, print the verdict, exit non-zero on any problem."""
    env = drill_env(f"{DATABASE}_drill_{name}", **overrides)
    fresh_database(env)
    django_setup(env)
    started = time.monotonic()
    problems = drill(env)
    log(f"drill {name} took {time.monotonic() - started:.0f}s")
    if problems:
        print(f"DRILL {name}: FAILED")
        for problem in problems:
            print(f"  - {problem}")
        sys.exit(1)
    print(f"DRILL {name}: PASSED")


def check_after_kill(batch, *, leads: int, held_ids: list[int], held: str) -> list[str]:
    """The end of a kill drill: the batch completed with every lead succeeded, the leads `held` by the
    killed workers (`held_ids`) existed and were retried, and the ledger checks hold."""
    from batches.models import BatchReportLead

    problems = []
    counts = lead_counts(batch.pk)
    log(f"batch {batch.pk} {batch.status}: {counts}, actual cost {batch.actual_cost_usd}")
    if batch.status != "completed" or counts.get("succeeded") != leads:
        problems.append(f"expected {leads} succeeded and status completed, got {batch.status} {counts}")
    if not held_ids:
        problems.append(f"no lead {held}: nothing was tested")
    retried = BatchReportLead.objects.filter(pk__in=held_ids, attempts__gte=2).count()
    log(f"leads {held}: {len(held_ids)}, retried: {retried}")
    problems += ledger_check(batch.pk, expected_total=leads)
    log(
        "checked: batch completed, all leads succeeded with reports, no paid call repeated, "
        "actual cost == call log, nothing reserved"
    )
    return problems


def group_pids(pgid: int) -> set[int]:
    """The processes of a process group (a qcluster and its worker processes)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.add(int(entry.name))
    return pids


def lease_pids(batch_id: int) -> list[int]:
    """The worker pids holding leases of the batch (lease_owner is host:pid:uuid)."""
    from batches.models import BatchReportLead

    owners = BatchReportLead.objects.filter(batch_id=batch_id, status="processing").values_list(
        "lease_owner", flat=True
    )
    return [int(owner.split(":")[1]) for owner in owners if owner.count(":") == 2]


class Followers:
    """`count` WebSocket clients on a batch that reconnect (backoff 0.2 s doubling to 2 s) when the
    socket drops, as the live page does, in a background thread with its own event loop."""

    def __init__(self, url: str, headers: dict[str, str], count: int):
        self.url = url
        self.headers = headers
        self.count = count
        # Per client: (arrival, connection number, message).
        self.messages: list[list[tuple[float, int, dict]]] = [[] for _ in range(count)]
        self.connects = [0] * count
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> Followers:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _main(self) -> None:
        await asyncio.gather(*(self._follow(i) for i in range(self.count)))

    async def _follow(self, index: int) -> None:
        from websockets.asyncio.client import connect

        delay = 0.2
        while not self._stop.is_set():
            try:
                async with connect(self.url, additional_headers=self.headers, open_timeout=10) as socket:
                    self.connects[index] += 1
                    delay = 0.2
                    while not self._stop.is_set():
                        try:
                            raw = await asyncio.wait_for(socket.recv(), timeout=0.5)
                        except TimeoutError:
                            continue
                        self.messages[index].append((time.monotonic(), self.connects[index], json.loads(raw)))
            except Exception as exc:
                if len(self.errors) < 50:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def last_batch(self, index: int) -> dict | None:
        return self.messages[index][-1][2]["batch"] if self.messages[index] else None

    def check_after(self, fault: float, api_snapshot: dict) -> list[str]:
        """Every client got messages after the `fault` moment, every connection of it (the first one
        and each reconnection) began with a full snapshot, and its last message equals the status API
        (`api_snapshot`)."""
        problems = []
        for index in range(self.count):
            messages = self.messages[index]
            if not any(at > fault for at, _, _ in messages):
                problems.append(f"client {index}: no message after the fault")
                continue
            firsts = {}
            for _, connection, message in messages:
                firsts.setdefault(connection, message["type"])
            wrong = {connection: kind for connection, kind in firsts.items() if kind != "snapshot"}
            if wrong:
                problems.append(f"client {index}: connections not starting with a snapshot: {wrong}")
            last = self.last_batch(index)
            if last != api_snapshot:
                differing = sorted(key for key in api_snapshot if (last or {}).get(key) != api_snapshot[key])
                problems.append(f"client {index}: last message differs from the status API in {differing}")
        return problems


def api_snapshot(base_url: str, token: str, batch_id: int) -> dict:
    import httpx

    response = httpx.get(f"{base_url}/api/batches/{batch_id}/", headers={"Authorization": f"Token {token}"})
    response.raise_for_status()
    return response.json()


def settle_followers(followers: Followers, base_url: str, token: str, batch_id: int, timeout: float = 15):
    """Wait until every client's last message equals the status API (the terminal message is sent at
    once, but give slow clients a moment); returns the API snapshot."""
    deadline = time.monotonic() + timeout
    snapshot = api_snapshot(base_url, token, batch_id)
    while time.monotonic() < deadline:
        snapshot = api_snapshot(base_url, token, batch_id)
        if all(followers.last_batch(i) == snapshot for i in range(followers.count)):
            break
        time.sleep(0.5)
    return snapshot


__all__ = [
    "Followers",
    "api_snapshot",
    "drill_env",
    "group_pids",
    "lease_pids",
    "log",
    "run_main",
    "settle_followers",
]


def recover_until(batch_id: int, every: float) -> None:
    """Run the recovery every `every` seconds until the batch is finished (for a database without the
    migration's schedule, e.g. the test database after a flush)."""
    from django.db import connections

    from batches.engine import recover
    from batches.models import BatchReport

    try:
        while BatchReport.objects.filter(pk=batch_id, status__in=BatchReport.ACTIVE).exists():
            recover()
            time.sleep(every)
    finally:
        connections.close_all()
