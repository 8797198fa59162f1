"""A batch remembers its brand profile and renders its reports with it; its reports are shared in one
action, the CSV's share_url column holds links that open logged out, and the shared page shows nothing
internal (cost, batch, attempts, provider errors)."""

import csv
import io
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from batches.models import BatchReport, BatchReportLead
from batches.services import batch_create_draft, batch_launch, batch_share_links_create
from batches.tests.engine import ScriptedTransport, make_leads, run_to_end
from batches.tests.ui_fixtures import ElementIndex, bulk_leads, form_post_data, make_user
from leadgen.errors import ServiceError
from reports.models import ProviderCall, Report, ShareLink
from reports.sandbox import override_transport
from reports.tests.brands import make_brand

S = BatchReportLead.Status
BATCH_NAME = "Q3 Texas dentists run 7731"


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.SANDBOX_LATENCY_MS = 0
    settings.SANDBOX_FAILURE_RATE = 0.0
    settings.BATCH_RETRY_BASE_SECONDS = 0
    settings.BATCH_RETRY_MAX_SECONDS = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def token_client(django_user_model, username, *perms) -> APIClient:
    user = django_user_model.objects.create_user(username=username)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.mark.django_db
def test_a_draft_takes_the_default_profile_unless_told_otherwise():
    leads = bulk_leads(2)
    ids = [lead.pk for lead in leads]
    assert batch_create_draft(user=None, lead_ids=ids).brand is None
    default = make_brand(name="Default", is_default=True, logo=False)
    other = make_brand(name="Other", logo=False)
    assert batch_create_draft(user=None, lead_ids=ids).brand == default
    assert batch_create_draft(user=None, lead_ids=ids, brand=other.pk).brand == other
    assert batch_create_draft(user=None, lead_ids=ids, brand=None).brand is None
    with pytest.raises(ServiceError) as refused:
        batch_create_draft(user=None, lead_ids=ids, brand=999999)
    assert refused.value.fields == {"brand": ["Unknown brand profile: 999999."]}


@pytest.mark.django_db
def test_api_launch_takes_a_brand_and_refuses_an_unknown_one(django_user_model):
    leads = bulk_leads(2)
    brand = make_brand(logo=False)
    runner = token_client(django_user_model, "runner", "batches.run_batch", "batches.view_batchreport")
    body = {"lead_ids": [lead.pk for lead in leads], "name": "Branded"}

    response = runner.post("/api/batches/", {**body, "brand": 999999}, format="json")
    assert response.status_code == 400
    assert response.json() == {"brand": ["Unknown brand profile: 999999."]}
    response = runner.post("/api/batches/", {**body, "brand": "abc"}, format="json")
    assert response.status_code == 400 and "brand" in response.json()
    assert not BatchReport.objects.exists()

    response = runner.post("/api/batches/", {**body, "brand": brand.pk}, format="json")
    assert response.status_code == 201
    assert BatchReport.objects.get(pk=response.json()["id"]).brand == brand
    listed = runner.get("/api/batches/").json()["results"]
    assert [row["brand"] for row in listed] == [brand.pk]


@pytest.mark.django_db
def test_the_confirmation_page_preselects_the_default_and_launches_with_the_chosen_profile(
    client, django_user_model
):
    default = make_brand(name="Default", is_default=True, logo=False)
    chosen = make_brand(name="Chosen", logo=False)
    user = make_user(
        django_user_model,
        "runner",
        perms=("leads.view_lead", "leads.change_lead", "batches.view_batchreport", "batches.run_batch"),
    )
    client.force_login(user)
    (lead,) = bulk_leads(1)
    changelist = reverse("admin:leads_lead_changelist")
    response = client.post(
        changelist, {"action": "generate_reports", "index": 0, "_selected_action": [lead.pk]}
    )
    page = response.content.decode()
    assert re.search(rf'<option value="{default.pk}" selected>Default \(default\)</option>', page)
    assert f'<option value="{chosen.pk}">Chosen</option>' in page
    assert BatchReport.objects.get().brand == default

    (form,) = [f for f in ElementIndex(page).forms if f["attrs"].get("id") == "generate-reports-form"]
    data = form_post_data(form, submit="_launch")
    data["brand"] = str(chosen.pk)
    response = client.post(changelist, data)
    assert response.status_code == 302
    batch = BatchReport.objects.get()
    assert (batch.status, batch.brand) == (BatchReport.Status.QUEUED, chosen)


def _internal_strings(batch: BatchReport) -> list[str]:
    """What the agency knows about the batch and the prospect must not see."""
    strings = [batch.name, f"/batches/{batch.pk}/", "/admin/", "csrfmiddlewaretoken"]
    for row in BatchReportLead.objects.filter(batch=batch).select_related("report"):
        strings += [f"{row.cost_usd:.4f}", f"{row.report.cost_usd:.6f}", f"{row.report.cost_usd:.4f}"]
        strings += [row.error_code, row.last_error] if row.error_code else []
        for warning in row.warnings:
            strings += [warning["code"], warning["message"]]
        strings += [email["value"] for email in row.report.data.get("emails", [])]
        strings += [f"/reports/{row.report_id}/", f"/reports/{row.report_id}.pdf"]
    calls = ProviderCall.objects.filter(batch_lead_id__in=batch.leads.values("pk")).exclude(error="")
    strings += [call.error for call in calls]
    return [s for s in strings if s]


@pytest.mark.django_db(transaction=True)
def test_batch_links_in_one_action_fill_the_csv_with_working_links_that_show_nothing_internal(
    django_user_model,
):
    brand = make_brand(is_default=True)
    good, flaky = make_leads(2)
    broken = make_leads(1, prefix="gone", email="")[0]
    broken.website, broken.domain = "https://gone.invalid", "gone.invalid"
    broken.save()
    batch = batch_create_draft(user=None, lead_ids=[good.pk, flaky.pk, broken.pk], name=BATCH_NAME)
    batch = batch_launch(batch=batch, user=None, enqueue=False)
    with override_transport(ScriptedTransport({("pagespeed", flaky.domain): 2})):
        batch = run_to_end(batch.pk)
    rows = {row.lead_id: row for row in BatchReportLead.objects.filter(batch=batch)}
    assert [rows[lead.pk].status for lead in (good, flaky, broken)] == [S.SUCCEEDED] * 3
    assert rows[flaky.pk].attempts == 3 and rows[broken.pk].warnings
    assert batch.brand == brand
    assert set(Report.objects.values_list("brand", flat=True)) == {brand.pk}

    viewer = token_client(django_user_model, "viewer", "batches.view_batchreport")
    assert viewer.post(f"/api/batches/{batch.pk}/share-links/", {}, format="json").status_code == 403
    sharer = token_client(django_user_model, "sharer", "batches.view_batchreport", "reports.add_sharelink")
    response = sharer.post(f"/api/batches/{batch.pk}/share-links/", {}, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "created": 3,
        "export_url": f"http://testserver/api/batches/{batch.pk}/export.csv",
    }
    assert sharer.post(f"/api/batches/{batch.pk}/share-links/", {}, format="json").json()["created"] == 0
    assert ShareLink.objects.count() == 3
    assert sharer.post("/api/batches/999999/share-links/", {}, format="json").status_code == 404

    export = viewer.get(f"/api/batches/{batch.pk}/export.csv")
    table = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [row["share_url"] != "" for row in table] == [True, True, True]

    internal = _internal_strings(batch)
    prospect = Client()
    for row in table:
        assert row["share_url"].startswith("http://testserver/reports/shared/")
        response = prospect.get(row["share_url"])
        assert response.status_code == 200
        html = response.content.decode()
        assert row["company_name"] in html and "Northwind Digital" in html
        leaked = [value for value in internal if value in html]
        assert leaked == []
        for word in ("batch", "cost", "attempt", "error", "$"):
            assert word not in html.lower(), word
        pdf = prospect.get(row["share_url"].rstrip("/") + ".pdf")
        assert pdf.status_code == 200 and b"".join(pdf.streaming_content).startswith(b"%PDF")

    # Revoking one link empties its cell (the CSV offers only links that open) and closes it at once.
    revoked = ShareLink.objects.get(report_id=rows[good.pk].report_id)
    sharer_token = table[0]["share_url"].rsplit("/", 2)[-2]
    revoker = token_client(django_user_model, "revoker", "reports.change_sharelink")
    response = revoker.delete(f"/api/reports/{revoked.report_id}/share/{sharer_token}/")
    assert response.status_code == 204
    assert prospect.get(table[0]["share_url"]).status_code == 404
    export = viewer.get(f"/api/batches/{batch.pk}/export.csv")
    table = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [row["share_url"] != "" for row in table] == [False, True, True]
    assert batch.actual_cost_usd > Decimal("0")


@pytest.mark.django_db
def test_batch_admin_action_shares_every_report_of_the_selected_batches(admin_client):
    leads = bulk_leads(3)
    batch = BatchReport.objects.create(
        name="Done", status=BatchReport.Status.COMPLETED, provider_mode="sandbox"
    )
    for position, lead in enumerate(leads):
        report = Report.objects.create(lead=lead, html="<p>r</p>") if position < 2 else None
        BatchReportLead.objects.create(
            batch=batch,
            lead=lead,
            position=position,
            status=S.SUCCEEDED if report else S.FAILED,
            report=report,
        )
    data = {"action": "share_batch_reports", "_selected_action": [batch.pk]}
    response = admin_client.post(reverse("admin:batches_batchreport_changelist"), data, follow=True)
    assert "Created 2 share link(s)" in response.content.decode()
    assert batch_share_links_create(batch=batch, user=None) == 0
    assert ShareLink.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_run_batch_takes_a_brand_and_generate_report_the_default():
    default = make_brand(name="Default", is_default=True, logo=False)
    chosen = make_brand(name="Chosen", logo=False)
    (lead,) = make_leads(1)
    quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    call_command("run_batch", "--filter", "industry=dentist", "--brand", str(chosen.pk), **quiet)
    batch = BatchReport.objects.get()
    assert batch.brand == chosen and "Chosen Digital" in batch.leads.get().report.html
    with pytest.raises(CommandError, match="Unknown brand profile"):
        call_command("run_batch", "--filter", "industry=dentist", "--brand", "999999", **quiet)

    call_command("generate_report", "--lead", str(lead.pk), **quiet)
    assert Report.objects.latest("id").brand == default


@pytest.mark.django_db
def test_api_lists_the_brand_profiles_default_first(django_user_model):
    other = make_brand(name="Acme", logo=False)
    default = make_brand(name="Zenith", is_default=True, logo=False)
    reader = token_client(django_user_model, "reader", "reports.view_brandprofile")
    response = reader.get("/api/brands/")
    assert response.status_code == 200
    assert [(item["id"], item["is_default"]) for item in response.json()["results"]] == [
        (default.pk, True),
        (other.pk, False),
    ]
    assert token_client(django_user_model, "nobody").get("/api/brands/").status_code == 403
    assert APIClient().get("/api/brands/").status_code == 401
