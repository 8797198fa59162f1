"""Benchmark of the batch cost preview (target: 1,000 leads < 200 ms, 10,000 < 1 s).

    .venv/bin/python bench/preview.py            # the whole preview against the configured database
                                                 # (creates bench leads if there are fewer than 10,000)

Times `batches.services.batch_preview_selection` (validation, the constant number of queries and the
pure arithmetic) for 1,000 and 10,000 leads, best of 5 runs.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadgen.settings")

import django

django.setup()

from batches.services import batch_preview_selection  # noqa: E402
from leads.models import Lead, domain_from_website  # noqa: E402


def ensure_leads(count: int) -> list[int]:
    missing = count - Lead.objects.count()
    if missing > 0:
        Lead.objects.bulk_create(
            [
                Lead(
                    company_name=f"Bench {i}",
                    website=f"https://bench{i}.example.com" if i % 10 else "",
                    domain=domain_from_website(f"https://bench{i}.example.com") if i % 10 else "",
                    email=f"x@bench{i}.example.com" if i % 4 else "",
                    industry=Lead.Industry.DENTIST,
                )
                for i in range(missing)
            ],
            batch_size=2000,
        )
    return list(Lead.objects.order_by("pk").values_list("pk", flat=True)[:count])


def main() -> None:
    ids = ensure_leads(10_000)
    for size, target in ((1_000, 0.2), (10_000, 1.0)):
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            preview = batch_preview_selection(user=None, lead_ids=ids[:size])
            timings.append(time.perf_counter() - started)
        best = min(timings)
        verdict = "ok" if best < target else "SLOW"
        print(
            f"{size:>6} leads: {best * 1000:7.1f} ms (target {target * 1000:.0f} ms) {verdict}; "
            f"total {preview.as_dict()['total_usd']} USD"
        )


if __name__ == "__main__":
    main()
