from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from batches.analytics import batch_analytics
from batches.models import BatchReport, BatchReportLead
from batches.tests.api_fixtures import (
    ROLE_PERMISSIONS,
    add_lead_rows,
    make_batch,
    make_user,
    token_client,
)


@pytest.fixture
def viewer_client(db) -> APIClient:
    return token_client(make_user("viewer", ROLE_PERMISSIONS["viewer"]))


S = BatchReport.Status

ZERO_BUCKET = {
    "batches": 0,
    "leads": 0,
    "succeeded": 0,
    "failed": 0,
    "skipped": 0,
    "cancelled": 0,
    "success_rate_percent": None,
    "spend_usd": "0.0000",
    "cost_per_successful_lead_usd": None,
    "estimated_usd": "0.0000",
    "actual_usd": "0.0000",
    "actual_vs_estimate_percent": None,
    "mean_abs_estimate_error_percent": None,
}


def _created(batch, days_ago: int) -> None:
    type(batch).objects.filter(pk=batch.pk).update(created_at=timezone.now() - timedelta(days=days_ago))


@pytest.mark.django_db
def test_empty_range_is_all_zeros_and_nulls(django_assert_num_queries):
    with django_assert_num_queries(5):
        result = batch_analytics(days=7)
    today = timezone.now().date()
    assert result["days"] == 7
    assert result["until"] == today.isoformat()
    assert result["since"] == (today - timedelta(days=6)).isoformat()
    assert result["totals"] == ZERO_BUCKET
    assert [day["date"] for day in result["by_day"]] == [
        (today - timedelta(days=offset)).isoformat() for offset in range(6, -1, -1)
    ]
    assert all({k: v for k, v in day.items() if k != "date"} == ZERO_BUCKET for day in result["by_day"])


@pytest.fixture
def history(db):
    """Today: two comparable batches and a draft; two days ago: a budget-stopped batch; 40 days ago: one."""
    a = make_batch(status=S.COMPLETED, estimated_cost_usd=Decimal("10"), actual_cost_usd=Decimal("9.5"))
    add_lead_rows(a, ["succeeded", "succeeded", "succeeded", "failed", "skipped"])
    e = make_batch(
        status=S.COMPLETED_WITH_ERRORS, estimated_cost_usd=Decimal("4"), actual_cost_usd=Decimal("4.4")
    )
    add_lead_rows(e, ["succeeded", "succeeded"])
    draft = make_batch(status=S.DRAFT, estimated_cost_usd=Decimal("99"))
    add_lead_rows(draft, ["pending"])
    b = make_batch(
        status=S.COMPLETED_WITH_ERRORS,
        stop_reason="budget_exhausted",
        estimated_cost_usd=Decimal("5"),
        actual_cost_usd=Decimal("5"),
        budget_usd=Decimal("5"),
    )
    add_lead_rows(b, ["succeeded", "skipped"])
    _created(b, 2)
    old = make_batch(status=S.COMPLETED, estimated_cost_usd=Decimal("1"), actual_cost_usd=Decimal("2"))
    add_lead_rows(old, ["succeeded", "cancelled"])
    _created(old, 40)


def test_by_day_and_totals(history, django_assert_num_queries):
    with django_assert_num_queries(5):
        result = batch_analytics(days=30)
    by_date = {day.pop("date"): day for day in result["by_day"]}
    today = timezone.now().date()
    assert len(by_date) == 30
    assert by_date[today.isoformat()] == {
        "batches": 2,
        "leads": 7,
        "succeeded": 5,
        "failed": 1,
        "skipped": 1,
        "cancelled": 0,
        "success_rate_percent": 83.33,
        "spend_usd": "13.9000",
        "cost_per_successful_lead_usd": "2.7800",
        "estimated_usd": "14.0000",
        "actual_usd": "13.9000",
        "actual_vs_estimate_percent": 99.29,
        "mean_abs_estimate_error_percent": 7.5,
    }
    assert by_date[(today - timedelta(days=2)).isoformat()] == {
        **ZERO_BUCKET,
        "batches": 1,
        "leads": 2,
        "succeeded": 1,
        "skipped": 1,
        "success_rate_percent": 100.0,
        "spend_usd": "5.0000",
        "cost_per_successful_lead_usd": "5.0000",
    }
    assert by_date[(today - timedelta(days=1)).isoformat()] == ZERO_BUCKET
    assert result["totals"] == {
        "batches": 3,
        "leads": 9,
        "succeeded": 6,
        "failed": 1,
        "skipped": 2,
        "cancelled": 0,
        "success_rate_percent": 85.71,
        "spend_usd": "18.9000",
        "cost_per_successful_lead_usd": "3.1500",
        "estimated_usd": "14.0000",
        "actual_usd": "13.9000",
        "actual_vs_estimate_percent": 99.29,
        "mean_abs_estimate_error_percent": 7.5,
    }


def test_longer_range_reaches_older_batches_with_the_same_queries(history, django_assert_num_queries):
    with django_assert_num_queries(5):
        result = batch_analytics(days=365)
    assert len(result["by_day"]) == 365
    assert result["totals"]["batches"] == 4
    assert result["totals"]["cancelled"] == 1
    assert result["totals"]["estimated_usd"] == "15.0000"
    assert result["totals"]["actual_usd"] == "15.9000"
    # (0.05 + 0.1 + 1.0) / 3
    assert result["totals"]["mean_abs_estimate_error_percent"] == 38.33


def test_api_returns_the_selector_result(history, viewer_client):
    response = viewer_client.get("/api/batches/analytics/", {"days": 30})
    assert response.status_code == 200
    assert response.json() == batch_analytics(days=30)
    assert len(viewer_client.get("/api/batches/analytics/").json()["by_day"]) == 30


@pytest.mark.parametrize("days", ["0", "366", "-1", "abc", "1.5"])
def test_api_rejects_days_out_of_range(viewer_client, days):
    response = viewer_client.get("/api/batches/analytics/", {"days": days})
    assert response.status_code == 400
    assert list(response.json()) == ["days"]


def test_spend_by_provider_lead_durations_and_estimate_error_per_batch(history, django_assert_num_queries):
    from reports.models import ProviderCall

    batch = BatchReport.objects.get(estimated_cost_usd=Decimal("10"))
    rows = list(batch.leads.order_by("position"))
    for row, duration in zip(rows, [1000, 2000, 3000, 4000], strict=False):
        BatchReportLead.objects.filter(pk=row.pk).update(duration_ms=duration)
    calls = [
        ("pagespeed", "succeeded", "0.03"),
        ("pagespeed", "failed", "0"),
        ("semrush", "succeeded", "0.08"),
        ("semrush", "succeeded", "0.08"),
        ("llm", "cached", "0"),
    ]
    for provider, status, cost in calls:
        ProviderCall.objects.create(
            provider=provider, batch_lead_id=rows[0].pk, status=status, cost_usd=Decimal(cost)
        )
    # A call outside the range's batches does not count.
    ProviderCall.objects.create(
        provider="hunter", batch_lead_id=None, status="succeeded", cost_usd=Decimal("1")
    )

    with django_assert_num_queries(5):
        result = batch_analytics(days=30)

    assert result["by_provider"] == [
        {
            "provider": "semrush",
            "calls": 2,
            "paid_calls": 2,
            "failed_calls": 0,
            "cached_calls": 0,
            "spend_usd": "0.1600",
        },
        {
            "provider": "pagespeed",
            "calls": 2,
            "paid_calls": 1,
            "failed_calls": 1,
            "cached_calls": 0,
            "spend_usd": "0.0300",
        },
        {
            "provider": "llm",
            "calls": 1,
            "paid_calls": 0,
            "failed_calls": 0,
            "cached_calls": 1,
            "spend_usd": "0.0000",
        },
    ]
    # Four finished leads with a duration (the skipped one has none): 1, 2, 3 and 4 seconds.
    assert result["lead_duration_ms"] == {"count": 4, "p50": 2500, "p95": 3850}
    # The two batches that ran to completion today; the budget-stopped one is not compared.
    assert [
        (row["estimated_usd"], row["actual_usd"], row["error_percent"]) for row in result["estimate_by_batch"]
    ] == [
        ("4.0000", "4.4000", 10.0),
        ("10.0000", "9.5000", -5.0),
    ]
