"""The live progress page as the server renders it (useful without JavaScript), and its POST views."""

import pytest
from django.urls import reverse

from batches.models import BatchReport
from batches.selectors import batch_snapshot
from batches.tests.ui_fixtures import ElementIndex, make_batch, make_user
from reports.models import Report

VIEWER_PERMS = ("batches.view_batchreport", "reports.view_report")
RUNNER_PERMS = ("batches.view_batchreport", "batches.run_batch", "reports.view_report")
FAILED_AND_MORE = ["succeeded", "succeeded", "failed", "failed", "failed", "processing", "pending", "pending"]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def runner(django_user_model, client):
    user = make_user(django_user_model, "runner", perms=RUNNER_PERMS)
    client.force_login(user)
    return user


@pytest.mark.django_db
def test_page_renders_the_snapshot_with_an_accessible_progress_bar(client, runner):
    batch = make_batch(user=runner, statuses=FAILED_AND_MORE, error="Timed out", error_code="timeout")
    snapshot = batch_snapshot(batch_id=batch.pk)

    response = client.get(reverse("batches:detail", args=[batch.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    index = ElementIndex(html)
    bar = index.by_id["batch-progress"]
    assert snapshot["progress_percent"] == 62.5  # 5 of 8 done
    assert bar["role"] == "progressbar"
    assert (bar["aria-valuemin"], bar["aria-valuemax"], bar["aria-valuenow"]) == ("0", "100", "62.5")
    assert bar["aria-valuetext"] == "5 of 8 leads done (62.5%)"
    assert index.by_id[bar["aria-labelledby"]]["<tag>"] == "span"
    live = index.by_id["batch-announcer"]
    assert (live["role"], live["aria-live"]) == ("status", "polite")
    assert "5 of 8 leads done; status running." in html

    for key, value in [("total", 8), ("pending", 2), ("processing", 1), ("succeeded", 2), ("failed", 3)]:
        assert f'<dd id="count-{key}">{value}</dd>' in html
    assert '<dd id="cost-estimated">$1.2345</dd>' in html
    assert '<dd id="cost-actual">$0.0000</dd>' in html
    assert "sandbox — no provider is charged" in html
    assert html.count('<tr data-lead-id="') == 8
    assert '<code>timeout</code> Timed out</td><td class="num">3</td>' in html
    assert "hidden" not in index.by_id["cancel-form"]
    assert "hidden" in index.by_id["retry-form"]
    assert index.by_id["download-csv"]["href"] == f"/api/batches/{batch.pk}/export.csv"
    assert index.by_id["download-zip"]["href"] == f"/api/batches/{batch.pk}/reports.zip"
    root = index.by_id["batch-live"]
    assert root["data-ws-url"] == f"/ws/batches/{batch.pk}/"
    assert root["data-status-url"] == f"/api/batches/{batch.pk}/"
    assert '<script id="batch-snapshot" type="application/json">' in html
    assert "batches/live.js" in html


@pytest.mark.django_db
def test_finished_batch_with_failures_offers_retry_not_cancel_and_live_mode_has_no_sandbox_label(
    client, runner
):
    batch = make_batch(
        user=runner,
        statuses=["succeeded", "failed"],
        status=BatchReport.Status.COMPLETED_WITH_ERRORS,
        provider_mode="live",
    )
    response = client.get(reverse("batches:detail", args=[batch.pk]))
    index = ElementIndex(response.content.decode())
    assert "hidden" in index.by_id["cancel-form"]
    assert "hidden" not in index.by_id["retry-form"]
    assert index.by_id["batch-progress"]["aria-valuenow"] == "100"
    assert "sandbox — no provider is charged" not in response.content.decode()


@pytest.mark.django_db
def test_viewer_without_run_permission_sees_no_buttons(client, django_user_model):
    user = make_user(django_user_model, "viewer", perms=VIEWER_PERMS)
    client.force_login(user)
    batch = make_batch(user=user, statuses=["pending"])
    response = client.get(reverse("batches:detail", args=[batch.pk]))
    assert response.status_code == 200
    assert "cancel-form" not in response.content.decode()
    assert client.post(reverse("batches:cancel", args=[batch.pk])).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("may_read_reports", [False, True])
def test_the_reports_zip_and_links_are_offered_to_those_who_may_read_reports(
    client, django_user_model, may_read_reports
):
    perms = ("batches.view_batchreport", *(["reports.view_report"] if may_read_reports else []))
    user = make_user(django_user_model, "batch-viewer", perms=perms)
    client.force_login(user)
    batch = make_batch(user=user, statuses=["succeeded"])
    row = batch.leads.get()
    row.report = Report.objects.create(lead=row.lead, html="<p>Report</p>")
    row.save(update_fields=["report"])

    page = client.get(reverse("batches:detail", args=[batch.pk])).content.decode()
    index = ElementIndex(page)

    assert "download-csv" in index.by_id
    assert ("download-zip" in index.by_id) is may_read_reports
    assert (f'href="/reports/{row.report_id}/"' in page) is may_read_reports
    assert index.by_id["batch-live"]["data-report-links"] == ("on" if may_read_reports else "off")
    zip_status = client.get(f"/api/batches/{batch.pk}/reports.zip").status_code
    assert zip_status == (200 if may_read_reports else 403)


@pytest.mark.django_db
def test_page_requires_staff_and_view_permission(client, django_user_model):
    owner = make_user(django_user_model, "owner", perms=RUNNER_PERMS)
    batch = make_batch(user=owner, statuses=["pending"])
    url = reverse("batches:detail", args=[batch.pk])

    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))

    client.force_login(make_user(django_user_model, "staff_no_perm"))
    assert client.get(url).status_code == 403

    client.force_login(make_user(django_user_model, "not_staff", perms=VIEWER_PERMS, is_staff=False))
    assert client.get(url).status_code == 302

    client.force_login(owner)
    assert client.get(reverse("batches:detail", args=[batch.pk + 1000])).status_code == 404


@pytest.mark.django_db
def test_rows_endpoint_returns_the_table_page_and_failure_groups(client, runner):
    batch = make_batch(user=runner, statuses=["failed", "succeeded"], error="HTTP 500", error_code="http_500")
    response = client.get(reverse("batches:rows", args=[batch.pk]))
    data = response.json()
    assert [row["status"] for row in data["rows"]] == ["failed", "succeeded"]
    assert data["rows"][0] == {
        "lead_id": data["rows"][0]["lead_id"],
        "company_name": data["rows"][0]["company_name"],
        "status": "failed",
        "attempts": 4,
        "error": "HTTP 500",
        "error_code": "http_500",
        "cost_usd": "0.0000",
        "duration_ms": 1200,
        "report_url": None,
        "warnings": [],
    }
    assert data["failures"] == [{"error_code": "http_500", "error": "HTTP 500", "count": 1}]


@pytest.mark.django_db
def test_table_is_paginated(client, runner):
    batch = make_batch(user=runner, statuses=["pending"] * 130)
    url = reverse("batches:detail", args=[batch.pk])
    assert client.get(url).content.decode().count('<tr data-lead-id="') == 100
    page2 = client.get(url + "?page=2").content.decode()
    assert page2.count('<tr data-lead-id="') == 30
    assert ElementIndex(page2).by_id["batch-live"]["data-rows-url"].endswith("?page=2")


@pytest.mark.django_db
def test_cancel_button_cancels_through_the_service(client, runner):
    batch = make_batch(user=runner, statuses=["succeeded", "pending", "pending"])

    response = client.post(reverse("batches:cancel", args=[batch.pk]), follow=True)

    assert response.redirect_chain == [(reverse("batches:detail", args=[batch.pk]), 302)]
    batch.refresh_from_db()
    assert batch.status == BatchReport.Status.CANCELLED
    assert "Cancelling: no new leads start" in response.content.decode()
    assert client.get(reverse("batches:cancel", args=[batch.pk])).status_code == 405


@pytest.mark.django_db
def test_refused_operations_show_the_service_message(client, runner):
    running = make_batch(user=runner, statuses=["pending"])
    response = client.post(reverse("batches:retry_failed", args=[running.pk]), follow=True)
    assert "wait until it finishes" in response.content.decode()
    running.refresh_from_db()
    assert running.status == BatchReport.Status.RUNNING


@pytest.mark.django_db
def test_retry_failed_button_requeues_the_failed_leads(client, runner):
    batch = make_batch(
        user=runner, statuses=["succeeded", "failed"], status=BatchReport.Status.COMPLETED_WITH_ERRORS
    )
    client.post(reverse("batches:retry_failed", args=[batch.pk]))
    batch.refresh_from_db()
    assert batch.status == BatchReport.Status.QUEUED
    assert batch.leads.filter(status="pending").count() == 1


@pytest.mark.django_db
def test_an_error_that_holds_an_html_page_reads_as_one_line(client, runner):
    page = "pagespeed: <html><body>\n<h1>429 Too Many Requests</h1>\n<hr><center>nginx</center></body></html>"
    batch = make_batch(user=runner, statuses=["failed", "succeeded"], error=page, error_code="http_429")

    html = client.get(reverse("batches:detail", args=[batch.pk])).content.decode()
    rows = client.get(reverse("batches:rows", args=[batch.pk])).json()

    assert "&lt;html" not in html and "<h1>429" not in html
    assert '<td data-field="error">pagespeed: 429 Too Many Requests</td>' in html
    assert "<code>http_429</code> pagespeed: 429 Too Many Requests</td>" in html
    assert rows["failures"][0]["error"] == "pagespeed: 429 Too Many Requests"
    assert batch_snapshot(batch_id=batch.pk)["recent"][-1]["error"] in (
        "",
        "pagespeed: 429 Too Many Requests",
    )
