from decimal import Decimal

import pytest
from django.db import transaction
from django_q.models import OrmQ

from batches.models import BatchReport, BatchReportLead, DailySpend
from batches.services import (
    IdempotencyConflict,
    batch_cancel,
    batch_create_and_launch,
    batch_create_draft,
    batch_discard_draft,
    batch_launch,
    batch_preview,
    batch_preview_selection,
    batch_retry_failed,
    batch_update_draft,
)
from batches.tests.engine import make_leads, make_user
from leadgen.errors import ConflictError, ServiceError
from leads.models import Lead

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return make_user()


@pytest.fixture
def leads():
    return make_leads(5)


def ids(leads):
    return [lead.pk for lead in leads]


def test_draft_freezes_the_selection_in_order(user, leads):
    batch = batch_create_draft(user=user, lead_ids=ids(leads)[::-1], name="  Dentists  ", budget_usd="12.5")
    assert (batch.status, batch.name, batch.budget_usd, batch.provider_mode) == (
        "draft",
        "Dentists",
        Decimal("12.5"),
        "sandbox",
    )
    frozen = list(BatchReportLead.objects.filter(batch=batch).values_list("lead_id", "position", "status"))
    assert frozen == [(pk, i, "pending") for i, pk in enumerate(ids(leads)[::-1], start=1)]
    Lead.objects.create(company_name="Later", industry=Lead.Industry.DENTIST)
    assert batch.leads.count() == 5


def test_draft_from_filters_and_from_a_queryset(user, leads):
    make_leads(2, prefix="law", website=False)
    Lead.objects.filter(domain="").update(industry=Lead.Industry.LAW_FIRM)
    by_filter = batch_create_draft(user=user, filters={"industry": "dentist"})
    assert set(by_filter.leads.values_list("lead_id", flat=True)) == set(ids(leads))
    by_queryset = batch_create_draft(user=user, queryset=Lead.objects.filter(industry="law_firm"))
    assert by_queryset.leads.count() == 2


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"lead_ids": []}, "lead_ids"),
        ({"lead_ids": None}, "lead_ids"),
        ({"lead_ids": [1, 1]}, "lead_ids"),
        ({"lead_ids": [987654]}, "lead_ids"),
        ({"lead_ids": ["x"]}, "lead_ids"),
        ({"filters": {"colour": "red"}}, "colour"),
        ({"filters": {"industry": "astronaut"}}, "industry"),
        ({"filters": {"industry": "law_firm"}}, "filters"),
        ({"budget_usd": "NaN"}, "budget_usd"),
        ({"budget_usd": float("nan")}, "budget_usd"),
        ({"budget_usd": "-1"}, "budget_usd"),
        ({"budget_usd": "abc"}, "budget_usd"),
        ({"budget_usd": "Infinity"}, "budget_usd"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 51}, "concurrency"),
        ({"concurrency": "many"}, "concurrency"),
        ({"max_retries": 11}, "max_retries"),
    ],
)
def test_bad_input_is_rejected_and_nothing_is_created(user, leads, options, field):
    options = {"lead_ids": ids(leads), **options}
    if "filters" in options:
        options.pop("lead_ids")
    with pytest.raises(ServiceError) as error:
        batch_create_draft(user=user, **options)
    assert field in error.value.fields
    assert not BatchReport.objects.exists()


def test_too_many_leads(settings, user, leads):
    settings.BATCH_MAX_LEADS = 4
    with pytest.raises(ServiceError) as error:
        batch_create_draft(user=user, lead_ids=ids(leads))
    assert "At most 4" in error.value.fields["lead_ids"][0]
    with pytest.raises(ServiceError):
        batch_create_draft(user=user, filters={"industry": "dentist"})


def test_preview_is_side_effect_free(user, leads):
    batch = batch_create_draft(user=user, lead_ids=ids(leads))
    preview = batch_preview(batch=batch).as_dict()
    assert preview["lead_count"] == 5 and preview["billable_leads"] == 5
    assert preview["providers"][0]["provider"] == "website"
    selection = batch_preview_selection(user=user, lead_ids=ids(leads), budget_usd="0.10")
    assert selection.as_dict()["budget"]["within_budget"] is False
    assert BatchReport.objects.count() == 1
    assert not DailySpend.objects.exists()


def test_launch_commits_then_enqueues_runners(user, leads, django_capture_on_commit_callbacks):
    batch = batch_create_draft(user=user, lead_ids=ids(leads), concurrency=4)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        batch = batch_launch(batch=batch, user=user)
    assert batch.status == "queued" and batch.queued_at is not None
    assert batch.estimated_cost_usd > 0 and batch.estimate["billable_leads"] == 5
    assert OrmQ.objects.count() == 2
    assert len(callbacks) == 2  # the runners, and the progress event


def test_launch_inside_a_rolled_back_transaction_enqueues_and_spends_nothing(user, leads):
    batch = batch_create_draft(user=user, lead_ids=ids(leads))
    with pytest.raises(RuntimeError), transaction.atomic():
        batch_launch(batch=batch, user=user)
        raise RuntimeError("the caller fails after launching")
    batch.refresh_from_db()
    assert batch.status == "draft"
    assert not OrmQ.objects.exists()
    assert not DailySpend.objects.exists()


def test_launch_refuses_an_estimate_above_the_budget(user, leads):
    batch = batch_create_draft(user=user, lead_ids=ids(leads), budget_usd="0.20")
    with pytest.raises(ServiceError) as error:
        batch_launch(batch=batch, user=user)
    assert "above the budget" in error.value.fields["budget_usd"][0]
    batch.refresh_from_db()
    assert batch.status == "draft"


def test_recently_reported_leads_are_skipped_at_launch_unless_included(user, leads):
    from django.utils import timezone

    Lead.objects.filter(pk=leads[0].pk).update(last_reported_at=timezone.now())
    batch = batch_launch(batch=batch_create_draft(user=user, lead_ids=ids(leads)), user=user, enqueue=False)
    skipped = BatchReportLead.objects.get(batch=batch, lead=leads[0])
    assert (skipped.status, skipped.error_code) == ("skipped", "recent_report")
    assert batch.estimate["skipped"] == [{"reason": "recent_report", "count": 1}]
    included = batch_create_draft(user=user, lead_ids=ids(leads), include_recent=True)
    included = batch_launch(batch=included, user=user, enqueue=False)
    assert not included.leads.filter(status="skipped").exists()


def test_launch_with_every_lead_skipped_completes_at_once(user, leads):
    from django.utils import timezone

    Lead.objects.update(last_reported_at=timezone.now())
    batch = batch_launch(batch=batch_create_draft(user=user, lead_ids=ids(leads)), user=user)
    assert batch.status == "completed" and batch.finished_at is not None


def test_draft_update_and_discard(user, leads):
    batch = batch_create_draft(user=user, lead_ids=ids(leads))
    batch = batch_update_draft(batch=batch, user=user, concurrency=3, budget_usd="9", name="Renamed")
    assert (batch.concurrency, batch.budget_usd, batch.name) == (3, Decimal("9"), "Renamed")
    with pytest.raises(ServiceError):
        batch_update_draft(batch=batch, user=user, concurrency=99)
    batch_discard_draft(batch=batch, user=user)
    assert not BatchReport.objects.exists() and not BatchReportLead.objects.exists()


def test_wrong_state_operations_conflict(user, leads):
    draft = batch_create_draft(user=user, lead_ids=ids(leads))
    with pytest.raises(ConflictError):
        batch_cancel(batch=draft, user=user)
    launched = batch_launch(batch=draft, user=user)
    with pytest.raises(ConflictError):
        batch_launch(batch=launched, user=user)
    with pytest.raises(ConflictError):
        batch_discard_draft(batch=launched, user=user)
    with pytest.raises(ConflictError):
        batch_retry_failed(batch=launched, user=user)
    cancelled = batch_cancel(batch=launched, user=user)
    assert cancelled.status == "cancelled"
    assert set(cancelled.leads.values_list("status", flat=True)) == {"cancelled"}
    with pytest.raises(ConflictError):
        batch_cancel(batch=cancelled, user=user)
    with pytest.raises(ConflictError, match="no failed leads"):
        batch_retry_failed(batch=cancelled, user=user)


def test_create_and_launch_is_idempotent_per_key(user, leads):
    body = {"lead_ids": ids(leads), "name": "Dentists", "concurrency": 5}
    first, created = batch_create_and_launch(user=user, idempotency_key="k1", **body)
    again, created_again = batch_create_and_launch(user=user, idempotency_key="k1", **body)
    assert (created, created_again, again.pk) == (True, False, first.pk)
    with pytest.raises(IdempotencyConflict):
        batch_create_and_launch(user=user, idempotency_key="k1", **{**body, "concurrency": 6})
    other_user = make_user("other", "o@example.com")
    theirs, created = batch_create_and_launch(user=other_user, idempotency_key="k1", **body)
    assert created and theirs.pk != first.pk
    plain, created = batch_create_and_launch(user=user, **body)
    assert created and plain.status == "queued"
    assert BatchReport.objects.count() == 3
