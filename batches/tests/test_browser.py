"""The whole path in a real browser: admin action, preview, launch, live page, cancel, reconnect.

A daphne subprocess serves the site and a qcluster subprocess runs the batches, both on the test
database (PostgreSQL; Redis too when REDIS_URL is set, as in CI), so the socket, the channel layer and
the engine are the real ones, in separate processes.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from batches import services
from batches.models import BatchReport
from batches.selectors import batch_snapshot
from batches.tests.ui_fixtures import bulk_leads
from leadgen.display import usd
from leadgen.embedded_db import database_url
from leads.models import Lead

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "browser-test-pw"
FINISHED = {"completed", "completed_with_errors", "cancelled", "failed"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The application name of the servers' database sessions (libpq reads PGAPPNAME), so that a test can
# wait for theirs to end without counting its own (its pool keeps some open).
SUBPROCESS_APPLICATION = "leadgen-test-server"


def subprocess_env() -> dict[str, str]:
    env = {
        "PGAPPNAME": SUBPROCESS_APPLICATION,
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "leadgen.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "DEBUG": "1",
        "PROVIDER_MODE": "sandbox",
        "SANDBOX_LATENCY_MS": "300",
        "SANDBOX_FAILURE_RATE": "0.05",
        "Q_WORKERS": "2",
        "CONN_MAX_AGE": "0",
        "RUNNER_SLICE_SECONDS": "20",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("COV_CORE_SOURCE", None)
    return env


class Daphne:
    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / "daphne.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "leadgen.asgi:application"],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/admin/login/", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"daphne did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def servers(django_db_setup, transactional_db, tmp_path):
    web = Daphne(tmp_path)
    web.start()
    workers = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=(tmp_path / "qcluster.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield web
    web.kill()
    stop_process_group(workers)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop the cluster and its worker processes, then wait until the servers' database sessions are gone."""
    os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(3)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                [SUBPROCESS_APPLICATION],
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.2)


@pytest.fixture
def cpo(django_user_model, transactional_db):
    return django_user_model.objects.create_superuser(
        username="cpo", email="cpo@example.com", password=PASSWORD
    )


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are still
    # plain synchronous code, so Django's async-safety guard does not apply to them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()
        # ORM calls made while Playwright's loop runs get their own connection (Django's connections
        # are per context); close it here or the test database cannot be dropped.
        connections.close_all()


def logged_in_page(browser, web: Daphne):
    page = browser.new_context(base_url=web.url).new_page()
    page.set_default_timeout(20_000)
    page.goto("/admin/login/")
    page.fill("#id_username", "cpo")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    return page


def mark_page(page) -> None:
    """A marker that a reload would wipe: proves updates arrived in place."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__notReloaded === true")


def wait_until_finished(page, timeout_ms: int = 45_000) -> None:
    page.wait_for_function(
        "(finished) => finished.includes(document.getElementById('batch-status').dataset.status)",
        arg=sorted(FINISHED),
        timeout=timeout_ms,
    )


def page_counts(page) -> dict[str, int]:
    keys = ["total", "pending", "processing", "succeeded", "failed", "skipped", "cancelled"]
    return {key: int(page.text_content(f"#count-{key}")) for key in keys}


def assert_progressbar_matches(page, snapshot: dict) -> None:
    bar = page.get_by_role("progressbar")
    assert bar.count() == 1
    assert bar.get_attribute("aria-valuemin") == "0"
    assert bar.get_attribute("aria-valuemax") == "100"
    assert float(bar.get_attribute("aria-valuenow")) == snapshot["progress_percent"]
    done = snapshot["total"] - snapshot["pending"] - snapshot["processing"]
    assert bar.get_attribute("aria-valuetext").startswith(f"{done} of {snapshot['total']} leads done")
    label = page.locator(f"#{bar.get_attribute('aria-labelledby')}")
    assert label.text_content().strip() == "Progress"
    live = page.locator("[aria-live=polite][role=status]")
    assert live.count() == 1
    assert f"{done} of {snapshot['total']} leads done" in live.text_content()


def test_action_preview_launch_live_progress_and_cancel(servers, browser, cpo):
    bulk_leads(110, prefix="Dent", industry=Lead.Industry.DENTIST)
    bulk_leads(12, prefix="Plumb", industry=Lead.Industry.PLUMBER)
    expected_total = services.batch_preview_selection(user=cpo, filters={"industry": "dentist"}).as_dict()[
        "total_usd"
    ]
    page = logged_in_page(browser, servers)

    page.goto("/admin/leads/lead/")
    page.click("#changelist-filter a:text-is('Dentist')")
    page.wait_for_url("**industry__exact=dentist**")
    page.check("#action-toggle")
    page.click(".actions .question a")
    page.select_option("select[name=action]", "generate_reports")
    page.click("button[name=index]")

    assert page.text_content("[data-testid=lead-count]") == "110"
    assert page.text_content("[data-testid=total-usd]") == usd(expected_total)
    page.fill("#id_name", "Browser dentists")
    page.click("input[name=_launch]")
    page.wait_for_url("**/batches/*/")
    batch = BatchReport.objects.get(name="Browser dentists")
    assert batch.leads.count() == 110
    mark_page(page)
    page.wait_for_selector("#batch-connection[data-state=live]")
    assert float(page.get_attribute("#batch-progress", "aria-valuenow")) < 100

    page.wait_for_function(
        "document.getElementById('batch-progress').getAttribute('aria-valuenow') === '100'", timeout=60_000
    )
    wait_until_finished(page)
    page.wait_for_function(
        "!document.querySelector('#lead-rows tr[data-status=pending], #lead-rows tr[data-status=processing]')"
    )
    assert_not_reloaded(page)
    snapshot = batch_snapshot(batch_id=batch.pk)
    assert page_counts(page) == {key: snapshot[key] for key in page_counts(page)}
    assert page.text_content("#cost-actual") == usd(snapshot["actual_cost_usd"])
    rows = page.locator("#lead-rows tbody tr")
    assert rows.count() == 100  # the first page of the table
    succeeded_rows = page.locator("#lead-rows tr[data-status=succeeded]")
    assert succeeded_rows.count() > 80
    assert succeeded_rows.first.locator("[data-field=report_url] a").count() == 1
    assert_progressbar_matches(page, snapshot)

    plumbers = list(Lead.objects.filter(industry=Lead.Industry.PLUMBER).values_list("pk", flat=True))
    other = services.batch_create_draft(user=cpo, lead_ids=plumbers, concurrency=1, name="To cancel")
    services.batch_launch(batch=other, user=cpo)
    page.goto(f"/batches/{other.pk}/")
    page.wait_for_selector("#batch-connection[data-state=live]")
    page.click("#cancel-button")
    page.wait_for_url(f"**/batches/{other.pk}/")
    wait_until_finished(page)
    other.refresh_from_db()
    assert other.status == BatchReport.Status.CANCELLED
    assert page.text_content("#batch-status") == "Cancelled"
    assert int(page.text_content("#count-cancelled")) == other.leads.filter(status="cancelled").count() > 0
    assert page.is_hidden("#cancel-form")


def test_page_reconnects_after_the_socket_server_restarts(servers, browser, cpo):
    leads = bulk_leads(60, prefix="Restart")
    batch = services.batch_create_draft(user=cpo, lead_ids=[lead.pk for lead in leads], concurrency=3)
    services.batch_launch(batch=batch, user=cpo)
    page = logged_in_page(browser, servers)
    page.goto(f"/batches/{batch.pk}/")
    mark_page(page)
    page.wait_for_selector("#batch-connection[data-state=live]")
    page.wait_for_function("Number(document.getElementById('count-succeeded').textContent) > 0")

    servers.kill()
    page.wait_for_selector("#batch-connection[data-state=reconnecting]")
    done_before = batch_snapshot(batch_id=batch.pk)["succeeded"]
    time.sleep(2)
    servers.start()

    page.wait_for_selector("#batch-connection[data-state=live]", timeout=30_000)
    wait_until_finished(page, timeout_ms=60_000)
    assert_not_reloaded(page)
    snapshot = batch_snapshot(batch_id=batch.pk)
    assert snapshot["succeeded"] > done_before
    assert page_counts(page) == {key: snapshot[key] for key in page_counts(page)}
    assert_progressbar_matches(page, snapshot)
    assert settings.ROOT_URLCONF  # the server under test used this project's settings


def test_page_falls_back_to_polling_when_the_socket_stays_silent(servers, browser, cpo):
    leads = bulk_leads(40, prefix="Blocked")
    batch = services.batch_create_draft(user=cpo, lead_ids=[lead.pk for lead in leads], concurrency=4)
    services.batch_launch(batch=batch, user=cpo)
    page = logged_in_page(browser, servers)
    # A proxy that accepts the upgrade and then passes nothing: the socket opens but stays silent.
    sockets = []
    page.route_web_socket("**/ws/batches/**", lambda ws: sockets.append(ws))
    page.goto(f"/batches/{batch.pk}/")
    mark_page(page)

    page.wait_for_selector("#batch-connection[data-state=polling]", timeout=15_000)
    wait_until_finished(page, timeout_ms=60_000)

    assert sockets, "the page never tried the socket"
    assert_not_reloaded(page)
    assert page.get_attribute("#batch-connection", "data-state") == "polling"
    snapshot = batch_snapshot(batch_id=batch.pk)
    assert page_counts(page) == {key: snapshot[key] for key in page_counts(page)}
    assert_progressbar_matches(page, snapshot)
