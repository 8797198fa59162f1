"""Engine throughput on real processes: PostgreSQL, Redis, one qcluster with Q_WORKERS=2, sandbox providers.

    .venv/bin/python bench/engine.py [--leads 2000] [--concurrency 20] [--profile]

Three batches, each on a fresh set of leads (unique domains, so nothing is cached), failure rate 0
unless said otherwise, the whole pipeline (claim, provider calls through the sandbox transport, call
log and cache writes, report content and HTML, settle, events):

1. engine overhead: SANDBOX_LATENCY_MS=0, `--leads` leads at `--concurrency` -> leads/s (target >= 200);
2. latency-bound efficiency: 1,000 leads, SANDBOX_LATENCY_MS=300, concurrency 20 -> throughput divided
   by (concurrency / per-lead latency), the per-lead latency being the sandbox's simulated critical path
   of each lead (slowest of the first providers + the LLM call), averaged (target >= 0.95), and the
   memory of the qcluster's process tree meanwhile (bench/peer.py measures the same for one django-q2
   task per lead);
3. the 1,000-lead batch at 300 ms, concurrency 20, with the default SANDBOX_FAILURE_RATE=0.05 (retries
   with backoff included): its duration (target: well inside 30 minutes).

Throughput is leads / (finished_at - started_at) of the batch (first claim to final status). With
`--profile`, py-spy samples the qcluster's processes during batch 1 and the hottest functions print.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (
    DATABASE,
    LOG_DIR,
    Figures,
    Processes,
    bench_env,
    cpu_seconds,
    cpu_spent,
    django_setup,
    fresh_database,
    launch,
    lead_counts,
    ledger_check,
    log,
    make_leads,
    mean,
    py_spy,
    sample_tree_memory,
    summarize_profile,
    wait_finished,
    wait_for,
)

DB = f"{DATABASE}_engine"


def run_batch(
    procs: Processes, env: dict, *, leads: int, concurrency: int, prefix: str, profile: bool = False
):
    ids = make_leads(leads, prefix=prefix)
    cluster = procs.qcluster(env, label=f"qcluster-{prefix}")
    time.sleep(3)  # let the cluster come up: the figure is about the engine, not process start-up
    spy = None
    if profile:
        spy = py_spy(cluster.pid, LOG_DIR / f"profile-{prefix}.txt")
    launched = time.monotonic()
    cpu_before = cpu_seconds()
    with sample_tree_memory(cluster.pid) as memory:
        batch = launch(lead_ids=ids, concurrency=concurrency, name=f"bench {prefix}")
        # CPU is read while the batch still runs: the workers' database sessions end with their runner
        # tasks, and the CPU of an ended process can no longer be read.
        done = wait_for(lambda: _succeeded_at_least(batch.pk, int(leads * 0.9)), 1800, "90% of the leads")
        spent = cpu_spent(cpu_before, cpu_seconds())
        batch = wait_finished(batch.pk, timeout=1800)
    wall = time.monotonic() - launched
    batch.memory = memory
    batch.cpu_ms_per_lead = {
        "all": sum(spent.values()) * 1000 / done,
        "python": spent.get("python", 0.0) * 1000 / done,
        "postgres": spent.get("postgres", 0.0) * 1000 / done,
    }
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    procs.stop(cluster, grace=1.0)
    elapsed = (batch.finished_at - batch.started_at).total_seconds()
    problems = ledger_check(batch.pk, expected_total=leads)
    log(
        f"{prefix}: {leads} leads in {elapsed:.1f}s (wall from launch {wall:.1f}s), "
        f"status {batch.status}, {lead_counts(batch.pk)}, problems: {problems or 'none'}"
    )
    return batch, elapsed, wall, problems


def _succeeded_at_least(batch_id: int, count: int) -> int:
    """The number of succeeded leads once it is at least `count`, else 0."""
    succeeded = lead_counts(batch_id).get("succeeded", 0)
    return succeeded if succeeded >= count else 0


def lead_paths(batch_id: int, latency: int) -> list[tuple[object, float]]:
    """Each lead row of the batch with its simulated critical path in ms: the slowest first-stage
    provider plus the LLM call, at `latency`."""
    from django.conf import settings

    from batches.models import BatchReportLead
    from reports import sandbox
    from reports.providers import applicable_providers

    settings.SANDBOX_LATENCY_MS = latency
    paths = []
    for row in BatchReportLead.objects.filter(batch_id=batch_id).select_related("lead"):
        lead = row.lead
        names = applicable_providers(has_website=bool(lead.website), has_email=bool(lead.email))
        first = [sandbox.latency_ms(name, lead.domain, 1) for name in names if name != "llm"]
        paths.append((row, max(first, default=0.0) + sandbox.latency_ms("llm", f"lead-{lead.pk}", 1)))
    return paths


def critical_path_ms(batch_id: int, latency: int) -> float:
    """Mean simulated critical path of the batch's leads."""
    return mean([path for _, path in lead_paths(batch_id, latency)])


def loss_breakdown(batch_id: int, latency: int) -> str:
    """Where a latency-bound batch loses against its ideal: the leads in flight on average (of the
    concurrency), and each lead's time beyond its own critical path (from its claim to its settle)."""
    from batches.models import BatchReport

    batch = BatchReport.objects.get(pk=batch_id)
    busy, over = 0.0, []
    for row, path in lead_paths(batch_id, latency):
        seconds = (row.finished_at - row.started_at).total_seconds()
        busy += seconds
        over.append(seconds * 1000 - path)
    over.sort()
    p50, p90 = over[len(over) // 2], over[int(len(over) * 0.9)]
    elapsed = (batch.finished_at - batch.started_at).total_seconds()
    return (
        f"in flight on average {busy / elapsed:.2f} of {batch.concurrency}; time over the critical path "
        f"per lead: mean {mean(over):.1f} ms, p50 {p50:.1f}, p90 {p90:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--runners", type=int, default=None, help="BATCH_RUNNERS_PER_BATCH (default 2)")
    parser.add_argument("--only", choices=["overhead", "latency"], default=None)
    args = parser.parse_args()
    extra = {} if args.runners is None else {"BATCH_RUNNERS_PER_BATCH": str(args.runners)}

    base = bench_env(DB, SANDBOX_FAILURE_RATE="0", **extra)
    fresh_database(base)
    django_setup(base)
    figures = Figures("Engine (PostgreSQL + Redis, 1 qcluster with Q_WORKERS=2, sandbox providers)")
    stamp = int(time.time())
    with Processes("engine") as procs:
        if args.only in (None, "overhead"):
            env = bench_env(DB, SANDBOX_FAILURE_RATE="0", SANDBOX_LATENCY_MS="0", **extra)
            batch, elapsed, wall, problems = run_batch(
                procs,
                env,
                leads=args.leads,
                concurrency=args.concurrency,
                prefix=f"zero{stamp}",
                profile=args.profile,
            )
            rate = args.leads / elapsed
            figures.add(
                f"engine overhead, 0 ms latency, {args.leads} leads, concurrency {args.concurrency}",
                f"{rate:.1f} leads/s",
                ">= 200 leads/s",
                rate >= 200 and not problems,
            )
            cpu = batch.cpu_ms_per_lead
            figures.add(
                "CPU per lead, first 90% of that batch (whole machine; python: workers and this script)",
                f"{cpu['all']:.2f} ms (python {cpu['python']:.2f}, postgres {cpu['postgres']:.2f})",
            )
            if args.profile:
                summarize_profile(LOG_DIR / f"profile-zero{stamp}.txt")
        if args.only in (None, "latency"):
            env = bench_env(DB, SANDBOX_FAILURE_RATE="0", SANDBOX_LATENCY_MS="300", **extra)
            batch, elapsed, wall, problems = run_batch(
                procs, env, leads=1000, concurrency=20, prefix=f"lat{stamp}"
            )
            path_ms = critical_path_ms(batch.pk, 300)
            ideal = 20 / (path_ms / 1000)
            rate = 1000 / elapsed
            efficiency = rate / ideal
            figures.add(
                "latency-bound efficiency, 300 ms, concurrency 20, 1000 leads",
                f"{efficiency:.3f} ({rate:.2f} leads/s of ideal {ideal:.2f}; "
                f"critical path {path_ms:.0f} ms/lead)",
                ">= 0.95",
                efficiency >= 0.95 and not problems,
            )
            figures.add("where that batch loses against its ideal", loss_breakdown(batch.pk, 300))
            figures.add("memory of the qcluster (1 + 2 processes) during that batch", batch.memory.summary())
            env = bench_env(DB, SANDBOX_FAILURE_RATE="0.05", SANDBOX_LATENCY_MS="300", **extra)
            batch, elapsed, wall, problems = run_batch(
                procs, env, leads=1000, concurrency=20, prefix=f"real{stamp}"
            )
            counts = lead_counts(batch.pk)
            figures.add(
                "1000-lead batch, 300 ms, concurrency 20, failure rate 0.05",
                f"{elapsed:.1f} s ({wall:.1f} s from launch); {counts}",
                "well inside 1800 s",
                elapsed < 600 and not problems,
            )
    figures.exit()


if __name__ == "__main__":
    main()
