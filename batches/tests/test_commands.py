import io

import pytest
from django.core.management import CommandError, call_command

from batches.models import BatchReport
from batches.tests.engine import make_leads
from leadgen.display import usd

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_sandbox(settings):
    settings.SANDBOX_LATENCY_MS = 0
    settings.SANDBOX_FAILURE_RATE = 0.0


def test_run_batch_creates_launches_and_runs_in_process():
    make_leads(6)
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "run_batch", "--filter", "industry=dentist", "--limit", "4", "--budget", "50", "--concurrency", "2",
        "--name", "Dentists", stdout=out, stderr=err,
    )  # fmt: skip
    batch = BatchReport.objects.get()
    assert (batch.name, batch.status, batch.concurrency, batch.leads.count()) == (
        "Dentists",
        "completed",
        2,
        4,
    )
    assert batch.created_by is None and batch.budget_usd == 50
    assert f"Batch #{batch.pk} completed: 4 succeeded, 0 failed" in out.getvalue()
    assert f"cost {usd(batch.actual_cost_usd)} (estimated {usd(batch.estimated_cost_usd)})" in out.getvalue()


def test_run_batch_skips_recently_reported_leads_unless_included():
    from django.utils import timezone

    make_leads(3, last_reported_at=timezone.now())
    out = io.StringIO()
    call_command("run_batch", "--filter", "industry=dentist", stdout=out, stderr=io.StringIO())
    skipped = BatchReport.objects.get()
    assert set(skipped.leads.values_list("status", "error_code")) == {("skipped", "recent_report")}

    call_command(
        "run_batch", "--filter", "industry=dentist", "--include-recent", stdout=out, stderr=io.StringIO()
    )
    included = BatchReport.objects.exclude(pk=skipped.pk).get()
    assert (included.status, included.leads.filter(status="succeeded").count()) == ("completed", 3)


@pytest.mark.parametrize(
    "args",
    [
        ["--filter", "industry"],
        ["--filter", "colour=red"],
        ["--filter", "industry=astronaut"],
        ["--filter", "industry=dentist", "--budget", "-3"],
        ["--filter", "industry=dentist", "--concurrency", "0"],
        ["--filter", "industry=dentist", "--limit", "0"],
        ["--filter", "industry=law_firm"],
        ["--user", "nobody"],
    ],
)
def test_run_batch_rejects_bad_input(args):
    make_leads(2)
    with pytest.raises(CommandError):
        call_command("run_batch", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert not BatchReport.objects.exclude(status="draft").exists()
