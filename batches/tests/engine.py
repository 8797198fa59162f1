"""Helpers for the batch engine's tests: fast lead creation and running a batch to its end."""

from __future__ import annotations

import threading
import time

import httpx
from django.contrib.auth import get_user_model
from django.db import connections

from batches.engine import run_slice
from batches.models import BatchReport
from leads.models import Lead, domain_from_website


def make_leads(
    count: int, *, website: bool = True, email: bool = True, prefix: str = "lead", **fields
) -> list[Lead]:
    leads = []
    for i in range(count):
        site = f"https://{prefix}{i}.example.com" if website else ""
        leads.append(
            Lead(
                company_name=f"{prefix.title()} {i} Dental",
                website=site,
                domain=domain_from_website(site),
                email=f"info@{prefix}{i}.example.com" if email else "",
                industry=Lead.Industry.DENTIST,
                **fields,
            )
        )
    return Lead.objects.bulk_create(leads, batch_size=2000)


def make_user(username: str = "cpo", email: str = "cpo@example.com"):
    return get_user_model().objects.create_user(username=username, email=email, password="pw")


def run_to_end(batch_id: int, *, timeout: float = 60.0, workers: int | None = None) -> BatchReport:
    """Run runner slices in this process until the batch is finished."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            run_slice(batch_id=batch_id, follow_up=False, max_seconds=timeout, workers=workers)
            batch = BatchReport.objects.get(pk=batch_id)
            if batch.is_finished:
                return batch
        raise AssertionError(f"batch {batch_id} did not finish in {timeout}s")
    finally:
        if threading.current_thread() is not threading.main_thread():
            connections.close_all()


class ScriptedTransport(httpx.AsyncBaseTransport):
    """An httpx transport for `override_transport`: the sandbox, except scripted failures.

    `failures` maps (provider, domain) to how many calls fail with `status` before the sandbox answers
    (-1: always fail).
    """

    def __init__(self, failures: dict[tuple[str, str], int], status: int = 503):
        from reports.sandbox import SandboxTransport

        self.sandbox = SandboxTransport()
        self.failures = dict(failures)
        self.status = status
        self.calls: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    async def handle_async_request(self, request):
        from reports.providers.base import PROVIDER_EXTENSION

        provider = request.extensions.get(PROVIDER_EXTENSION, "")
        domains = {request.url.host.removeprefix("www."), *(v for _, v in request.url.params.multi_items())}
        for (name, domain), count in self.failures.items():
            if name != provider or not any(domain in value for value in domains):
                continue
            with self.lock:
                seen = self.calls.get((name, domain), 0)
                self.calls[(name, domain)] = seen + 1
            if count < 0 or seen < count:
                return httpx.Response(
                    self.status, json={"error": {"code": self.status, "message": "scripted"}}
                )
        return await self.sandbox.handle_async_request(request)
