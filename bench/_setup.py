"""Shared set-up of the benchmarks and fault drills: a database of their own, real processes, checks.

Every script runs against PostgreSQL and Redis with sandbox providers:

- `BENCH_DATABASE` (default `leadgen_bench`) on `BENCH_PG` (default postgres://postgres@127.0.0.1:5432)
  is dropped, created and migrated by `fresh_database()`;
- `BENCH_REDIS_URL` (default redis://127.0.0.1:6379/6) carries the channel layer and the cache;
- qcluster (Q_WORKERS=2) and daphne run as subprocesses in their own process groups and are always
  stopped (`Processes` is a context manager).

The script's own process uses the same settings (`django_setup()`), so batches it launches through
`batches.services` are queued for the qcluster it started.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", "/tmp/leadgen-bench"))  # noqa: S108
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DATABASE = os.environ.get("BENCH_DATABASE", "leadgen_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bench_env(database: str = DATABASE, **overrides: object) -> dict[str, str]:
    """The environment of the script and of every process it starts (production-like: DEBUG=0).

    Each script uses its own database (`DATABASE` plus a suffix), so scripts may run side by side.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COV_", "PYTEST_", "DJANGO_SETTINGS"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "leadgen.settings",
            "DATABASE_URL": f"{PG}/{database}",
            "REDIS_URL": REDIS_URL,
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "PROVIDER_MODE": "sandbox",
            "Q_WORKERS": "2",
            "LOG_LEVEL": "WARNING",
            # The benchmarks spend far more than a day's default budget in sandbox dollars.
            "DAILY_BUDGET_USD": "10000000",
            "MEDIA_ROOT": str(LOG_DIR / "media"),
        }
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fresh_database(env: dict[str, str]) -> None:
    """Drop and create the bench database, then migrate it (in a subprocess, with `env`)."""
    import psycopg

    name = env["DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    manage(env, "migrate", "--noinput", "-v0")


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def django_setup(env: dict[str, str]) -> None:
    """Configure this process like the servers it starts (call once, before using the ORM)."""
    os.environ.update(env)
    import django

    django.setup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Processes:
    """Real qcluster / daphne / redis-server subprocesses, each in its own process group, all stopped
    on exit (SIGTERM, then SIGKILL after `grace` seconds)."""

    def __init__(self, name: str):
        self.name = name
        self.running: list[subprocess.Popen] = []
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc) -> None:
        for process in list(self.running):
            self.stop(process, grace=2.0)

    def _start(self, label: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        logfile = (LOG_DIR / f"{self.name}-{label}.log").open("a")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
        )
        process.label = label  # type: ignore[attr-defined]
        self.running.append(process)
        return process

    def qcluster(self, env: dict[str, str], label: str = "qcluster") -> subprocess.Popen:
        return self._start(label, [sys.executable, "manage.py", "qcluster"], env)

    def daphne(self, env: dict[str, str], port: int, label: str = "daphne") -> subprocess.Popen:
        process = self._start(
            label, [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "leadgen.asgi:application"], env
        )
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{port}/admin/login/"), 60, "daphne to answer")
        return process

    def redis(self, port: int, label: str = "redis") -> subprocess.Popen:
        process = self._start(
            label,
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            dict(os.environ),
        )
        wait_for(lambda: _redis_ok(port), 20, f"redis on {port}")
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the whole process group (a qcluster and its worker processes die at once)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(20)
        if process in self.running:
            self.running.remove(process)

    def stop(self, process: subprocess.Popen, grace: float = 5.0) -> None:
        """SIGTERM to the leader only (a qcluster then stops its workers itself; signalling them too
        can hang it), SIGKILL to the whole group after `grace` seconds."""
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
        self.kill(process)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def _redis_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def make_leads(count: int, *, prefix: str) -> list[int]:
    """`count` leads with unique (so uncached) domains; every 4th has no email (Hunter applies)."""
    from leads.models import Lead, domain_from_website

    rows = []
    for i in range(count):
        site = f"https://{prefix}-{i}.example.com"
        rows.append(
            Lead(
                company_name=f"{prefix.title()} {i} Dental",
                website=site,
                domain=domain_from_website(site),
                email="" if i % 4 == 0 else f"info@{prefix}-{i}.example.com",
                industry=Lead.Industry.DENTIST,
                state="CA",
            )
        )
    return [lead.pk for lead in Lead.objects.bulk_create(rows, batch_size=2000)]


def staff_user(username: str = "bench"):
    """A staff user allowed to view and run batches, with an API token."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    user, _ = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, "email": f"{username}@example.com"}
    )
    user.set_password("bench-password")
    user.save()
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=["batches", "leads", "reports"],
            codename__in=[
                "view_batchreport",
                "add_batchreport",
                "change_batchreport",
                "run_batch",
                "view_batchreportlead",
                "view_lead",
                "change_lead",
                "view_report",
            ],
        )
    )
    token, _ = Token.objects.get_or_create(user=user)
    return user, token.key


def session_cookie(user) -> str:
    """A logged-in session for `user` (what the browser's sessionid cookie carries)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def launch(*, lead_ids: list[int], concurrency: int, user=None, max_retries: int = 3, name: str = ""):
    from batches.services import batch_create_and_launch

    batch, _ = batch_create_and_launch(
        user=user, lead_ids=lead_ids, concurrency=concurrency, max_retries=max_retries, name=name
    )
    return batch


def batch_status(batch_id: int) -> str:
    from batches.models import BatchReport

    return BatchReport.objects.filter(pk=batch_id).values_list("status", flat=True).get()


def wait_finished(batch_id: int, timeout: float):
    from batches.models import BatchReport

    wait_for(lambda: batch_status(batch_id) in BatchReport.FINISHED, timeout, f"batch {batch_id} to finish")
    return BatchReport.objects.get(pk=batch_id)


def lead_counts(batch_id: int) -> dict[str, int]:
    from django.db.models import Count

    from batches.models import BatchReportLead

    return dict(
        BatchReportLead.objects.filter(batch_id=batch_id)
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )


def reported_and_paid_once(rows) -> tuple[object, list[str]]:
    """The call log of the batch lead `rows`, and what is wrong with them: a succeeded lead without its
    report, or a (batch lead, provider) with more than one succeeded paid call."""
    from django.db.models import Count

    from reports.models import ProviderCall

    problems = []
    no_report = rows.filter(status="succeeded", report__isnull=True).count()
    if no_report:
        problems.append(f"{no_report} succeeded leads without a report")
    calls = ProviderCall.objects.filter(batch_lead_id__in=rows.values("pk"))
    twice = list(
        calls.filter(status="succeeded", cost_usd__gt=0)
        .values("batch_lead_id", "provider")
        .annotate(n=Count("id"))
        .filter(n__gt=1)[:10]
    )
    if twice:
        problems.append(f"paid twice: {twice}")
    return calls, problems


def ledger_check(batch_id: int, *, expected_total: int) -> list[str]:
    """The crash-safety invariants of a finished batch; returns the violations (empty: all hold).

    Nothing lost (every lead in a final state, every succeeded lead has its report), nothing paid twice
    (per batch lead and provider at most one succeeded paid call), the ledger equals the call log, and
    no reservation is left behind (batch and daily ledger).
    """
    from django.db.models import Sum

    from batches.models import BatchReport, BatchReportLead, DailySpend

    problems = []
    batch = BatchReport.objects.get(pk=batch_id)
    rows = BatchReportLead.objects.filter(batch_id=batch_id)
    counts = lead_counts(batch_id)
    if sum(counts.values()) != expected_total:
        problems.append(f"{sum(counts.values())} lead rows, expected {expected_total}")
    open_rows = counts.get("pending", 0) + counts.get("processing", 0)
    if open_rows:
        problems.append(f"{open_rows} leads left pending/processing")
    if batch.status not in BatchReport.FINISHED:
        problems.append(f"batch status {batch.status}")
    calls, found = reported_and_paid_once(rows)
    problems += found
    paid = calls.aggregate(total=Sum("cost_usd"))["total"] or Decimal("0")
    if batch.actual_cost_usd != paid:
        problems.append(f"actual_cost_usd {batch.actual_cost_usd} != call log {paid}")
    rows_paid = rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal("0")
    if rows_paid != paid:
        problems.append(f"sum of lead costs {rows_paid} != call log {paid}")
    if batch.reserved_usd != 0:
        problems.append(f"batch reserved_usd {batch.reserved_usd} != 0")
    daily_reserved = DailySpend.objects.aggregate(total=Sum("reserved_usd"))["total"] or Decimal("0")
    if daily_reserved != 0:
        problems.append(f"DailySpend reserved {daily_reserved} != 0")
    return problems


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far by every process on the machine, summed by command name.

    The difference of two readings is what each kind of process (`python` for the workers, `postgres`
    for the database) spent in between; processes that exit in between are not counted.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    totals: collections.Counter = collections.Counter()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        totals[f"{entry}:{name}"] = (int(fields[11]) + int(fields[12])) / ticks
    return dict(totals)


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds spent between two `cpu_seconds()` readings, by command name."""
    spent: collections.Counter = collections.Counter()
    for key, seconds in after.items():
        spent[key.split(":", 1)[1]] += seconds - before.get(key, 0.0)
    return dict(spent)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants alive now (children found through /proc's parent pids)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children[int(stat[stat.rindex(")") + 2 :].split()[1])].append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def tree_memory(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, processes) of `pid` and its descendants now, in bytes, from /proc/<pid>/smaps_rollup.

    RSS counts a page shared by forked workers once per process; PSS splits it between them, so the
    PSS sum is what the tree really occupies.
    """
    rss = pss = count = 0
    for member in process_tree(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        for line in rollup.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
    return rss, pss, count


class MemorySamples:
    """The readings of `sample_tree_memory`: one (RSS, PSS, processes) per interval."""

    def __init__(self) -> None:
        self.readings: list[tuple[int, int, int]] = []

    @property
    def peak_rss(self) -> int:
        return max((rss for rss, _, _ in self.readings), default=0)

    @property
    def mean_rss(self) -> float:
        return mean([rss for rss, _, _ in self.readings])

    @property
    def peak_pss(self) -> int:
        return max((pss for _, pss, _ in self.readings), default=0)

    @property
    def mean_pss(self) -> float:
        return mean([pss for _, pss, _ in self.readings])

    @property
    def most_processes(self) -> int:
        return max((count for _, _, count in self.readings), default=0)

    def summary(self) -> str:
        mib = 1024 * 1024
        return (
            f"RSS peak {self.peak_rss / mib:.0f} MiB, mean {self.mean_rss / mib:.0f} MiB; "
            f"PSS peak {self.peak_pss / mib:.0f} MiB, mean {self.mean_pss / mib:.0f} MiB "
            f"({self.most_processes} processes, {len(self.readings)} samples)"
        )


@contextlib.contextmanager
def sample_tree_memory(pid: int, interval: float = 0.5):
    """Sample the memory of `pid` and its descendants (e.g. a qcluster and its worker processes) every
    `interval` seconds in a background thread while the block runs; yields the `MemorySamples`.

        with sample_tree_memory(cluster.pid) as memory:
            ...
        log(memory.summary())
    """
    samples = MemorySamples()
    stop = threading.Event()

    def sample() -> None:
        while True:
            samples.readings.append(tree_memory(pid))
            if stop.wait(interval):
                break

    thread = threading.Thread(target=sample, name="memory-sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


class Figures:
    """The figures of one script: printed as a table; `exit()` is non-zero when a target is missed."""

    def __init__(self, title: str):
        self.title = title
        self.rows: list[tuple[str, str, str, bool | None]] = []

    def add(self, figure: str, measured: str, target: str = "", passed: bool | None = None) -> None:
        self.rows.append((figure, measured, target, passed))

    def print(self) -> None:
        headers = ("figure", "measured", "target", "result")
        lines = [
            (figure, measured, target, "-" if passed is None else ("PASS" if passed else "MISS"))
            for figure, measured, target, passed in self.rows
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
        print(f"\n{self.title}")
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for line in lines:
            print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        results_file = os.environ.get("BENCH_RESULTS")
        if results_file:
            with open(results_file, "a") as out:
                out.write(json.dumps({"title": self.title, "rows": self.rows}) + "\n")

    def exit(self) -> None:
        self.print()
        sys.exit(1 if any(passed is False for *_, passed in self.rows) else 0)


def py_spy(pid: int, out: Path) -> subprocess.Popen:
    """Sample `pid` and its subprocesses with py-spy (pip install py-spy; profiling only) until SIGINT."""
    return subprocess.Popen(
        [
            str(BIN / "py-spy"),
            "record",
            "--subprocesses",
            "--format",
            "raw",
            "--rate",
            "100",
            "-p",
            str(pid),
            "-o",
            str(out),
            "--nonblocking",
            # Only the samples of threads holding the GIL: where the Python CPU goes, not where threads
            # wait (py-spy cannot tell a thread blocked in a C call, psycopg's wait or a select, from
            # one working).
            "--gil",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_profile(path: Path, top: int = 25) -> None:
    """Self time and inclusive time per function from py-spy's raw (collapsed) stacks."""
    if not path.exists():
        log(f"no profile at {path}")
        return
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [
            frame.split(" (")[0] + " (" + frame.split("(")[-1].split(":")[0] + ")"
            for frame in stack.split(";")
        ]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"\nprofile {path} ({total} samples of threads holding the GIL)")
    print("inclusive:")
    for frame, n in inclusive.most_common(top):
        print(f"  {n * 100 / total:5.1f}%  {frame}")
    print("self:")
    for frame, n in own.most_common(top):
        print(f"  {n * 100 / total:5.1f}%  {frame}")
