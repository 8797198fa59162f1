"""Cost preview alone, in-process (target: 1,000 leads < 200 ms, 10,000 < 1 s).

    .venv/bin/python bench/preview.py

A quick check without servers: a fresh database of its own with 10,000 leads (unique domains), then
`batches.services.batch_preview_selection` for the first 1,000 and all 10,000 ids, 2 warm-up and 10
timed runs each, p50 against the target. `bench/web.py` measures the same through the HTTP API.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import DATABASE, Figures, bench_env, django_setup, fresh_database, make_leads, percentile


def main() -> None:
    env = bench_env(f"{DATABASE}_preview")
    fresh_database(env)
    django_setup(env)
    from batches.services import batch_preview_selection

    ids = make_leads(10_000, prefix="preview")
    figures = Figures("Cost preview, in-process (PostgreSQL)")
    for size, target in ((1_000, 200), (10_000, 1000)):
        for _ in range(2):
            batch_preview_selection(user=None, lead_ids=ids[:size])
        timings = []
        for _ in range(10):
            started = time.perf_counter()
            preview = batch_preview_selection(user=None, lead_ids=ids[:size])
            timings.append((time.perf_counter() - started) * 1000)
        p50 = percentile(timings, 0.5)
        figures.add(
            f"batch_preview_selection, {size} leads (total {preview.as_dict()['total_usd']} USD)",
            f"p50 {p50:.1f} ms, p95 {percentile(timings, 0.95):.1f} ms",
            f"p50 < {target} ms",
            p50 < target,
        )
    figures.exit()


if __name__ == "__main__":
    main()
