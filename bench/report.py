"""One report at a time, in one process: what a report itself costs, without the engine around it.

    .venv/bin/python bench/report.py [--leads 300] [--warmup 30] [--profile]

A fresh database of its own, `--leads` leads with unique domains (nothing cached; every 4th without an
email, so Hunter runs for it), sandbox providers at 0 ms latency, failure rate 0. Each lead's report is
built the way the engine builds it (`report_generate(cache_lookup=False, partial=True)`, one attempt),
one after the other on the main thread. Prints the process's CPU per report (user + system, this
process only) and PostgreSQL's (its backends' CPU, from /proc), and the wall time per report.

At 0 ms both the engine and `bench/peer.py` are CPU-bound, and both spend most of it here, so this is
the figure that bounds them; unlike theirs it barely moves with what else the machine runs, because it
counts CPU, not seconds. `--profile`: py-spy samples the timed reports (threads holding the GIL only,
as `bench/engine.py --profile`) and prints the functions with the most inclusive and own time.
"""

import argparse
import os
import resource
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (
    DATABASE,
    LOG_DIR,
    Figures,
    bench_env,
    cpu_seconds,
    cpu_spent,
    django_setup,
    fresh_database,
    make_leads,
    py_spy,
    summarize_profile,
)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    env = bench_env(f"{DATABASE}_report", SANDBOX_LATENCY_MS="0", SANDBOX_FAILURE_RATE="0")
    fresh_database(env)
    django_setup(env)
    from leads.models import Lead
    from reports.services import report_generate

    ids = make_leads(args.warmup + args.leads, prefix="report")
    leads = list(Lead.objects.filter(pk__in=ids).order_by("pk"))
    warmup, timed = leads[: args.warmup], leads[args.warmup :]
    for lead in warmup:
        report_generate(lead=lead, cache_lookup=False, partial=True)

    profile_path = LOG_DIR / "report-profile.txt"
    sampler = None
    if args.profile:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        profile_path.unlink(missing_ok=True)
        sampler = py_spy(os.getpid(), profile_path)
        time.sleep(1)
    machine_before, own_before, started = cpu_seconds(), _own_cpu(), time.perf_counter()
    failed = 0
    for lead in timed:
        outcome = report_generate(lead=lead, cache_lookup=False, partial=True)
        failed += outcome.report is None
    wall, own = time.perf_counter() - started, _own_cpu() - own_before
    machine = cpu_spent(machine_before, cpu_seconds())

    count = len(timed)
    figures = Figures(f"One report at a time, one process, {count} leads, sandbox at 0 ms")
    figures.add("reports without a report (failed)", str(failed), "0", failed == 0)
    figures.add("this process's CPU per report", f"{own / count * 1000:.2f} ms")
    figures.add("PostgreSQL's CPU per report", f"{machine.get('postgres', 0.0) / count * 1000:.2f} ms")
    figures.add("wall time per report", f"{wall / count * 1000:.2f} ms")
    if sampler is not None:
        sampler.send_signal(signal.SIGINT)
        sampler.wait(timeout=60)
        summarize_profile(profile_path, top=40)
    figures.exit()


if __name__ == "__main__":
    main()
