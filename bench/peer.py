"""The peer the engine is measured against: the same leads run the plain Django way, without the engine.

    .venv/bin/python bench/peer.py [--leads 1000] [--latency-leads 400] [--only overhead|latency] [--no-save]

One django-q2 task per lead (ORM broker, the project's Q_CLUSTER settings) calls
`reports.services.report_generate` for its batch lead, which logs and bills every provider call as it
does for the engine, then saves the lead row (status, report, cost, duration) with a plain ORM `save`.
No budget ledger, no leases, no claims: each worker process holds one lead at a time, so keeping N leads
in flight takes Q_WORKERS=N processes. The tasks are enqueued with `async_task`, one call per lead, in
one transaction (they become visible to the workers at once, like a batch launch). Same machine and
set-up as bench/engine.py: PostgreSQL, Redis, fresh leads with unique domains (nothing cached),
sandbox providers, failure rate 0.

1. overhead: SANDBOX_LATENCY_MS=0, `--leads` leads, Q_WORKERS=2 (the engine's worker count) -> leads/s
   and CPU per lead;
2. latency-bound: SANDBOX_LATENCY_MS=300, `--latency-leads` leads, Q_WORKERS=20 (20 leads in flight,
   the engine's concurrency 20) -> leads/s, efficiency against the sandbox's critical path (as
   bench/engine.py computes it), and the memory of the qcluster's process tree sampled during the run
   (sum of RSS, and of PSS, which does not count pages shared by the forked workers once per process).

Throughput is leads / (last lead's finished_at - first lead's started_at), as the engine's is from
first claim to final status. The worker processes import this module for the task
(`bench.peer.peer_report_task`): manage.py puts the project root on sys.path.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (
    DATABASE,
    Figures,
    Processes,
    bench_env,
    cpu_seconds,
    cpu_spent,
    django_setup,
    fresh_database,
    lead_counts,
    log,
    make_leads,
    reported_and_paid_once,
    sample_tree_memory,
    wait_for,
)

DB = f"{DATABASE}_peer"
TASK = "bench.peer.peer_report_task"
MIB = 1024 * 1024


def peer_report_task(row_id: int) -> str:
    """One lead, the plain way: read the row and its lead, build the report, save the row."""
    from django.utils import timezone

    from batches.models import BatchReportLead
    from reports.services import report_generate

    started_at = timezone.now()
    started = time.monotonic()
    row = BatchReportLead.objects.select_related("lead").get(pk=row_id)
    row.attempts += 1
    row.run_attempts += 1
    outcome = report_generate(lead=row.lead, batch_lead_id=row.pk, attempt=row.attempts)
    error = outcome.error
    row.status = BatchReportLead.Status.SUCCEEDED if outcome.report else BatchReportLead.Status.FAILED
    row.report = outcome.report
    row.cost_usd = outcome.cost_usd
    row.cost_breakdown = outcome.cost_breakdown
    row.error_code = (error.code or "provider_error")[:50] if error else ""
    row.last_error = f"{error.provider}: {error.message}"[:2000] if error else ""
    row.duration_ms = int((time.monotonic() - started) * 1000)
    row.started_at = started_at
    row.finished_at = timezone.now()
    row.save(
        update_fields=[
            "attempts",
            "run_attempts",
            "status",
            "report",
            "cost_usd",
            "cost_breakdown",
            "error_code",
            "last_error",
            "duration_ms",
            "started_at",
            "finished_at",
            "updated_at",
        ]
    )
    return row.status


def peer_batch(lead_ids: list[int], *, name: str, workers: int):
    """A batch row and its lead rows, for the call log's batch_lead_id and the results (no ledger)."""
    from django.utils import timezone

    from batches.models import BatchReport, BatchReportLead

    batch = BatchReport.objects.create(
        name=name,
        status=BatchReport.Status.RUNNING,
        provider_mode="sandbox",
        concurrency=max(1, min(workers, 50)),
        queued_at=timezone.now(),
    )
    BatchReportLead.objects.bulk_create(
        [
            BatchReportLead(batch=batch, lead_id=lead_id, position=position)
            for position, lead_id in enumerate(lead_ids)
        ],
        batch_size=2000,
    )
    return batch


def peer_check(batch_id: int, *, expected_total: int) -> list[str]:
    """Every lead succeeded with its report, no (lead, provider) paid twice, lead costs == call log."""
    from django.db.models import Sum

    from batches.models import BatchReportLead

    problems = []
    rows = BatchReportLead.objects.filter(batch_id=batch_id)
    counts = lead_counts(batch_id)
    if counts.get("succeeded", 0) != expected_total:
        problems.append(f"expected {expected_total} succeeded, got {counts}")
    calls, found = reported_and_paid_once(rows)
    problems += found
    paid = calls.aggregate(total=Sum("cost_usd"))["total"] or 0
    rows_paid = rows.aggregate(total=Sum("cost_usd"))["total"] or 0
    if rows_paid != paid:
        problems.append(f"sum of lead costs {rows_paid} != call log {paid}")
    return problems


def run_peer(
    procs: Processes, env: dict, *, leads: int, workers: int, prefix: str, save: bool = True
) -> dict:
    """Run `leads` fresh leads as one task each on a qcluster of `workers` processes; the figures.
    `save=False` enqueues the tasks with django-q2's `save=False`: no result row for a success."""
    from django.db import transaction
    from django.db.models import Max, Min
    from django.utils import timezone
    from django_q.tasks import async_task

    from batches.models import BatchReport, BatchReportLead

    ids = make_leads(leads, prefix=prefix)
    batch = peer_batch(ids, name=f"peer {prefix}", workers=workers)
    rows = BatchReportLead.objects.filter(batch=batch).order_by("position")
    row_ids = list(rows.values_list("pk", flat=True))
    cluster = procs.qcluster(env, label=f"qcluster-peer-{prefix}")
    time.sleep(3 + workers * 0.1)  # let the cluster and its worker processes come up
    finished = BatchReportLead.objects.filter(batch=batch, status__in=BatchReportLead.FINISHED)
    with sample_tree_memory(cluster.pid) as memory:
        cpu_before = cpu_seconds()
        enqueue_started = time.monotonic()
        with transaction.atomic():
            for row_id in row_ids:
                async_task(TASK, row_id, save=save)
        enqueued = time.monotonic()
        wait_for(lambda: finished.count() >= leads, 1800, f"{leads} peer leads", interval=0.2)
        wall = time.monotonic() - enqueued
        spent = cpu_spent(cpu_before, cpu_seconds())
    procs.stop(cluster, grace=5.0)
    window = finished.aggregate(first=Min("started_at"), last=Max("finished_at"))
    elapsed = (window["last"] - window["first"]).total_seconds()
    BatchReport.objects.filter(pk=batch.pk).update(
        status=BatchReport.Status.COMPLETED, started_at=window["first"], finished_at=timezone.now()
    )
    problems = peer_check(batch.pk, expected_total=leads)
    log(
        f"peer {prefix}: {leads} leads on {workers} workers in {elapsed:.1f}s (wall from enqueue commit "
        f"{wall:.1f}s, enqueue {enqueued - enqueue_started:.1f}s), {lead_counts(batch.pk)}, "
        f"problems: {problems or 'none'}; memory: {memory.summary()}"
    )
    return {
        "batch": batch,
        "elapsed": elapsed,
        "wall": wall,
        "enqueue": enqueued - enqueue_started,
        "rate": leads / elapsed,
        "cpu_ms": {
            "all": sum(spent.values()) * 1000 / leads,
            "python": spent.get("python", 0.0) * 1000 / leads,
            "postgres": spent.get("postgres", 0.0) * 1000 / leads,
        },
        "memory": memory,
        "problems": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=1000, help="leads of the 0 ms run")
    parser.add_argument("--latency-leads", type=int, default=400, help="leads of the 300 ms run")
    parser.add_argument("--workers", type=int, default=2, help="Q_WORKERS of the 0 ms run")
    parser.add_argument("--latency-workers", type=int, default=20, help="Q_WORKERS of the 300 ms run")
    parser.add_argument("--only", choices=["overhead", "latency"], default=None)
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="enqueue with save=False: django-q2 stores no result for a successful task (with the "
        "project's save_limit of 1000, storing one locks and reads up to 1,000 result rows)",
    )
    args = parser.parse_args()
    save = not args.no_save
    variant = "" if save else ", tasks with save=False"

    base = bench_env(DB, SANDBOX_FAILURE_RATE="0")
    fresh_database(base)
    django_setup(base)
    figures = Figures(
        "Peer: one django-q2 task per lead (ORM broker, PostgreSQL + Redis, sandbox providers, no engine)"
    )
    stamp = int(time.time())
    with Processes("peer") as procs:
        if args.only in (None, "overhead"):
            env = bench_env(DB, SANDBOX_FAILURE_RATE="0", SANDBOX_LATENCY_MS="0", Q_WORKERS=args.workers)
            run = run_peer(
                procs, env, leads=args.leads, workers=args.workers, prefix=f"peerzero{stamp}", save=save
            )
            figures.add(
                f"peer throughput, 0 ms latency, {args.leads} leads, Q_WORKERS={args.workers}{variant}",
                f"{run['rate']:.1f} leads/s ({run['elapsed']:.1f} s; enqueue {run['enqueue']:.1f} s before)",
                passed=None if not run["problems"] else False,
            )
            cpu = run["cpu_ms"]
            figures.add(
                "CPU per lead, whole run (whole machine; python: workers and this script)",
                f"{cpu['all']:.2f} ms (python {cpu['python']:.2f}, postgres {cpu['postgres']:.2f})",
            )
        if args.only in (None, "latency"):
            from engine import critical_path_ms

            workers = args.latency_workers
            env = bench_env(DB, SANDBOX_FAILURE_RATE="0", SANDBOX_LATENCY_MS="300", Q_WORKERS=workers)
            run = run_peer(
                procs, env, leads=args.latency_leads, workers=workers, prefix=f"peerlat{stamp}", save=save
            )
            path_ms = critical_path_ms(run["batch"].pk, 300)
            ideal = workers / (path_ms / 1000)
            figures.add(
                f"peer throughput, 300 ms latency, {args.latency_leads} leads, Q_WORKERS={workers} "
                f"({workers} in flight){variant}",
                f"{run['rate']:.2f} leads/s = {run['rate'] / ideal:.3f} of ideal {ideal:.2f} "
                f"(critical path {path_ms:.0f} ms/lead)",
                passed=None if not run["problems"] else False,
            )
            memory = run["memory"]
            figures.add(
                f"qcluster process tree memory during that run ({memory.most_processes} processes)",
                f"RSS sum peak {memory.peak_rss / MIB:.0f} MiB, mean {memory.mean_rss / MIB:.0f} MiB; "
                f"PSS sum peak {memory.peak_pss / MIB:.0f} MiB, mean {memory.mean_pss / MIB:.0f} MiB",
            )
            cpu = run["cpu_ms"]
            figures.add(
                "CPU per lead, that run (whole machine)",
                f"{cpu['all']:.2f} ms (python {cpu['python']:.2f}, postgres {cpu['postgres']:.2f})",
            )
    figures.exit()


if __name__ == "__main__":
    main()
