import importlib
import io
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from batches.engine import claim_next, new_owner, process, recover
from batches.models import BatchReport, BatchReportLead, DailySpend
from batches.services import batch_create_draft, batch_launch
from batches.tests.engine import make_leads, run_to_end
from leadgen.embedded_db import database_url
from reports.models import ProviderCall
from reports.selectors import price_table

S = BatchReportLead.Status
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_sandbox(settings):
    settings.SANDBOX_LATENCY_MS = 0
    settings.SANDBOX_FAILURE_RATE = 0.0
    settings.BATCH_RETRY_BASE_SECONDS = 0


def launch(count, **options):
    batch = batch_create_draft(user=None, lead_ids=[lead.pk for lead in make_leads(count)], **options)
    return batch_launch(batch=batch, user=None, enqueue=False)


def crash_after_paying(batch):
    """A worker claims a lead, pays its providers, then dies before settling."""
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
    outcome = process(claim)
    assert outcome.succeeded
    BatchReportLead.objects.filter(pk=claim.row_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return claim


def test_an_expired_lease_is_reclaimed_and_paid_calls_are_not_bought_again():
    batch = launch(2)
    claim = crash_after_paying(batch)
    paid = ProviderCall.objects.filter(batch_lead_id=claim.row_id).aggregate(total=Sum("cost_usd"))["total"]
    assert paid > 0
    assert BatchReport.objects.get(pk=batch.pk).reserved_usd > 0

    result = recover()
    assert result["reclaimed"] == 1
    row = BatchReportLead.objects.get(pk=claim.row_id)
    assert (row.status, row.lease_owner, row.reserved_usd, row.cost_usd) == (S.PENDING, "", 0, paid)
    batch.refresh_from_db()
    assert (batch.reserved_usd, batch.actual_cost_usd) == (0, paid)
    assert DailySpend.objects.get().reserved_usd == 0

    batch = run_to_end(batch.pk)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (S.SUCCEEDED, 2)
    calls = ProviderCall.objects.filter(batch_lead_id=claim.row_id)
    assert (
        not calls.filter(status="succeeded", cost_usd__gt=0)
        .values("provider")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .exists()
    )
    assert calls.filter(attempt=2, status="succeeded", cost_usd__gt=0).count() == 0
    assert batch.status == BatchReport.Status.COMPLETED
    total = ProviderCall.objects.filter(batch_lead_id__in=batch.leads.values("pk")).aggregate(
        t=Sum("cost_usd")
    )
    assert batch.actual_cost_usd == total["t"]
    assert DailySpend.objects.get().spent_usd == batch.actual_cost_usd


def test_a_lead_whose_attempts_were_used_up_by_crashes_fails_as_worker_lost():
    batch = launch(1, max_retries=0)
    claim = crash_after_paying(batch)
    assert recover()["failed"] == 1
    row = BatchReportLead.objects.get(pk=claim.row_id)
    assert (row.status, row.error_code) == (S.FAILED, "worker_lost")
    batch.refresh_from_db()
    assert batch.status == BatchReport.Status.COMPLETED_WITH_ERRORS
    assert batch.reserved_usd == 0 and batch.actual_cost_usd == row.cost_usd > 0


def test_recovery_restarts_batches_with_work_and_no_live_runner():
    batch = batch_create_draft(user=None, lead_ids=[lead.pk for lead in make_leads(3)], concurrency=4)
    batch = batch_launch(batch=batch, user=None)
    assert OrmQ.objects.count() == 2
    assert recover()["restarted"] == 0  # launched just now: its runners are queued
    BatchReport.objects.filter(pk=batch.pk).update(runner_heartbeat_at=timezone.now() - timedelta(hours=1))
    assert recover()["restarted"] == 1
    assert OrmQ.objects.count() == 4
    assert recover()["restarted"] == 0  # the enqueue counts as a sign of life


def test_recover_batches_command_and_idempotent_schedule():
    from django.apps import apps

    migration = importlib.import_module("batches.migrations.0002_recovery_schedule")
    Schedule.objects.all().delete()
    migration.create_schedule(apps, None)
    migration.create_schedule(apps, None)
    schedule = Schedule.objects.get()
    assert (schedule.name, schedule.func, schedule.schedule_type, schedule.minutes) == (
        "batches.recover_batches",
        "batches.tasks.batch_recover_task",
        Schedule.MINUTES,
        django_settings.RECOVERY_INTERVAL_MINUTES,
    )
    out = io.StringIO()
    call_command("recover_batches", stdout=out)
    assert out.getvalue().strip() == "reclaimed 0, failed 0, restarted 0, finished 0"


def _qcluster(env):
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_killed_qcluster_loses_nothing_and_pays_nothing_twice(settings):
    settings.BATCH_LEASE_SECONDS = 3
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "SANDBOX_LATENCY_MS": "200",
        "SANDBOX_FAILURE_RATE": "0",
        "BATCH_LEASE_SECONDS": "3",
        "Q_WORKERS": "2",
        "RECOVERY_INTERVAL_MINUTES": "60",
    }
    batch = batch_create_draft(user=None, lead_ids=[lead.pk for lead in make_leads(40)], concurrency=6)
    batch = batch_launch(batch=batch, user=None)
    rows = BatchReportLead.objects.filter(batch=batch)
    first = _qcluster(env)
    try:
        _wait(lambda: rows.filter(status=S.SUCCEEDED).count() >= 5, 60, "the first leads")
        _kill(first)
        in_flight = rows.filter(status=S.PROCESSING).count()
        assert in_flight > 0, "the worker was killed between leads; nothing to recover"
        assert rows.filter(status=S.PENDING).exists()
    finally:
        _kill(first)
    time.sleep(3.5)  # let the dead worker's leases expire
    second = _qcluster(env)
    try:
        assert recover()["restarted"] == 1
        _wait(lambda: BatchReport.objects.get(pk=batch.pk).is_finished, 120, "the batch to finish")
    finally:
        _kill(second)
    batch.refresh_from_db()
    assert batch.status == BatchReport.Status.COMPLETED
    assert rows.filter(status=S.SUCCEEDED).count() == 40
    assert not rows.filter(~Q(status=S.SUCCEEDED)).exists()
    assert rows.filter(attempts=2).count() >= in_flight
    calls = ProviderCall.objects.filter(batch_lead_id__in=rows.values("pk"))
    paid_twice = (
        calls.filter(status="succeeded", cost_usd__gt=0)
        .values("batch_lead_id", "provider")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not paid_twice.exists()
    assert batch.actual_cost_usd == calls.aggregate(total=Sum("cost_usd"))["total"]
    assert batch.reserved_usd == 0
