"""Web figures on real processes: daphne + one qcluster (Q_WORKERS=2), PostgreSQL, Redis, sandbox providers.

    .venv/bin/python bench/web.py [--requests 300]

Data: 100,000 leads from `manage.py seed_leads --count 100000 --seed 1`.

1. admin leads changelist, 100,000 leads, two filters (`?industry=dentist&state=CA`) and the unfiltered
   first page, over HTTP to daphne with a staff session: 5 warm-up then 20 timed GETs each;
   p50 and p95 (target: p95 < 500 ms);
2. cost preview for 1,000 and 10,000 lead ids: `batches.services.batch_preview_selection` in this
   process and `POST /api/batches/preview/` over HTTP (token auth), 2 warm-up then 10 timed each;
   target on the API's p50 (what a client waits for): < 200 ms and < 1 s;
3. status API `GET /api/batches/<id>/` while a 10,000-lead batch runs (300 ms latency, failure rate
   0.05, concurrency 20, both qcluster workers busy): `--requests` sequential GETs over a keep-alive
   connection; p50 / p95 (target: p95 < 50 ms). The batch is cancelled afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (
    DATABASE,
    Figures,
    Processes,
    batch_status,
    bench_env,
    django_setup,
    free_port,
    fresh_database,
    lead_counts,
    log,
    manage,
    percentile,
    session_cookie,
    staff_user,
    wait_finished,
    wait_for,
)

DB = f"{DATABASE}_web"


def timed(call, *, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.5):.1f} ms, p95 {percentile(values, 0.95):.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--leads", type=int, default=100_000)
    args = parser.parse_args()

    env = bench_env(DB, SANDBOX_LATENCY_MS="300", SANDBOX_FAILURE_RATE="0.05")
    fresh_database(env)
    started = time.monotonic()
    manage(env, "seed_leads", "--count", str(args.leads), "--seed", "1", "-v0")
    log(f"seeded {args.leads} leads in {time.monotonic() - started:.1f}s")
    manage(env, "shell", "-c", "from django.db import connection; connection.cursor().execute('ANALYZE')")
    django_setup(env)
    from batches.services import batch_cancel, batch_create_and_launch, batch_preview_selection
    from leads.models import Lead

    user, token = staff_user()
    cookie = session_cookie(user)
    figures = Figures("Web (daphne + qcluster Q_WORKERS=2, PostgreSQL + Redis, 100,000 leads)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Processes("web") as procs, httpx.Client(base_url=base, timeout=30) as client:
        procs.daphne(env, port)
        admin_headers = {"Cookie": cookie}
        for label, query in (
            ("two filters (industry=dentist, state=CA)", "?industry=dentist&state=CA"),
            ("no filter, first page", ""),
        ):

            def get(query=query):
                response = client.get(f"/admin/leads/lead/{query}", headers=admin_headers)
                assert response.status_code == 200, (response.status_code, response.text[:300])

            timings = timed(get, warmup=5, runs=20)
            figures.add(
                f"admin changelist, {args.leads} leads, {label}",
                ms(timings),
                "p95 < 500 ms",
                percentile(timings, 0.95) < 500,
            )

        ids = list(Lead.objects.order_by("pk").values_list("pk", flat=True)[:10_000])
        api_headers = {"Authorization": f"Token {token}"}
        for size, target in ((1_000, 200), (10_000, 1000)):
            service = timed(
                lambda size=size: batch_preview_selection(user=user, lead_ids=ids[:size]), warmup=2, runs=10
            )

            def post(size=size):
                response = client.post(
                    "/api/batches/preview/", json={"lead_ids": ids[:size]}, headers=api_headers
                )
                assert response.status_code == 200, (response.status_code, response.text[:300])

            api = timed(post, warmup=2, runs=10)
            figures.add(
                f"cost preview, {size} leads: API POST /api/batches/preview/",
                ms(api),
                f"p50 < {target} ms",
                percentile(api, 0.5) < target,
            )
            figures.add(f"cost preview, {size} leads: service in-process", ms(service))

        workers = procs.qcluster(env)
        batch, _ = batch_create_and_launch(user=user, lead_ids=ids, concurrency=20, include_recent=True)
        wait_for(lambda: lead_counts(batch.pk).get("succeeded", 0) >= 40, 120, "the batch to get going")
        before = lead_counts(batch.pk)

        def status():
            response = client.get(f"/api/batches/{batch.pk}/", headers=api_headers)
            assert response.status_code == 200, (response.status_code, response.text[:300])

        timings = timed(status, warmup=5, runs=args.requests)
        after = lead_counts(batch.pk)
        running = batch_status(batch.pk)
        log(f"status API sampled while batch {batch.pk} was {running}: {before} -> {after}")
        figures.add(
            f"status API GET /api/batches/<id>/, 10,000-lead batch running ({args.requests} requests)",
            ms(timings),
            "p95 < 50 ms",
            percentile(timings, 0.95) < 50 and running == "running",
        )
        batch_cancel(batch=batch, user=user)
        wait_finished(batch.pk, timeout=120)
        procs.stop(workers, grace=2)
    figures.exit()


if __name__ == "__main__":
    main()
