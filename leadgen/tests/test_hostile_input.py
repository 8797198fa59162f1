"""Hostile input outside the website audit: the admin forms, webhooks, PDFs and lead text.

A canary on 127.0.0.1 (and [::1]) stands in for internal services and counts every request it gets:
each case asserts it got none and that nothing answered 5xx. reports/tests/test_hostile_input.py covers
the website audit itself.
"""

import csv
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError

from batches.exports import CSV_HEADER
from batches.models import BatchReport, WebhookDelivery, WebhookEndpoint
from batches.tests.api_fixtures import ROLE_PERMISSIONS, add_lead_rows, make_batch, make_report, make_user
from batches.tests.api_fixtures import token_client as api_client
from batches.webhooks import webhook_deliver
from leadgen.tests.servers import SITE_ADDRESS
from leads.models import Lead
from reports.services import report_generate, report_pdf_ensure

# A 1x1 transparent PNG.
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6"
    "kgAAAABJRU5ErkJggg=="
)


@pytest.fixture(autouse=True)
def _quick_sandbox(settings):
    settings.PROVIDER_MODE = "sandbox"
    settings.SANDBOX_LATENCY_MS = 0
    settings.SANDBOX_FAILURE_RATE = 0.0
    settings.SANDBOX_PROVIDER_FAILURE_RATES = {}
    settings.EGRESS_ALLOWED_NETWORKS = []


def refused_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"http://[::1]:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://192.168.0.10/",
        "http://100.64.1.1/",
        "http://[fd12::1]/",
        "http://0.0.0.0/",
        "https://shop.example:8443/",
        "ftp://shop.example/",
    ]


CASES = len(refused_urls(0))


@pytest.mark.django_db
@pytest.mark.parametrize("case", range(CASES))
def test_the_lead_admin_form_refuses_a_website_the_audit_may_not_fetch(admin_client, canary, case):
    website = refused_urls(canary.port)[case]
    response = admin_client.post(
        "/admin/leads/lead/add/",
        {
            "company_name": "Probe",
            "website": website,
            "industry": "dentist",
            "country": "US",
            "score": 50,
            "status": "new",
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["website"]
    assert errors["website"][0].startswith("This address cannot be used: ")
    assert not Lead.objects.exists()
    assert canary.hits == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "website", ["https://smile-dental.example/", "smile-dental.example", "http://shop.example:80/"]
)
def test_the_lead_admin_form_takes_an_ordinary_website(admin_client, website):
    response = admin_client.post(
        "/admin/leads/lead/add/",
        {
            "company_name": "Smile",
            "website": website,
            "industry": "dentist",
            "country": "US",
            "score": 50,
            "status": "new",
        },
    )

    assert response.status_code == 302
    assert Lead.objects.get().domain in ("smile-dental.example", "shop.example")


@pytest.mark.django_db
def test_allowed_networks_let_the_admin_save_an_on_premise_site(admin_client, settings):
    settings.EGRESS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    response = admin_client.post(
        "/admin/leads/lead/add/",
        {
            "company_name": "Intranet",
            "website": "http://10.20.1.2:8080/",
            "industry": "dentist",
            "country": "US",
            "score": 50,
            "status": "new",
        },
    )
    assert response.status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("case", range(CASES))
def test_a_webhook_url_is_checked_on_save(admin_client, canary, case):
    url = refused_urls(canary.port)[case]
    response = admin_client.post(
        "/admin/batches/webhookendpoint/add/",
        {"name": "probe", "url": url, "secret": "s3cret-s3cret", "is_active": "on"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["url"][0].startswith("This address cannot be used: ")
    assert not WebhookEndpoint.objects.exists()
    with pytest.raises(ValidationError):
        WebhookEndpoint(name="probe", url=url, secret="x").full_clean()


@pytest.mark.django_db
@pytest.mark.parametrize("case", range(CASES))
def test_a_webhook_url_is_checked_on_send_and_not_retried(canary, case):
    # Saved before the policy existed, or written around the admin.
    endpoint = WebhookEndpoint.objects.create(name="probe", url=refused_urls(canary.port)[case], secret="s")

    status = webhook_deliver(
        endpoint_id=endpoint.pk,
        batch_id=None,
        event="batch.finished",
        event_id=uuid.uuid4().hex,
        body="{}",
        attempt=1,
    )

    delivery = WebhookDelivery.objects.get()
    assert (status, delivery.status, delivery.attempt, delivery.status_code) == ("failed", "failed", 1, None)
    assert delivery.error.startswith("blocked_address: ")
    assert canary.hits == []


@pytest.mark.django_db
def test_a_webhook_receiver_dripping_its_answer_is_cut_at_the_timeout(site, settings, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    settings.EGRESS_ALLOWED_NETWORKS = [f"{SITE_ADDRESS}/32"]
    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    url = site.drip("/hook", every=0.3, pieces=20, headers_first=False)
    endpoint = WebhookEndpoint.objects.create(name="slow", url=url, secret="s")

    started = time.monotonic()
    webhook_deliver(
        endpoint_id=endpoint.pk,
        batch_id=None,
        event="batch.finished",
        event_id=uuid.uuid4().hex,
        body="{}",
        attempt=1,
    )

    assert time.monotonic() - started < 2.5
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert "Timeout" in delivery.error


@pytest.mark.django_db
def test_a_pdf_fetches_nothing_the_html_points_at(canary, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET server file")
    lead = Lead.objects.create(company_name="Probe", industry="dentist")
    base = f"http://127.0.0.1:{canary.port}"
    report = make_report(
        lead,
        html=(
            f"<html><head><link rel=stylesheet href='{base}/style.css'>"
            f"<link rel=attachment href='file://{secret}' title=secret></head><body>"
            f"<img src='{base}/pixel.png'><img src='file://{secret}'><img src='file:///etc/passwd'>"
            f"<a rel=attachment href='file://{secret}'>x</a>"
            f"<img src='{PIXEL}'><p>Report</p></body></html>"
        ),
    )

    report = report_pdf_ensure(report=report)

    pdf = report.pdf.read()
    assert pdf.startswith(b"%PDF")
    assert b"/EmbeddedFile" not in pdf
    # The data: image is served.
    assert b"/Subtype /Image" in pdf
    assert canary.hits == []


HOSTILE_TEXT = {
    "company_name": "<script>alert('x')</script>=HYPERLINK(\"http://evil\")",
    "contact_name": "\u202e<img src=x onerror=alert(1)>",
    "city": "+SUM(1+1)\u200b",
    "state": "@cmd|' /C calc'!A0",
    "source": "-2+3",
    "phone": "\u0007\u001b[2J",
}


@pytest.mark.django_db
def test_hostile_lead_text_is_escaped_in_the_report_and_defused_in_the_csv(client, canary):
    lead = Lead.objects.create(website="https://hostile-text.example", industry="dentist", **HOSTILE_TEXT)

    outcome = report_generate(lead=lead)

    assert outcome.error is None
    html = outcome.report.html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(" in html
    assert "<img src=x" not in html

    viewer = make_user("viewer", ROLE_PERMISSIONS["viewer"])
    batch = make_batch(status=BatchReport.Status.COMPLETED_WITH_ERRORS, user=viewer)
    row = add_lead_rows(batch, ["failed"])[0]
    row.lead.company_name = '\u202e=HYPERLINK("http://evil")'
    row.lead.save()
    row.error_code, row.last_error = "http_500", "=cmd|' /C calc'!A0"
    row.warnings = [{"provider": "=evil", "code": "x", "message": "+1"}]
    row.save()
    api = api_client(viewer)

    response = api.get(f"/api/batches/{batch.pk}/export.csv")
    assert response.status_code == 200
    rows = list(csv.reader(b"".join(response.streaming_content).decode().splitlines()))
    cells = dict(zip(CSV_HEADER, rows[1], strict=True))
    assert cells["company_name"] == '\'\u202e=HYPERLINK("http://evil")'
    assert cells["error"] == "'=cmd|' /C calc'!A0"
    assert cells["warnings"] == "'=evil: +1"

    for path in (f"/api/batches/{batch.pk}/", f"/api/batches/{batch.pk}/leads/"):
        response = api.get(path)
        assert response.status_code == 200
        assert response.json()
    assert canary.hits == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    [
        "=1+1",
        "+1",
        "-1",
        "@SUM(A1)",
        "\t=1",
        "\r=1",
        " =1",
        "\u202e=1",
        "\u200b@x",
        "\ufeff+1",
        "\uff1d1+1",
    ],
)
def test_every_formula_lead_in_is_defused_in_the_csv(value):
    from batches.exports import csv_text_cell

    assert csv_text_cell(value) == "'" + value
    assert csv_text_cell("Acme = good") == "Acme = good"


@pytest.mark.django_db
def test_the_live_page_and_the_lead_list_escape_hostile_text(client, canary):
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_batchreport", "view_lead", "run_batch"])
    )
    client.force_login(user)
    batch = make_batch(status=BatchReport.Status.RUNNING, user=user)
    row = add_lead_rows(batch, ["failed"])[0]
    Lead.objects.filter(pk=row.lead_id).update(**HOSTILE_TEXT)
    row.last_error = "<b>bold</b>\u202e"
    row.save()

    page = client.get(f"/batches/{batch.pk}/")
    leads = client.get("/api/leads/", {"search": "<script>"})
    admin = client.get("/admin/leads/lead/", {"q": "<script> =1 \u202e"})

    assert page.status_code == 200
    assert "<script>alert('x')" not in page.content.decode()
    assert "<b>bold</b>" not in page.content.decode()
    assert leads.status_code == 200
    assert leads.json()["count"] == 1
    assert admin.status_code in (200, 302)
    assert canary.hits == []


def read_setting(value: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EGRESS_ALLOWED_NETWORKS": value, "DJANGO_SETTINGS_MODULE": "leadgen.settings"}
    code = "from django.conf import settings; print(settings.EGRESS_ALLOWED_NETWORKS)"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_egress_allowed_networks_is_a_cidr_list_from_the_environment():
    result = read_setting("10.20.0.0/16, 127.0.0.1, fd00::/8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['10.20.0.0/16', '127.0.0.1/32', 'fd00::/8']"

    result = read_setting("10.20.0.0/16,intranet")
    assert result.returncode == 1
    assert result.stderr.strip() == "EGRESS_ALLOWED_NETWORKS: 'intranet' is not a network in CIDR notation."
