import pytest
from django.utils import timezone

from batches.models import BatchReport, BatchReportLead
from batches.selectors import batch_lead_rows, batch_list, batch_snapshot
from batches.tests.engine import make_leads, make_user
from leadgen.errors import ServiceError

pytestmark = pytest.mark.django_db

FIELDS = set(
    [
        "id",
        "name",
        "status",
        "provider_mode",
        "total",
        "pending",
        "processing",
        "succeeded",
        "failed",
        "skipped",
        "cancelled",
        "progress_percent",
        "estimated_cost_usd",
        "actual_cost_usd",
        "budget_usd",
        "created_at",
        "started_at",
        "finished_at",
        "eta_seconds",
        "eta_low_seconds",
        "eta_high_seconds",
        "eta_state",
        "eta_text",
        "throughput_per_minute",
        "stop_reason",
        "stop_detail",
        "providers",
        "recent",
        "seq",
    ]
)


def make_batch(size: int) -> BatchReport:
    leads = make_leads(size, prefix=f"s{size}x")
    started = timezone.now() - timezone.timedelta(minutes=2)
    batch = BatchReport.objects.create(
        name=f"{size}", status="running", provider_mode="sandbox", started_at=started, budget_usd="10"
    )
    now = timezone.now()
    rows = []
    for i, lead in enumerate(leads):
        done = i % 2 == 0
        rows.append(
            BatchReportLead(
                batch=batch,
                lead=lead,
                position=i,
                status="succeeded" if done else "pending",
                attempts=1 if done else 0,
                run_attempts=1 if done else 0,
                cost_usd="0.13" if done else 0,
                finished_at=now if done else None,
            )
        )
    BatchReportLead.objects.bulk_create(rows, batch_size=5000)
    # Started two minutes before now, not before the rows were written (10,000 take a few seconds).
    BatchReport.objects.filter(pk=batch.pk).update(started_at=timezone.now() - timezone.timedelta(minutes=2))
    return batch


@pytest.mark.parametrize("size", [10, 10_000])
def test_snapshot_uses_three_queries_whatever_the_size(size, django_assert_num_queries):
    batch = make_batch(size)
    with django_assert_num_queries(3):
        snapshot = batch_snapshot(batch_id=batch.pk)
    assert set(snapshot) == FIELDS
    assert snapshot["total"] == size
    assert (snapshot["succeeded"], snapshot["pending"]) == (size // 2, size // 2)
    assert snapshot["progress_percent"] == 50.0
    assert len(snapshot["recent"]) == min(20, size // 2)
    assert snapshot["budget_usd"] == "10.0000" and snapshot["actual_cost_usd"] == "0.0000"
    # Half the leads finished in ~2 minutes: as many again take about as long.
    assert snapshot["throughput_per_minute"] == pytest.approx(size / 2 / 2, rel=0.05)
    assert snapshot["eta_seconds"] == pytest.approx(120, abs=3)


def test_snapshot_recent_rows_and_finished_batch():
    user = make_user()
    batch = make_batch(4)
    row = BatchReportLead.objects.filter(batch=batch, status="succeeded").select_related("lead").first()
    BatchReportLead.objects.filter(pk=row.pk).update(duration_ms=1500, cost_usd="0.130225")
    BatchReport.objects.filter(pk=batch.pk).update(
        status="completed", finished_at=timezone.now(), created_by=user
    )
    snapshot = batch_snapshot(batch_id=batch.pk)
    first = next(item for item in snapshot["recent"] if item["lead_id"] == row.lead_id)
    assert first == {
        "lead_id": row.lead_id,
        "company_name": row.lead.company_name,
        "status": "succeeded",
        "attempts": 1,
        "error": "",
        "error_code": "",
        "cost_usd": "0.1302",
        "duration_ms": 1500,
        "report_url": None,
        "warnings": [],
    }
    assert snapshot["eta_seconds"] == 0
    assert batch_list(user=user).get() == batch
    assert list(batch_list(filters={"status": "completed"})) == [batch]
    with pytest.raises(ServiceError):
        batch_list(filters={"colour": "red"})
    assert batch_lead_rows(batch=batch, status="pending").count() == 2
    with pytest.raises(ServiceError):
        batch_lead_rows(batch=batch, status="lost")
