"""The dashboard, the analytics page and the finished look of the admin, as the server renders them."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from batches.analytics import batch_analytics
from batches.engine import batch_finish_if_done
from batches.models import BatchReport, DailySpend
from batches.tests.ui_fixtures import ElementIndex, make_batch, make_user
from leadgen.display import usd

pytestmark = pytest.mark.django_db

VIEWER_PERMS = ("batches.view_batchreport",)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def viewer(django_user_model, client):
    user = make_user(django_user_model, "viewer", perms=VIEWER_PERMS)
    client.force_login(user)
    return user


def test_dashboard_shows_today_against_the_budget_running_and_latest_batches(client, viewer, settings):
    settings.DAILY_BUDGET_USD = Decimal("2500")
    DailySpend.objects.create(
        day=timezone.now().date(), spent_usd=Decimal("1234.56789"), reserved_usd=Decimal("5")
    )
    running = make_batch(
        user=viewer, statuses=["succeeded", "succeeded", "processing", "pending"], name="Now"
    )
    done = make_batch(
        user=viewer, statuses=["succeeded", "failed"], status=BatchReport.Status.COMPLETED, name="Done"
    )
    BatchReport.objects.filter(pk=done.pk).update(
        actual_cost_usd=Decimal("1.1111"), started_at=timezone.now() - timedelta(minutes=3)
    )
    paused = make_batch(
        user=viewer, statuses=["pending"], status=BatchReport.Status.PAUSED, name="Waiting for Hunter"
    )
    BatchReport.objects.filter(pk=paused.pk).update(
        stop_reason="provider_unavailable", stop_detail="hunter: plan usage limit reached (HTTP 429)"
    )

    response = client.get(reverse("batches:dashboard"))

    assert response.status_code == 200
    html = response.content.decode()
    index = ElementIndex(html)
    assert '<strong data-testid="spent-today">$1,234.5679</strong>' in html
    assert '<span data-testid="daily-budget">$2,500.0000</span>' in html
    assert '<dd data-testid="left-today">$1,260.4321</dd>' in html
    assert "49.6% of the daily budget used or reserved" in html
    # Running now: the running batch and the paused one, each linked to its live page.
    assert f'<tr data-batch-id="{running.pk}" data-status-url="/api/batches/{running.pk}/">' in html
    assert f'<tr data-batch-id="{paused.pk}" data-status-url="/api/batches/{paused.pk}/">' in html
    assert f'<tr data-batch-id="{done.pk}" data-status-url=' not in html
    assert 'aria-valuetext="2 of 4 leads done"' in html
    # Latest batches: status, leads, cost against estimate, accuracy, duration.
    assert f'<a href="/batches/{done.pk}/">Done</a>' in html
    assert '<td class="num">$1.1111</td>' in html and '<td class="num">$1.2345</td>' in html
    assert '<td class="num">90.0%</td>' in html  # 1.1111 / 1.2345
    assert '<td class="num">3 min</td>' in html
    # Providers: hunter has the paused batch and the reason, as one readable line.
    assert (
        f'<a href="/batches/{paused.pk}/">Waiting for Hunter</a>'
        " (hunter: plan usage limit reached (HTTP 429))" in html
    )
    assert 'data-provider="hunter" data-state="attention"' in html
    assert 'data-provider="pagespeed" data-state="ok"' in html
    assert html.count("none in the sandbox") == 6  # circuit breakers work in live mode only
    # The spend chart and its table.
    assert index.by_id["spend-chart"]["data-chart"] == "bar"
    assert index.by_id["spend-chart"]["role"] == "img"
    assert "spend-chart-data" in index.by_id and "spend-table" in index.by_id


def test_the_analytics_page_renders_the_analytics_result(client, viewer):
    make_batch(
        user=viewer, statuses=["succeeded", "failed", "succeeded"], status=BatchReport.Status.COMPLETED
    )
    expected = batch_analytics(days=7)

    response = client.get(reverse("batches:analytics"), {"days": 7})

    assert response.status_code == 200
    assert response.context["result"] == expected
    html = response.content.decode()
    assert f'<dd data-testid="total-leads">{expected["totals"]["leads"]}</dd>' in html
    assert '<dd data-testid="success-rate">66.67%</dd>' in html
    assert f'<dd data-testid="total-spend">{usd(expected["totals"]["spend_usd"])}</dd>' in html
    assert html.count('<tr data-date="') == 7
    assert '<a href="/api/batches/analytics/?days=7">' in html
    for chart in (
        "spend-by-day-chart",
        "success-by-day-chart",
        "spend-by-provider-chart",
        "estimate-error-chart",
    ):
        canvas = ElementIndex(html).by_id[chart]
        assert canvas["role"] == "img" and "table" in canvas["aria-label"]


@pytest.mark.parametrize("days", ["0", "366", "abc"])
def test_the_analytics_page_refuses_a_bad_range_with_a_message(client, viewer, days):
    response = client.get(reverse("batches:analytics"), {"days": days})
    assert response.status_code == 400
    assert 'id="range-errors"' in response.content.decode()


def test_pages_need_staff_and_the_view_permission(client, django_user_model):
    client.force_login(make_user(django_user_model, "nobody"))
    assert client.get(reverse("batches:dashboard")).status_code == 403
    assert client.get(reverse("batches:analytics")).status_code == 403
    client.logout()
    assert client.get(reverse("batches:dashboard")).status_code == 302


def test_admin_is_branded_with_proper_names_and_a_readable_batch_list(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="cpo", password="pw")
    client.force_login(user)
    batch = make_batch(
        user=user, statuses=["succeeded", "succeeded", "failed"], status=BatchReport.Status.COMPLETED
    )
    BatchReport.objects.filter(pk=batch.pk).update(
        actual_cost_usd=Decimal("6.141191"),
        estimated_cost_usd=Decimal("6.3712"),
        started_at=timezone.now() - timedelta(seconds=75),
    )

    index = client.get("/admin/").content.decode()
    changelist = client.get("/admin/batches/batchreport/").content.decode()

    assert '<div id="site-name"><a href="/admin/">Leadgen</a></div>' in index
    assert "<title>Administration | Leadgen</title>" in index
    assert "Webhook deliveries" in index and "Webhook deliverys" not in index
    assert '<a href="/batches/">Dashboard</a>' in index
    assert '<progress max="100" value="100.0" aria-label="3 of 3 leads done"></progress> 3/3' in changelist
    assert "$6.1412 ($6.3712)" in changelist
    assert "96.4%" in changelist  # 6.141191 / 6.3712
    assert "1 min" in changelist
    assert f'<a href="/batches/{batch.pk}/">Live progress</a>' in changelist
    change_form = client.get(f"/admin/batches/batchreport/{batch.pk}/change/").content.decode()
    assert '<div class="readonly">$6.1412</div>' in change_form

    from reports.models import ProviderCall

    ProviderCall.objects.create(provider="semrush", status="succeeded", cost_usd=Decimal("1234.5"))
    calls = client.get("/admin/reports/providercall/").content.decode()
    assert (
        "$1,234.5000" in calls and "$0.0800" in client.get("/admin/reports/providerprice/").content.decode()
    )


def test_the_completion_email_shows_money_like_the_pages(
    django_user_model, django_capture_on_commit_callbacks
):
    user = make_user(django_user_model, "launcher")
    user.email = "cpo@example.com"
    user.save()
    batch = make_batch(user=user, statuses=["succeeded", "succeeded"])
    # Nothing was paid through the call log, so the finish books $0 (the ledger stays consistent).
    BatchReport.objects.filter(pk=batch.pk).update(estimated_cost_usd=Decimal("1300.12345"))

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_finish_if_done(batch_id=batch.pk)

    assert len(mail.outbox) == 1
    assert "Cost: $0.0000 (estimated $1,300.1235)" in mail.outbox[0].body


def test_the_live_page_history_is_rebuilt_from_the_lead_rows_in_one_query(django_assert_num_queries, viewer):
    from batches.models import BatchReportLead
    from batches.selectors import batch_progress_history

    batch = make_batch(
        user=viewer,
        statuses=["succeeded", "failed", "succeeded", "processing"],
        status=BatchReport.Status.RUNNING,
    )
    start = timezone.now() - timedelta(minutes=10)
    BatchReport.objects.filter(pk=batch.pk).update(started_at=start, estimated_cost_usd=Decimal("1"))
    rows = list(batch.leads.order_by("position"))
    # (started, finished, cost) in minutes after the start.
    timings = [(0, 2, "0.1"), (1, 4, "0"), (3, 7, "0.25"), (8, None, "0")]
    for row, (began, ended, cost) in zip(rows, timings, strict=True):
        BatchReportLead.objects.filter(pk=row.pk).update(
            started_at=start + timedelta(minutes=began),
            finished_at=None if ended is None else start + timedelta(minutes=ended),
            cost_usd=Decimal(cost),
        )
    batch.refresh_from_db()
    BatchReport.objects.filter(pk=batch.pk).update(finished_at=start + timedelta(minutes=10))
    batch.refresh_from_db()

    with django_assert_num_queries(1):
        history = batch_progress_history(batch=batch, points=6)

    points = [
        (p["elapsed_clock"], p["succeeded"], p["failed"], p["processing"], p["actual_cost_usd"])
        for p in history["points"]
    ]
    assert points == [
        ("0:00", 0, 0, 1, "0.0000"),
        ("2:00", 1, 0, 1, "0.1000"),
        ("4:00", 1, 1, 1, "0.1000"),
        ("6:00", 1, 1, 1, "0.1000"),
        ("8:00", 2, 1, 1, "0.3500"),
        ("10:00", 2, 1, 1, "0.3500"),
    ]
    assert history["estimated_cost_usd"] == "1.0000"


@pytest.fixture
def semrush_circuit():
    """Semrush's circuit, closed again after the test (in this process or in Redis)."""
    from reports import breaker

    yield
    breakers = breaker.breakers()
    if isinstance(breakers, breaker.LocalBreakers):
        breakers._open_until.pop("semrush", None)
        breakers._failures.pop("semrush", None)
    else:
        breakers.client.delete(*breakers._keys("semrush"))


def test_the_dashboard_shows_an_open_circuit(client, viewer, settings, semrush_circuit):
    from reports.breaker import breaker_record
    from reports.providers.base import ProviderError

    settings.PROVIDER_MODE = "live"
    settings.PROVIDER_BREAKER_FAILURES = 2
    settings.PROVIDER_BREAKER_COOLDOWN_SECONDS = 30.0
    for _ in range(2):
        breaker_record(
            "semrush", ProviderError(provider="semrush", code="http_503", message="x", transient=True)
        )

    html = client.get(reverse("batches:dashboard")).content.decode()

    assert 'data-provider="semrush" data-state="attention"' in html
    assert "<strong>open</strong>: calls wait for the cool-down" in html
    assert 'data-provider="pagespeed" data-state="ok"' in html
