"""The leads action "Generate reports…" (post to the changelist, then confirm) and the batch admin."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from batches import services
from batches.models import BatchReport, BatchReportLead
from batches.tasks import batch_purge_stale_drafts_task
from batches.tests.ui_fixtures import ElementIndex, bulk_leads, form_post_data, make_batch, make_user
from leadgen.display import usd
from leads.models import Lead

CHANGELIST = reverse("admin:leads_lead_changelist")
LEAD_PERMS = ("leads.view_lead", "leads.change_lead")
RUNNER_PERMS = (*LEAD_PERMS, "batches.view_batchreport", "batches.run_batch")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def runner(django_user_model, client):
    user = make_user(django_user_model, "runner", perms=RUNNER_PERMS)
    client.force_login(user)
    return user


def post_action(client, query: str, *, lead_id: int, select_across: bool):
    """The changelist's own action post: one checked row, optionally "select all N"."""
    data = {"action": "generate_reports", "index": 0, ACTION_CHECKBOX_NAME: [lead_id]}
    if select_across:
        data["select_across"] = "1"
    return client.post(CHANGELIST + query, data)


def confirm_form(response) -> dict:
    (form,) = [
        f
        for f in ElementIndex(response.content.decode()).forms
        if f["attrs"].get("id") == "generate-reports-form"
    ]
    return form


@pytest.mark.slow
@pytest.mark.django_db
def test_select_across_20000_leads_previews_exact_count_and_cost_and_launches_with_a_small_post(
    client, runner, settings
):
    settings.BATCH_MAX_LEADS = 20_000
    bulk_leads(20_000, prefix="Dent", industry=Lead.Industry.DENTIST)
    bulk_leads(300, prefix="Plumb", industry=Lead.Industry.PLUMBER)
    first_dentist = Lead.objects.filter(industry=Lead.Industry.DENTIST).order_by("pk").first()

    action_data_fields = 4
    response = post_action(client, "?industry__exact=dentist", lead_id=first_dentist.pk, select_across=True)

    assert response.status_code == 200
    assert response.templates[0].name == "admin/batches/generate_reports_confirmation.html"
    preview = response.context["preview"]
    expected = services.batch_preview_selection(user=runner, filters={"industry": "dentist"}).as_dict()
    assert preview["lead_count"] == 20_000
    assert preview["billable_leads"] == 20_000
    assert preview["total_usd"] == expected["total_usd"]
    assert Decimal(preview["total_usd"]) > Decimal(
        "2000"
    )  # 20,000 x (pagespeed + semrush + screenshot + llm)
    html = response.content.decode()
    assert '<strong data-testid="lead-count">20000</strong>' in html
    # Money reads with thousands separators and 4 places: "$2,604.4837".
    assert usd(expected["total_usd"]).count(",") == 1
    assert f'<strong data-testid="total-usd">{usd(expected["total_usd"])}</strong>' in html
    assert f"{usd(expected['per_lead_usd'])}" in html

    batch = BatchReport.objects.get()
    assert batch.status == BatchReport.Status.DRAFT
    assert batch.leads.count() == 20_000
    assert not batch.leads.filter(lead__industry=Lead.Industry.PLUMBER).exists()

    form = confirm_form(response)
    data = form_post_data(form, submit="_launch")
    data["name"] = "All Texas dentists"
    assert len(data) < 20
    assert action_data_fields < 20
    assert data["batch_draft"] == str(batch.pk)

    response = client.post(CHANGELIST + "?industry__exact=dentist", data)

    assert response.status_code == 302
    assert response["Location"] == reverse("batches:detail", args=[batch.pk])
    batch.refresh_from_db()
    assert batch.status == BatchReport.Status.QUEUED
    assert batch.name == "All Texas dentists"
    assert batch.estimated_cost_usd == Decimal(expected["total_usd"])
    assert BatchReport.objects.count() == 1


@pytest.mark.django_db
def test_user_without_run_batch_is_not_offered_the_action_and_cannot_post_it(client, django_user_model):
    user = make_user(django_user_model, "viewer", perms=LEAD_PERMS)
    client.force_login(user)
    (lead,) = bulk_leads(1)

    response = client.get(CHANGELIST)
    # No action at all is left for this user (no delete permission either), so no action form.
    assert response.context["action_form"] is None
    assert "Generate reports" not in response.content.decode()

    response = post_action(client, "", lead_id=lead.pk, select_across=False)
    assert response.status_code == 200
    assert not BatchReport.objects.exists()


@pytest.mark.django_db
def test_runner_is_offered_the_action(client, runner):
    bulk_leads(1)
    response = client.get(CHANGELIST)
    choices = dict(response.context["action_form"].fields["action"].choices)
    assert choices["generate_reports"] == "Generate reports…"


@pytest.mark.django_db
def test_selected_rows_only_without_select_across(client, runner):
    leads = bulk_leads(5)
    response = client.post(
        CHANGELIST,
        {"action": "generate_reports", "index": 0, ACTION_CHECKBOX_NAME: [leads[0].pk, leads[3].pk]},
    )
    assert response.status_code == 200
    assert response.context["preview"]["lead_count"] == 2
    assert sorted(BatchReport.objects.get().leads.values_list("lead_id", flat=True)) == sorted(
        [leads[0].pk, leads[3].pk]
    )


@pytest.mark.django_db
def test_confirmation_page_has_the_admin_look_and_breakdown(client, runner):
    bulk_leads(3)
    no_email = bulk_leads(1, prefix="Noemail", email="")
    response = post_action(client, "", lead_id=no_email[0].pk, select_across=True)
    html = response.content.decode()
    index = ElementIndex(html)

    assert '<div class="breadcrumbs">' in html
    assert reverse("admin:index") in html
    assert "sandbox — no provider is charged" in html
    providers = [line["provider"] for line in response.context["preview"]["providers"]]
    assert sorted(providers) == sorted(["website", "pagespeed", "semrush", "screenshot", "hunter", "llm"])
    hunter = next(line for line in response.context["preview"]["providers"] if line["provider"] == "hunter")
    assert hunter["calls"] == 1
    for element in ("provider-breakdown", "budget-check", "skipped-leads", "generate-reports-form"):
        assert element in index.by_id
    assert {f["name"] for f in confirm_form(response)["fields"]} >= {
        "name",
        "concurrency",
        "max_retries",
        "budget_usd",
        "include_recent",
        "_launch",
        "_update",
        "_discard",
        "batch_draft",
    }


@pytest.mark.django_db
def test_back_discards_the_draft(client, runner):
    (lead,) = bulk_leads(1)
    response = post_action(client, "", lead_id=lead.pk, select_across=False)
    data = form_post_data(confirm_form(response), submit="_discard")

    response = client.post(CHANGELIST, data)

    assert response.status_code == 302
    assert not BatchReport.objects.exists()
    assert not BatchReportLead.objects.exists()


@pytest.mark.django_db
def test_include_recent_toggle_updates_skipped_leads_and_cost(client, runner):
    bulk_leads(4)
    recent = bulk_leads(2, prefix="Recent", last_reported_at=timezone.now() - timedelta(days=3))
    response = post_action(client, "", lead_id=recent[0].pk, select_across=True)
    before = response.context["preview"]
    assert before["lead_count"] == 6
    assert before["skipped"] == [
        {"reason": "recent_report", "count": 2, "label": before["skipped"][0]["label"]}
    ]
    assert "reported in the last 30 days" in response.content.decode()

    data = form_post_data(confirm_form(response), submit="_update")
    data["include_recent"] = "on"
    response = client.post(CHANGELIST, data)

    after = response.context["preview"]
    assert response.status_code == 200
    assert after["skipped"] == []
    assert after["billable_leads"] == 6
    assert Decimal(after["total_usd"]) > Decimal(before["total_usd"])
    assert BatchReport.objects.get().include_recent is True
    assert "checked" in ElementIndex(response.content.decode()).by_id["id_include_recent"]


@pytest.mark.django_db
def test_budget_below_estimate_refuses_launch_and_keeps_the_draft(client, runner):
    leads = bulk_leads(3)
    response = post_action(client, "", lead_id=leads[0].pk, select_across=True)
    data = form_post_data(confirm_form(response), submit="_launch")
    data["budget_usd"] = "0.0100"

    response = client.post(CHANGELIST, data)

    assert response.status_code == 200
    assert "is above the budget" in response.content.decode()
    batch = BatchReport.objects.get()
    assert batch.status == BatchReport.Status.DRAFT
    assert batch.budget_usd == Decimal("0.0100")
    assert response.context["preview"]["budget"]["within_budget"] is False


@pytest.mark.django_db
def test_invalid_concurrency_is_a_form_error(client, runner):
    leads = bulk_leads(2)
    response = post_action(client, "", lead_id=leads[0].pk, select_across=True)
    data = form_post_data(confirm_form(response), submit="_launch")
    data["concurrency"] = "51"

    response = client.post(CHANGELIST, data)

    assert response.status_code == 200
    assert response.context["form"].errors["concurrency"]
    assert BatchReport.objects.get().status == BatchReport.Status.DRAFT


@pytest.mark.django_db
def test_confirming_someone_elses_draft_is_refused(client, runner, django_user_model):
    other = make_user(django_user_model, "other", perms=RUNNER_PERMS)
    (lead,) = bulk_leads(1)
    draft = services.batch_create_draft(user=other, lead_ids=[lead.pk])
    data = {
        "action": "generate_reports",
        ACTION_CHECKBOX_NAME: [lead.pk],
        "batch_draft": draft.pk,
        "_launch": "1",
    }

    response = client.post(CHANGELIST, data, follow=True)

    assert "no longer exists or is not yours" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == BatchReport.Status.DRAFT


@pytest.mark.django_db
def test_too_many_leads_is_reported_on_the_changelist(client, runner, settings):
    settings.BATCH_MAX_LEADS = 3
    leads = bulk_leads(4)
    response = post_action(client, "", lead_id=leads[0].pk, select_across=True)
    assert response.status_code == 302
    response = client.get(response["Location"])
    assert "At most 3 leads per batch" in response.content.decode()
    assert not BatchReport.objects.exists()


@pytest.mark.django_db
def test_purge_removes_only_stale_drafts_on_an_hourly_schedule(client, runner):
    schedule = Schedule.objects.get(name="batches.purge_stale_drafts")
    assert (schedule.func, schedule.schedule_type) == (
        "batches.tasks.batch_purge_stale_drafts_task",
        Schedule.HOURLY,
    )
    leads = bulk_leads(3)
    post_action(client, "", lead_id=leads[0].pk, select_across=False)
    post_action(client, "", lead_id=leads[1].pk, select_across=False)
    stale, fresh = BatchReport.objects.order_by("pk")
    launched = make_batch(user=runner, statuses=["succeeded"], status=BatchReport.Status.COMPLETED)
    old = timezone.now() - timedelta(hours=25)
    BatchReport.objects.filter(pk__in=[stale.pk, launched.pk]).update(created_at=old)

    assert batch_purge_stale_drafts_task() == 1

    assert set(BatchReport.objects.values_list("pk", flat=True)) == {fresh.pk, launched.pk}
    assert not BatchReportLead.objects.filter(batch_id=stale.pk).exists()


@pytest.mark.django_db
def test_batch_changelist_shows_status_progress_costs_and_live_link(client, runner):
    batch = make_batch(user=runner, statuses=["succeeded", "failed", "pending", "processing"])
    response = client.get(reverse("admin:batches_batchreport_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "2/4" in html
    assert "1.2345" in html and "0.0000" in html
    assert reverse("batches:detail", args=[batch.pk]) in html


@pytest.mark.django_db
def test_batch_detail_is_read_only_with_paginated_leads(client, runner):
    batch = make_batch(user=runner, statuses=["succeeded"] * 55, status=BatchReport.Status.COMPLETED)
    url = reverse("admin:batches_batchreport_change", args=[batch.pk])

    response = client.get(url)
    assert response.status_code == 200
    assert response.context["leads_page"].paginator.count == 55
    assert len(response.context["lead_rows"]) == 50
    assert 'name="name"' not in response.content.decode()  # read-only: no inputs
    assert reverse("batches:detail", args=[batch.pk]) in response.content.decode()

    response = client.get(url + "?leads_page=2")
    assert len(response.context["lead_rows"]) == 5


@pytest.mark.django_db
def test_cancel_and_retry_actions_use_the_services(client, runner):
    running = make_batch(user=runner, statuses=["succeeded", "pending", "pending"], name="Running one")
    finished = make_batch(
        user=runner, statuses=["succeeded", "failed"], status=BatchReport.Status.COMPLETED_WITH_ERRORS
    )
    changelist = reverse("admin:batches_batchreport_changelist")

    response = client.post(
        changelist,
        {"action": "cancel_batches", ACTION_CHECKBOX_NAME: [running.pk, finished.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "Cancelling 1 batch(es)." in html
    assert "already completed with errors" in html
    running.refresh_from_db()
    assert running.status == BatchReport.Status.CANCELLED
    assert running.leads.filter(status="cancelled").count() == 2

    response = client.post(
        changelist, {"action": "retry_failed_batches", ACTION_CHECKBOX_NAME: [finished.pk]}, follow=True
    )
    finished.refresh_from_db()
    assert finished.status == BatchReport.Status.QUEUED
    assert finished.leads.filter(status="pending").count() == 1


@pytest.mark.django_db
def test_webhook_admin_pages(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("admin:batches_webhookendpoint_add")).status_code == 200
    assert client.get(reverse("admin:batches_webhookdelivery_changelist")).status_code == 200
    assert client.get(reverse("admin:batches_webhookdelivery_add")).status_code == 403
