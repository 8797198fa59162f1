"""The CPO's cockpit in a real browser: dashboard, confirmation page, live charts, analytics, a report.

Same set-up as test_browser.py (daphne and qcluster subprocesses on the test database). Every page is
checked with axe-core (the npm package from node_modules, pinned by package-lock.json: `npm ci`) for
serious or critical WCAG 2.1 AA violations, and every request the browser makes is recorded: none may
leave the server under test. The screenshots of the README come from here: with
UPDATE_SCREENSHOTS=1 they are written to docs/, otherwise to the test's temporary directory.
"""

import os
from pathlib import Path

import pytest

from batches.models import BatchReport, BatchReportLead
from batches.selectors import batch_snapshot
from batches.tests.test_browser import (  # noqa: F401 (fixtures)
    ROOT,
    assert_not_reloaded,
    browser,
    cpo,
    logged_in_page,
    mark_page,
    servers,
    wait_until_finished,
)
from batches.tests.ui_fixtures import bulk_leads
from leadgen.display import usd
from leads.models import Lead

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING_IMPACTS = {"serious", "critical"}


@pytest.fixture
def axe_source() -> Path:
    if not AXE.exists():
        message = f"axe-core is not installed: run `npm ci` in {ROOT}"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return AXE


@pytest.fixture
def screenshots(tmp_path) -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs"
    return tmp_path


def assert_accessible(page, axe_source: Path, what: str) -> None:
    """No serious or critical WCAG 2.1 A/AA violation on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_source))
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_21_AA
    )
    blocking = [
        f"{violation['id']} ({violation['impact']}): {violation['help']} -- "
        + "; ".join(node["target"][0] if node["target"] else "?" for node in violation["nodes"][:5])
        for violation in result["violations"]
        if violation["impact"] in BLOCKING_IMPACTS
    ]
    assert not blocking, f"{what}: " + "\n".join(blocking)


class RequestLog:
    """Every URL the browser asks for (pages, scripts, styles, images, fetches, sockets)."""

    def __init__(self, context, page):
        self.urls: list[str] = []
        context.on("request", lambda request: self.urls.append(request.url))
        page.on("websocket", lambda socket: self.urls.append(socket.url))

    def outside(self, base_url: str) -> list[str]:
        host = base_url.split("://", 1)[1]
        allowed = (f"http://{host}/", f"ws://{host}/", "data:", "blob:")
        return [url for url in self.urls if not url.startswith(allowed)]


def chart_points(page, canvas_id: str) -> int:
    return int(page.get_attribute(f"#{canvas_id}", "data-points") or 0)


def test_cockpit_charts_grow_live_are_accessible_and_stay_on_the_server(
    servers,  # noqa: F811 (the fixtures of test_browser.py)
    browser,  # noqa: F811
    cpo,  # noqa: F811
    axe_source,
    screenshots,
):
    bulk_leads(40, prefix="Chart", industry=Lead.Industry.DENTIST)
    page = logged_in_page(browser, servers)
    requests = RequestLog(page.context, page)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto("/batches/")
    assert page.text_content("#nothing-running").startswith("No batch is running.")
    assert page.text_content("#site-name").strip() == "Leadgen"
    assert_accessible(page, axe_source, "empty dashboard")

    # Launch through the admin: the confirmation page is checked too.
    page.goto("/admin/leads/lead/?industry__exact=dentist")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "generate_reports")
    page.click("button[name=index]")
    page.wait_for_selector("[data-testid=total-usd]")
    assert page.text_content("[data-testid=total-usd]").startswith("$")
    assert_accessible(page, axe_source, "confirmation page")
    page.fill("#id_name", "Charted dentists")
    page.fill("#id_concurrency", "2")
    page.click("input[name=_launch]")
    page.wait_for_url("**/batches/*/")
    batch = BatchReport.objects.get(name="Charted dentists")

    # The live page: both charts drawn, and the progress chart grows without a reload.
    mark_page(page)
    page.wait_for_selector("#batch-connection[data-state=live]")
    page.wait_for_selector("#progress-chart[data-rendered=true]")
    page.wait_for_selector("#cost-chart[data-rendered=true]")
    before = chart_points(page, "progress-chart")
    page.wait_for_function(
        "(before) => Number(document.getElementById('progress-chart').dataset.points) >= before + 3",
        arg=before,
        timeout=30_000,
    )
    assert page.get_attribute("#batch-status", "data-status") in {"queued", "running"}
    assert chart_points(page, "cost-chart") == chart_points(page, "progress-chart")
    assert page.locator("#history-table tbody tr").count() >= before + 3
    assert page.text_content("#eta") != "0 s"
    assert_accessible(page, axe_source, "live page while running")
    page.wait_for_function("Number(document.getElementById('count-succeeded').textContent) >= 4")
    charts = page.locator(".batch-charts").bounding_box()
    page.screenshot(
        path=str(screenshots / "live-page.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1280, "height": charts["y"] + charts["height"] + 16},
    )

    # Meanwhile the dashboard shows the batch running, kept current from the status API.
    dashboard = page.context.new_page()
    dashboard.goto("/batches/")
    row = dashboard.locator(f"#running-batches tr[data-batch-id='{batch.pk}']")
    assert row.count() == 1
    assert row.locator("a").get_attribute("href") == f"/batches/{batch.pk}/"
    dashboard.wait_for_selector("#spend-chart[data-rendered=true]")
    first = float(row.locator("[role=progressbar]").get_attribute("aria-valuenow"))
    dashboard.wait_for_function(
        "([id, first]) => Number(document.querySelector(`#running-batches tr[data-batch-id='${id}'] "
        "[role=progressbar]`).getAttribute('aria-valuenow')) > first",
        arg=[batch.pk, first],
        timeout=30_000,
    )
    assert_accessible(dashboard, axe_source, "dashboard with a running batch")
    dashboard.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
    dashboard.close()

    wait_until_finished(page, timeout_ms=90_000)
    assert_not_reloaded(page)
    snapshot = batch_snapshot(batch_id=batch.pk)
    assert page.text_content("#cost-actual") == usd(snapshot["actual_cost_usd"])
    assert page.text_content("#eta") == "done"
    assert chart_points(page, "progress-chart") > before + 3

    # The analytics page shows the API's numbers.
    page.goto("/batches/analytics/?days=7")
    page.wait_for_selector("#spend-by-day-chart[data-rendered=true]")
    page.wait_for_selector("#spend-by-provider-chart[data-rendered=true]")
    api = page.request.get("/api/batches/analytics/?days=7").json()
    totals = api["totals"]
    assert page.text_content("[data-testid=total-batches]") == str(totals["batches"]) == "1"
    assert page.text_content("[data-testid=total-leads]") == str(totals["leads"]) == "40"
    assert page.text_content("[data-testid=total-spend]") == usd(totals["spend_usd"])
    assert page.text_content("[data-testid=success-rate]") == f"{totals['success_rate_percent']:.2f}%"
    assert page.text_content("[data-testid=duration-p50]") == f"{api['lead_duration_ms']['p50']} ms"
    assert page.text_content("[data-testid=duration-p95]") == f"{api['lead_duration_ms']['p95']} ms"
    assert api["by_provider"], "the batch made provider calls"
    for provider in api["by_provider"]:
        cell = page.locator(f"#by-provider tr[data-provider='{provider['provider']}'] [data-field=spend]")
        assert cell.text_content() == usd(provider["spend_usd"])
    for row in api["estimate_by_batch"]:
        cell = page.locator(f"#by-batch tr[data-batch-id='{row['id']}'] [data-field=error]")
        assert cell.text_content() == f"{row['error_percent']:.2f}%"
    today = api["by_day"][-1]
    assert page.text_content(f"#by-day tr[data-date='{today['date']}'] [data-field=spend]") == usd(
        today["spend_usd"]
    )
    assert_accessible(page, axe_source, "analytics page")
    page.screenshot(path=str(screenshots / "analytics.png"), full_page=False)

    # A report. Its Content-Security-Policy forbids every script, axe's too: this context lets the
    # test inject axe (only the test's own script; the page's policy is otherwise unchanged).
    lead_row = BatchReportLead.objects.filter(batch=batch, report__isnull=False).first()
    report_context = browser.new_context(
        base_url=servers.url, storage_state=page.context.storage_state(), bypass_csp=True
    )
    report_page = report_context.new_page()
    report_requests = RequestLog(report_context, report_page)
    report_page.goto(f"/reports/{lead_row.report_id}/")
    assert_accessible(report_page, axe_source, "report")
    report_context.close()
    assert report_requests.urls and report_requests.outside(servers.url) == []

    # A finished batch's live page draws its whole history on load.
    page.goto(f"/batches/{batch.pk}/")
    page.wait_for_selector("#progress-chart[data-rendered=true]")
    assert chart_points(page, "progress-chart") >= 2
    assert_accessible(page, axe_source, "live page of a finished batch")

    assert requests.urls, "no request was recorded"
    assert requests.outside(servers.url) == []
