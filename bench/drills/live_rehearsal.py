"""Live rehearsal: a batch with PROVIDER_MODE=live against a loopback stand-in for the five providers.

    .venv/bin/python bench/drills/live_rehearsal.py [--leads 60] [--scale 1.0]

One local HTTP server stands in for PageSpeed, SEMrush, ScreenshotOne, Hunter and the LLM, reached
through PROVIDER_BASE_URLS, and serves the leads' websites too. It answers with the providers' real
recorded answers in ../shared/provider-fixtures/ (SEMrush: the row of the database asked for, as
SEMrush does with `database` set), after the latencies the facts give (PageSpeed: the recorded
Lighthouse run, 20.6 s) times `scale`, and injects their real errors: Hunter's 403 (slow down) then
its 429 (plan used up, until fixed), ScreenshotOne's `concurrency_limit_reached`, OpenAI's
`insufficient_quota` (until fixed), and a site PageSpeed cannot load.

The batch runs in this process (runner slices on threads, as a qcluster worker runs them). Whenever it
pauses for a provider unavailable to every lead, the rehearsal fixes that provider and resumes.

Checks: the reports carry the SEMrush row of SEMRUSH_DATABASE and PageSpeed's real scores; every
PageSpeed call answered within its deadline succeeded on the first attempt; the site PageSpeed cannot
load gives a succeeded lead with a warning; Hunter's 429 and `insufficient_quota` each paused the batch
naming the provider and the reason, no lead failed for them, and resume finished the batch; the
actual cost equals the call log and is within 5% of the estimate. reports/tests/test_live_rehearsal.py
runs the same rehearsal at CI size.

Each lead's `domain` is its own name (`r<n>-<stamp>.rehearsal.test`) while its website is on the
stand-in, so each lead is its own cache subject.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "provider-fixtures"
PROVIDERS = ("pagespeed", "semrush", "screenshot", "hunter", "llm")
PAGESPEED_OK = "pagespeed/psi-v5_stores.airtel.in_desktop_lh11.0_measure-grill.json"
PAGESPEED_CANNOT_LOAD = "pagespeed/psi-v5_400_FAILED_DOCUMENT_REQUEST_lighthouse-issue-16900.json"
SEMRUSH_ALL_DATABASES = "semrush/domain_ranks_silktide.com_all-dbs_export_escape_silktide-semrush-api.txt"
HUNTER_OK = "hunter/domain-search_stripe.com_rohith016-python-email-gen-csv.json"
LLM_PLAIN = "llm/chat-completions_plain_gpt-4o_pydantic-ai-cassette_test_user_id.yaml"
LLM_INSUFFICIENT_QUOTA = "llm/error_429_insufficient_quota_via-proxy_smartdarisun.ir.json"
# Seconds at scale 1 besides PageSpeed's recorded run: the typical live latencies of
# reports.pricing.LIVE_EXPECTED_LATENCY_MS.
LATENCY = {"semrush": 0.6, "screenshot": 5.0, "hunter": 0.7, "llm": 4.0, "site": 0.8}
HUNTER_SLOW_DOWN = {
    "errors": [{"id": "too_many_requests", "code": 403, "details": "You have reached the rate limit."}]
}
HUNTER_PLAN_USED_UP = {
    "errors": [
        {
            "id": "too_many_requests",
            "code": 429,
            "details": "You have reached your usage limit. Upgrade your plan if necessary.",
        }
    ]
}
SCREENSHOT_CONCURRENCY = {
    "is_successful": False,
    "error_code": "concurrency_limit_reached",
    "error_message": "You reached the request concurrency limit, retry after a while.",
}
EXPECTED_PAUSES = ["hunter: plan usage limit reached (HTTP 429)", "llm: account out of credit (HTTP 429)"]
SITE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{name} | Dentist</title>'
    '<meta name="description" content="{name}, a family dentist.">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
    '<body><h1>{name}</h1><img src="/a.jpg"><img src="/b.jpg" alt="Team"></body></html>'
)


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (320, 200), (40, 120, 200)).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


class StandIn(ThreadingHTTPServer):
    """The five providers and the leads' websites on one loopback port, answering with real files.

    `break_provider(name, status, body, after=n)` makes every call to `name` after its next `n`
    successful answers answer that error, until `fix(name)`; `inject(name, status, body)` makes the
    next call answer it once; `cannot_load` holds the site keys (`/site/<key>/`) PageSpeed cannot load.
    """

    daemon_threads = True
    block_on_close = False
    # Every lead in flight calls five providers at once: more than the default backlog of 5.
    request_queue_size = 256

    def __init__(self, *, scale: float = 1.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scale = scale
        self.lock = threading.Lock()
        self.broken: dict[str, tuple[int, bytes]] = {}
        self.breaking: dict[str, tuple[int, int, bytes]] = {}
        self.once: dict[str, list[tuple[int, bytes]]] = {name: [] for name in PROVIDERS}
        self.cannot_load: set[str] = set()
        self.calls: list[tuple[str, int]] = []
        pagespeed = _fixture(PAGESPEED_OK)
        self.latency = {
            **LATENCY,
            "pagespeed": json.loads(pagespeed)["lighthouseResult"]["timing"]["total"] / 1000,
        }
        import yaml

        completion = yaml.safe_load(_fixture(LLM_PLAIN))["interactions"][0]["response"]["parsed_body"]
        summary = {
            "summary": "The site loads in about three seconds on a desktop and misses some basics.",
            "top_issues": ["Low contrast text", "Links without a discernible name"],
            "quick_wins": ["Raise the text contrast", "Name every link"],
        }
        completion["choices"][0]["message"]["content"] = json.dumps(summary)
        self.bodies = {
            "pagespeed": pagespeed,
            "hunter": _fixture(HUNTER_OK),
            "llm": json.dumps(completion).encode(),
            "screenshot": _jpeg(),
        }
        self.semrush_lines = _fixture(SEMRUSH_ALL_DATABASES).decode().splitlines()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def base_urls(self) -> dict[str, str]:
        return {name: f"{self.base_url}/{name}" for name in PROVIDERS}

    def site_url(self, key: str) -> str:
        return f"{self.base_url}/site/{key}/"

    def break_provider(self, name: str, status: int, body: dict, *, after: int = 0) -> None:
        with self.lock:
            if after:
                self.breaking[name] = (after, status, json.dumps(body).encode())
            else:
                self.broken[name] = (status, json.dumps(body).encode())

    def fix(self, name: str) -> None:
        with self.lock:
            self.broken.pop(name, None)

    def inject(self, name: str, status: int, body: dict) -> None:
        with self.lock:
            self.once[name].append((status, json.dumps(body).encode()))

    def __enter__(self):
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[str, int, str, bytes]:
        """(provider, status, content type, body) for one request."""
        name = path.strip("/").split("/")[0]
        if name == "site":
            key = path.strip("/").split("/")[1]
            time.sleep(self.latency["site"] * self.scale)
            return name, 200, "text/html; charset=utf-8", SITE.format(name=key.title()).encode()
        time.sleep(self.latency.get(name, 0) * self.scale)
        with self.lock:
            fault = self.broken.get(name) or (self.once[name].pop(0) if self.once.get(name) else None)
            if fault is None and name in self.breaking:
                left, status, body = self.breaking.pop(name)
                if left > 1:
                    self.breaking[name] = (left - 1, status, body)
                else:
                    self.broken[name] = (status, body)
        if fault is not None:
            return name, fault[0], "application/json", fault[1]
        if name == "pagespeed":
            site = urlsplit(query.get("url", [""])[0]).path.strip("/").split("/")[-1]
            if site in self.cannot_load:
                return name, 400, "application/json", _fixture(PAGESPEED_CANNOT_LOAD)
            return name, 200, "application/json; charset=UTF-8", self.bodies["pagespeed"]
        if name == "semrush":
            database = query.get("database", [""])[0]
            rows = [line for line in self.semrush_lines[1:] if line.startswith(f'"{database}";')]
            if not rows:
                return name, 200, "text/plain", b"ERROR 50 :: NOTHING FOUND"
            return (
                name,
                200,
                "text/plain; charset=utf-8",
                "\r\n".join([self.semrush_lines[0], *rows]).encode(),
            )
        if name == "screenshot":
            return name, 200, "image/jpeg", self.bodies["screenshot"]
        if name in self.bodies:
            return name, 200, "application/json", self.bodies[name]
        return name, 404, "text/plain", b"not a stand-in path"


class _Handler(BaseHTTPRequestHandler):
    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        url = urlsplit(self.path)
        name, status, content_type, body = self.server.answer(url.path, parse_qs(url.query))
        with self.server.lock:
            self.server.calls.append((name, status))
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format, *args):
        pass


# The default deadlines of leadgen/settings.py (PROVIDER_TIMEOUTS), scaled with the latencies.
DEADLINES = {
    "website": 15.0,
    "pagespeed": 120.0,
    "semrush": 20.0,
    "screenshot": 90.0,
    "hunter": 20.0,
    "llm": 60.0,
}


def live_settings(standin: StandIn, *, scale: float) -> dict[str, object]:
    """The settings of a live run against `standin`: its URLs, keys, and deadlines scaled (at least 2 s)."""
    return {
        "PROVIDER_MODE": "live",
        "PROVIDER_BASE_URLS": standin.base_urls(),
        # The leads' websites are on the loopback stand-in, which the egress policy refuses unless told.
        "EGRESS_ALLOWED_NETWORKS": ["127.0.0.1/32"],
        "PROVIDER_TIMEOUTS": {name: max(2.0, seconds * scale) for name, seconds in DEADLINES.items()},
        "SEMRUSH_DATABASE": "us",
        "PAGESPEED_API_KEY": "rehearsal-pagespeed",
        "SEMRUSH_API_KEY": "rehearsal-semrush",
        "SCREENSHOTONE_ACCESS_KEY": "rehearsal-screenshotone",
        "HUNTER_API_KEY": "rehearsal-hunter",
        "LLM_API_KEY": "rehearsal-llm",
    }


def make_leads(standin: StandIn, count: int) -> list[int]:
    from leads.models import Lead

    stamp = time.time_ns()
    leads = [
        Lead(
            company_name=f"Rehearsal {n} Dental",
            website=standin.site_url(f"r{n}"),
            domain=f"r{n}-{stamp}.rehearsal.test",
            email="",
            industry=Lead.Industry.DENTIST,
        )
        for n in range(count)
    ]
    return [lead.pk for lead in Lead.objects.bulk_create(leads)]


def run_until_stopped(batch_id: int, timeout: float):
    from batches.engine import run_slice
    from batches.models import BatchReport

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_slice(batch_id=batch_id, follow_up=False, max_seconds=max(1.0, deadline - time.monotonic()))
        batch = BatchReport.objects.get(pk=batch_id)
        if batch.is_finished or batch.status == BatchReport.Status.PAUSED:
            return batch
    raise AssertionError(f"batch {batch_id} neither finished nor paused in {timeout:.0f}s")


def rehearse(
    standin: StandIn, *, leads: int, concurrency: int, timeout: float, cannot_load: bool = True
) -> dict:
    """Run one batch through the stand-in's faults, fixing each provider the batch pauses for and
    resuming; returns what happened, for `problems()`."""
    from django.db.models import Sum

    from batches.models import BatchReport, BatchReportLead
    from batches.services import batch_create_and_launch, batch_resume
    from reports.models import ProviderCall

    ids = make_leads(standin, leads)
    if cannot_load:
        standin.cannot_load.add("r1")
    standin.inject("hunter", 403, HUNTER_SLOW_DOWN)
    standin.break_provider("hunter", 429, HUNTER_PLAN_USED_UP, after=3)
    standin.inject("screenshot", 400, SCREENSHOT_CONCURRENCY)
    standin.break_provider("llm", 429, json.loads(_fixture(LLM_INSUFFICIENT_QUOTA))["details"], after=2)
    batch, _ = batch_create_and_launch(
        user=None, lead_ids=ids, concurrency=concurrency, max_retries=3, name="live rehearsal", enqueue=False
    )
    pauses = []
    started = time.monotonic()
    while len(pauses) <= len(EXPECTED_PAUSES):
        batch = run_until_stopped(batch.pk, max(1.0, timeout - (time.monotonic() - started)))
        if batch.is_finished:
            break
        pauses.append((batch.stop_reason, batch.stop_detail))
        standin.fix(batch.stop_detail.split(":", 1)[0])
        batch = batch_resume(batch=batch, user=None)
    batch = BatchReport.objects.get(pk=batch.pk)
    rows = list(
        BatchReportLead.objects.filter(batch=batch).select_related("report", "lead").order_by("position")
    )
    calls = ProviderCall.objects.filter(batch_lead_id__in=[row.pk for row in rows])
    return {
        "batch": batch,
        "rows": rows,
        "pauses": pauses,
        "cannot_load": sorted(standin.cannot_load),
        "call_log_usd": calls.aggregate(total=Sum("cost_usd"))["total"] or Decimal("0"),
        "pagespeed_calls": list(
            calls.filter(provider="pagespeed").values_list("attempt", "status", "error_code")
        ),
    }


def problems(outcome: dict) -> list[str]:
    """What the rehearsal found wrong (empty: it passed)."""
    batch, rows, found = outcome["batch"], outcome["rows"], []
    pauses = sorted(detail for _, detail in outcome["pauses"])
    if pauses != EXPECTED_PAUSES or any(reason != "provider_unavailable" for reason, _ in outcome["pauses"]):
        found.append(f"pauses {outcome['pauses']}, expected one for each of {EXPECTED_PAUSES}")
    for row in rows:
        site = row.lead.website.rstrip("/").rsplit("/", 1)[-1]
        if site in outcome["cannot_load"]:
            warnings = getattr(row, "warnings", None)
            if row.status != "succeeded" or not warnings:
                found.append(
                    f"lead {site}: {row.status} ({row.error_code}), expected succeeded with a warning"
                )
            continue
        if row.status != "succeeded":
            found.append(f"lead {site}: {row.status} ({row.error_code}: {row.last_error})")
            continue
        data = row.report.data
        if data["seo"].get("search_rank") != 53439 or data["seo"].get("organic_traffic") != 11119:
            found.append(f"lead {site}: SEMrush data {data['seo']} is not the us row")
        if row.report.scores != {"performance": 72, "accessibility": 86, "seo": 92, "best_practices": 95}:
            found.append(f"lead {site}: PageSpeed scores {row.report.scores}")
    # Calls made (a resumed lead reuses what it had paid for: "cached"): every one a first-attempt
    # success but the site PageSpeed cannot load.
    made = [call for call in outcome["pagespeed_calls"] if call[1] != "cached"]
    wrong = [call for call in made if call[:2] != (1, "succeeded") and call[2] != "failed_document_request"]
    if wrong:
        found.append(f"PageSpeed calls that were not first-attempt successes: {wrong}")
    if not batch.is_finished:
        found.append(f"batch {batch.status} ({batch.stop_reason}: {batch.stop_detail})")
    if batch.actual_cost_usd != outcome["call_log_usd"]:
        found.append(f"actual cost {batch.actual_cost_usd} != call log {outcome['call_log_usd']}")
    if abs(batch.actual_cost_usd - batch.estimated_cost_usd) > batch.estimated_cost_usd * Decimal("0.05"):
        found.append(
            f"actual cost {batch.actual_cost_usd} not within 5% of the estimate {batch.estimated_cost_usd}"
        )
    return found


def main() -> None:
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _drill import run_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=60)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    standin = StandIn(scale=args.scale).__enter__()
    overrides = live_settings(standin, scale=args.scale)
    env = {
        key: ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
        for key, value in overrides.items()
    }

    def drill(env: dict) -> list[str]:
        return problems(
            rehearse(standin, leads=args.leads, concurrency=10, timeout=600 * max(args.scale, 0.1))
        )

    try:
        run_main("live_rehearsal", drill, **env)
    finally:
        standin.__exit__(None, None, None)


if __name__ == "__main__":
    main()
