"""Pause and resume: running <-> paused, paused -> cancelled, and what pausing keeps true."""

import threading
import time
from datetime import timedelta

import pytest
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from batches.engine import claim_next, new_owner, process, recover, run_slice, settle
from batches.models import BatchReport, BatchReportLead
from batches.services import batch_cancel, batch_create_draft, batch_launch, batch_pause, batch_resume
from batches.tests.engine import make_leads, make_user, run_to_end
from leadgen.errors import ConflictError
from reports.models import ProviderCall
from reports.selectors import price_table

B = BatchReport.Status
S = BatchReportLead.Status
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_sandbox(settings):
    settings.SANDBOX_LATENCY_MS = 0
    settings.SANDBOX_FAILURE_RATE = 0.0
    settings.BATCH_RETRY_BASE_SECONDS = 0


def launch(count, user=None, **options):
    batch = batch_create_draft(user=user, lead_ids=[lead.pk for lead in make_leads(count)], **options)
    return batch_launch(batch=batch, user=user, enqueue=False)


def queued_tasks() -> int:
    from django_q.models import OrmQ

    return OrmQ.objects.count()


def test_running_to_paused_to_running():
    user = make_user()
    batch = launch(6, user=user, concurrency=2)
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
    assert settle(claim, process(claim)) == S.SUCCEEDED
    batch.refresh_from_db()
    assert batch.status == B.RUNNING

    batch = batch_pause(batch=batch, user=user)
    assert (batch.status, batch.stop_reason) == (B.PAUSED, "paused_by_user")
    # A runner that starts while the batch is paused claims nothing and leaves it paused.
    assert run_slice(batch_id=batch.pk, follow_up=False) == 0
    batch.refresh_from_db()
    assert batch.status == B.PAUSED

    before = queued_tasks()
    batch = batch_resume(batch=batch, user=user)
    assert (batch.status, batch.stop_reason) == (B.RUNNING, "")
    assert queued_tasks() - before == 2  # BATCH_RUNNERS_PER_BATCH runners, at most its concurrency
    batch = run_to_end(batch.pk)
    assert batch.status == B.COMPLETED
    assert BatchReportLead.objects.filter(batch=batch, status=S.SUCCEEDED, attempts=1).count() == 6
    assert BatchReport.objects.get(pk=batch.pk).reserved_usd == 0


def test_a_queued_batch_that_never_started_resumes_queued():
    batch = launch(2)
    batch = batch_pause(batch=batch, user=None)
    assert batch.status == B.PAUSED
    assert batch_resume(batch=batch, user=None).status == B.QUEUED


def test_paused_to_cancelled():
    user = make_user()
    batch = launch(4, user=user)
    batch_pause(batch=batch, user=user)
    batch = batch_cancel(batch=batch, user=user)
    assert (batch.status, batch.stop_reason) == (B.CANCELLED, "cancelled_by_user")
    assert set(BatchReportLead.objects.filter(batch=batch).values_list("status", flat=True)) == {S.CANCELLED}


@pytest.mark.parametrize("service", [batch_pause, batch_resume])
def test_pause_and_resume_refuse_where_the_status_does_not_allow_it(service):
    finished = run_to_end(launch(1).pk)
    assert finished.status == B.COMPLETED
    with pytest.raises(ConflictError):
        service(batch=finished, user=None)
    draft = batch_create_draft(user=None, lead_ids=[lead.pk for lead in make_leads(1, prefix="draft")])
    with pytest.raises(ConflictError):
        service(batch=draft, user=None)


def test_pausing_a_paused_batch_and_resuming_a_running_one_are_conflicts():
    batch = launch(2)
    batch_pause(batch=batch, user=None)
    with pytest.raises(ConflictError):
        batch_pause(batch=batch, user=None)
    batch_resume(batch=batch, user=None)
    with pytest.raises(ConflictError):
        batch_resume(batch=batch, user=None)


def test_recovery_leaves_a_paused_batch_alone_but_takes_back_its_expired_leases():
    batch = launch(3)
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
    batch_pause(batch=batch, user=None)
    BatchReportLead.objects.filter(pk=claim.row_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    BatchReport.objects.filter(pk=batch.pk).update(runner_heartbeat_at=timezone.now() - timedelta(hours=1))
    assert recover() == {"reclaimed": 1, "failed": 0, "restarted": 0, "finished": 0}
    batch.refresh_from_db()
    assert (batch.status, batch.reserved_usd) == (B.PAUSED, 0)
    assert BatchReportLead.objects.get(pk=claim.row_id).status == S.PENDING


@pytest.mark.slow
def test_two_runners_pause_mid_batch_claim_nothing_after_it_and_resume_processes_every_lead_once(settings):
    settings.SANDBOX_LATENCY_MS = 20
    user = make_user()
    batch = launch(80, user=user, concurrency=4)

    def runner():
        from django.db import connections

        try:
            while BatchReport.objects.filter(pk=batch.pk, status__in=BatchReport.CLAIMABLE).exists():
                run_slice(batch_id=batch.pk, follow_up=False, max_seconds=30)
        finally:
            connections.close_all()

    runners = [threading.Thread(target=runner) for _ in range(2)]
    for thread in runners:
        thread.start()
    deadline = time.monotonic() + 30
    while BatchReportLead.objects.filter(batch=batch, status=S.SUCCEEDED).count() < 12:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    batch_pause(batch=batch, user=user)
    paused_at = timezone.now()
    for thread in runners:
        thread.join(30)
        assert not thread.is_alive()

    batch.refresh_from_db()
    counts = dict(BatchReportLead.objects.filter(batch=batch).values_list("status").annotate(n=Count("id")))
    assert batch.status == B.PAUSED and batch.reserved_usd == 0
    assert S.PROCESSING not in counts and counts[S.PENDING] > 0
    assert not BatchReportLead.objects.filter(batch=batch, started_at__gt=paused_at).exists()
    assert not BatchReportLead.objects.filter(batch=batch, status=S.PENDING, attempts__gt=0).exists()

    batch = batch_resume(batch=batch, user=user)
    runners = [threading.Thread(target=runner) for _ in range(2)]
    for thread in runners:
        thread.start()
    for thread in runners:
        thread.join(60)
    batch.refresh_from_db()
    assert batch.status == B.COMPLETED
    assert BatchReportLead.objects.filter(batch=batch, status=S.SUCCEEDED, attempts=1).count() == 80
    calls = ProviderCall.objects.filter(batch_lead_id__in=batch.leads.values("pk"))
    assert not calls.values("batch_lead_id", "provider").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert calls.values("batch_lead_id").distinct().count() == 80


def test_pause_and_resume_through_the_api():
    from django.contrib.auth.models import Permission

    user = make_user()
    user.user_permissions.add(*Permission.objects.filter(codename__in=["run_batch", "view_batchreport"]))
    client = APIClient()
    client.force_authenticate(user)
    batch = launch(3, user=user)

    response = client.post(f"/api/batches/{batch.pk}/pause/")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["stop_reason"]) == ("paused", "paused_by_user")
    assert client.post(f"/api/batches/{batch.pk}/pause/").status_code == 409
    response = client.post(f"/api/batches/{batch.pk}/resume/")
    assert (response.status_code, response.json()["status"]) == (200, "queued")
    conflict = client.post(f"/api/batches/{batch.pk}/resume/")
    assert conflict.status_code == 409 and "not paused" in conflict.json()["detail"]

    finished = run_to_end(batch.pk)
    assert client.post(f"/api/batches/{finished.pk}/pause/").status_code == 409
    assert client.post("/api/batches/999999/pause/").status_code == 404


def test_pause_and_resume_from_the_live_page(admin_client):
    batch = launch(3)
    page = admin_client.get(reverse("batches:detail", args=[batch.pk])).content.decode()
    assert 'id="pause-form" >' in page or 'id="pause-form">' in page
    response = admin_client.post(reverse("batches:pause", args=[batch.pk]), follow=True)
    assert "Paused: no new leads start" in response.content.decode()
    assert BatchReport.objects.get(pk=batch.pk).status == B.PAUSED
    page = admin_client.get(reverse("batches:detail", args=[batch.pk])).content.decode()
    assert 'id="pause-form" hidden' in page and 'id="resume-form" >' in page
    assert '<dd id="provider-hunter" data-state="ok">ok</dd>' in page
    assert 'id="stop-hint" class="batch-hint" hidden' in page  # paused by the user, not by a provider
    admin_client.post(reverse("batches:resume", args=[batch.pk]))
    assert BatchReport.objects.get(pk=batch.pk).status == B.QUEUED


def test_pause_and_resume_from_the_admin(admin_client):
    batch = launch(2)
    changelist = reverse("admin:batches_batchreport_changelist")
    admin_client.post(changelist, {"action": "pause_batches", "_selected_action": [batch.pk]})
    assert BatchReport.objects.get(pk=batch.pk).status == B.PAUSED
    admin_client.post(changelist, {"action": "resume_batches", "_selected_action": [batch.pk]})
    assert BatchReport.objects.get(pk=batch.pk).status == B.QUEUED


def test_a_provider_unavailable_to_every_lead_pauses_the_batch_and_costs_no_attempt():
    from batches.engine import Result

    user = make_user()
    batch = launch(3, user=user, concurrency=2)
    prices = price_table()
    first = claim_next(batch_id=batch.pk, owner=new_owner(), prices=prices)
    second = claim_next(batch_id=batch.pk, owner=new_owner(), prices=prices)
    quota = Result(error_code="plan_used_up", error_message="hunter: plan usage limit reached (HTTP 429)")
    quota.unavailable = True
    assert settle(first, quota) == S.PENDING
    batch.refresh_from_db()
    assert (batch.status, batch.stop_reason, batch.stop_detail) == (
        B.PAUSED,
        "provider_unavailable",
        "hunter: plan usage limit reached (HTTP 429)",
    )
    row = BatchReportLead.objects.get(pk=first.row_id)
    assert (row.status, row.attempts, row.run_attempts, row.next_attempt_at) == (S.PENDING, 0, 0, None)
    # The other lead in flight finishes; nothing new starts while paused.
    assert settle(second, process(second)) == S.SUCCEEDED
    assert claim_next(batch_id=batch.pk, owner=new_owner(), prices=prices) == "stop"
    assert BatchReport.objects.get(pk=batch.pk).reserved_usd == 0

    batch = batch_resume(batch=batch, user=user)
    assert (batch.status, batch.stop_reason, batch.stop_detail) == (B.RUNNING, "", "")
    batch = run_to_end(batch.pk)
    assert batch.status == B.COMPLETED
    assert BatchReportLead.objects.get(pk=first.row_id).attempts == 1


def test_a_batch_paused_while_its_last_lead_is_in_flight_completes_when_that_lead_settles():
    from batches.engine import batch_finish_if_done

    batch = launch(1)
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
    batch_pause(batch=batch, user=None)
    assert not batch_finish_if_done(batch_id=batch.pk)  # a lead is still in flight
    assert settle(claim, process(claim)) == S.SUCCEEDED
    assert batch_finish_if_done(batch_id=batch.pk)
    assert BatchReport.objects.get(pk=batch.pk).status == B.COMPLETED


def test_a_provider_whose_circuit_is_open_defers_the_lead_without_spending_an_attempt():
    from batches.engine import Result

    batch = launch(2)
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
    before = timezone.now()
    open_circuit = Result(
        error_code="circuit_open", error_message="pagespeed: circuit open", transient=True, retry_after=7.0
    )
    assert settle(claim, open_circuit) == S.PENDING
    row = BatchReportLead.objects.get(pk=claim.row_id)
    assert (row.attempts, row.run_attempts) == (0, 0)
    assert before + timedelta(seconds=6.5) < row.next_attempt_at < timezone.now() + timedelta(seconds=7.5)
    batch.refresh_from_db()
    assert (batch.status, batch.reserved_usd) == (B.RUNNING, 0)


def test_the_snapshot_names_the_provider_the_batch_paused_for_and_open_circuits(settings):
    from batches.engine import Result
    from batches.selectors import batch_snapshot
    from reports.breaker import breaker_record
    from reports.providers import ProviderError

    batch = launch(2)
    assert set(batch_snapshot(batch_id=batch.pk)["providers"].values()) == {"ok"}
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
    quota = Result(
        error_code="plan_limit_reached", error_message="hunter: plan usage limit reached (HTTP 429)"
    )
    quota.unavailable = True
    settle(claim, quota)
    assert batch_snapshot(batch_id=batch.pk)["providers"]["hunter"] == "unavailable"

    settings.PROVIDER_MODE = "live"
    settings.PROVIDER_BREAKER_FAILURES = 2
    BatchReport.objects.filter(pk=batch.pk).update(provider_mode="live")
    for _ in range(2):
        breaker_record(
            "semrush", ProviderError(provider="semrush", code="timeout", message="timed out", transient=True)
        )
    providers = batch_snapshot(batch_id=batch.pk)["providers"]
    assert (providers["semrush"], providers["hunter"], providers["pagespeed"]) == (
        "open",
        "unavailable",
        "ok",
    )
    breaker_record("semrush", None)
