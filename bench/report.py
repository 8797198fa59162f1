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

CPU time on a shared machine moves by a tenth between runs; instructions do not. Under valgrind,

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/report.%p \
        .venv/bin/python bench/report.py --leads 100 --warmup 10 --instructions

counts only the timed reports (the script switches the instrumentation on before them with
callgrind_control and reads the count after them) and prints the instructions per report: nearly the
same figure on every run of the same code, to compare two commits by.
"""

import argparse
import os
import resource
import signal
import subprocess
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


def _callgrind(*args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(os.getpid())], check=True, capture_output=True)


def _callgrind_instructions() -> int:
    """What callgrind has counted so far in this process, all threads (it counts from `--instr=on`)."""
    out = subprocess.run(
        ["callgrind_control", "-e", "Ir", str(os.getpid())], check=True, capture_output=True, text=True
    ).stdout
    # "  Totals:  Ir" then one "   Th <n>  <count>" line per thread.
    counts = [
        int(line.split()[2].replace(",", "")) for line in out.splitlines() if line.split()[:1] == ["Th"]
    ]
    if not counts:
        raise RuntimeError(f"no instruction count in callgrind_control's answer: {out}")
    return sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--instructions", action="store_true", help="running under callgrind (see above)")
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
    if args.instructions:
        _callgrind("--instr=on")
    machine_before, own_before, started = cpu_seconds(), _own_cpu(), time.perf_counter()
    failed = 0
    for lead in timed:
        outcome = report_generate(lead=lead, cache_lookup=False, partial=True)
        failed += outcome.report is None
    wall, own = time.perf_counter() - started, _own_cpu() - own_before
    instructions = _callgrind_instructions() if args.instructions else 0
    machine = cpu_spent(machine_before, cpu_seconds())

    count = len(timed)
    figures = Figures(f"One report at a time, one process, {count} leads, sandbox at 0 ms")
    figures.add("reports without a report (failed)", str(failed), "0", failed == 0)
    figures.add("this process's CPU per report", f"{own / count * 1000:.2f} ms")
    figures.add("PostgreSQL's CPU per report", f"{machine.get('postgres', 0.0) / count * 1000:.2f} ms")
    figures.add("wall time per report", f"{wall / count * 1000:.2f} ms")
    if args.instructions:
        figures.add("instructions per report (callgrind)", f"{instructions / count / 1e6:.3f} M")
    if sampler is not None:
        sampler.send_signal(signal.SIGINT)
        sampler.wait(timeout=60)
        summarize_profile(profile_path, top=40)
    figures.exit()


if __name__ == "__main__":
    main()
