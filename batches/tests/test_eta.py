"""The time left in the snapshot: a range once the pace is known, otherwise what the batch waits for."""

from datetime import timedelta

import pytest
from django.utils import timezone

from batches.eta import WARMUP_LEADS, batch_eta, pause_text
from batches.models import BatchReport, BatchReportLead
from batches.selectors import batch_snapshot
from batches.tests.engine import make_leads

pytestmark = pytest.mark.django_db


def batch_with(
    *,
    succeeded: int,
    pending: int = 0,
    processing: int = 0,
    started_ago: timedelta,
    backoff: list[timedelta] | None = None,
    status: str = BatchReport.Status.RUNNING,
    **fields,
) -> BatchReport:
    """A batch whose rows are written directly: `backoff` gives the wait left of that many pending leads."""
    now = timezone.now()
    backoff = backoff or []
    total = succeeded + pending + processing
    leads = make_leads(total, prefix=f"eta{BatchReport.objects.count()}x")
    batch = BatchReport.objects.create(name="ETA", status=status, provider_mode="sandbox", **fields)
    rows = []
    for i, lead in enumerate(leads):
        if i < succeeded:
            values = {"status": "succeeded", "attempts": 1, "finished_at": now}
        elif i < succeeded + processing:
            values = {"status": "processing", "attempts": 1, "lease_owner": "w", "lease_expires_at": now}
        else:
            waiting = i - succeeded - processing
            values = {"status": "pending", "attempts": 0}
            if waiting < len(backoff):
                values = {"status": "pending", "attempts": 1, "next_attempt_at": now + backoff[waiting]}
        rows.append(BatchReportLead(batch=batch, lead=lead, position=i, **values))
    BatchReportLead.objects.bulk_create(rows)
    BatchReport.objects.filter(pk=batch.pk).update(started_at=timezone.now() - started_ago)
    return batch


def test_every_open_lead_waiting_for_its_backoff_says_so_instead_of_a_number():
    batch = batch_with(
        succeeded=6,
        pending=4,
        started_ago=timedelta(minutes=1),
        backoff=[timedelta(seconds=30), timedelta(seconds=45), timedelta(seconds=50), timedelta(seconds=60)],
    )

    snapshot = batch_snapshot(batch_id=batch.pk)

    assert snapshot["eta_state"] == "waiting_for_retries"
    assert snapshot["eta_seconds"] is None
    assert snapshot["eta_text"] in (
        "waiting for retries (next in 30 s)",
        "waiting for retries (next in 29 s)",
    )


def test_a_lead_in_flight_while_others_wait_keeps_a_range_no_shorter_than_the_last_backoff():
    batch = batch_with(
        succeeded=50,
        pending=2,
        processing=1,
        started_ago=timedelta(minutes=1),
        backoff=[timedelta(seconds=20), timedelta(seconds=90)],
    )

    snapshot = batch_snapshot(batch_id=batch.pk)

    assert snapshot["eta_state"] == "estimate"
    # 3 open leads at 50 a minute would be ~4 s; the last retry is not due for 90 s.
    assert snapshot["eta_high_seconds"] >= 89
    assert snapshot["eta_low_seconds"] <= snapshot["eta_seconds"] <= snapshot["eta_high_seconds"]


def test_a_batch_paused_for_a_provider_names_the_provider_and_why():
    batch = batch_with(
        succeeded=20,
        pending=30,
        started_ago=timedelta(minutes=2),
        status=BatchReport.Status.PAUSED,
        stop_reason="provider_unavailable",
        stop_detail="hunter: plan usage limit reached (HTTP 429)",
    )

    snapshot = batch_snapshot(batch_id=batch.pk)

    assert snapshot["eta_state"] == "paused"
    assert snapshot["eta_text"] == "paused: hunter plan used up"
    assert snapshot["eta_seconds"] is None


def test_warm_up_gives_no_number_until_enough_leads_finished():
    batch = batch_with(succeeded=WARMUP_LEADS - 1, pending=95, started_ago=timedelta(seconds=30))

    snapshot = batch_snapshot(batch_id=batch.pk)

    assert snapshot["eta_state"] == "warming_up"
    assert snapshot["eta_seconds"] is None
    assert snapshot["eta_text"] == "estimating: not enough history yet"


def test_steady_state_gives_a_range_around_the_pace_so_far():
    # 50 leads in 2 minutes: 50 more take about 2 minutes, within 1/sqrt(50) (~14%) either way.
    batch = batch_with(succeeded=50, pending=50, started_ago=timedelta(minutes=2))

    snapshot = batch_snapshot(batch_id=batch.pk)

    assert snapshot["eta_state"] == "estimate"
    assert snapshot["eta_seconds"] == pytest.approx(120, abs=3)
    assert snapshot["eta_low_seconds"] == pytest.approx(120 / 1.1414, abs=3)
    assert snapshot["eta_high_seconds"] == pytest.approx(120 / 0.8586, abs=3)
    assert snapshot["eta_text"] == "about 2 min"


def test_never_zero_seconds_while_work_remains():
    # 1,000 leads a minute and one lead left: a rounded estimate would be 0 s.
    batch = batch_with(succeeded=1000, processing=1, started_ago=timedelta(minutes=1))

    snapshot = batch_snapshot(batch_id=batch.pk)

    assert snapshot["eta_state"] == "estimate"
    assert snapshot["eta_seconds"] >= 1 and snapshot["eta_low_seconds"] >= 1
    assert snapshot["eta_text"] == "about 1 s"


def test_a_finished_batch_is_done():
    batch = batch_with(succeeded=3, started_ago=timedelta(minutes=1), status=BatchReport.Status.COMPLETED)
    BatchReport.objects.filter(pk=batch.pk).update(finished_at=timezone.now())

    snapshot = batch_snapshot(batch_id=batch.pk)

    assert (snapshot["eta_state"], snapshot["eta_seconds"], snapshot["eta_text"]) == ("done", 0, "done")


@pytest.mark.parametrize(
    ("stop_reason", "stop_detail", "text"),
    [
        (
            "provider_unavailable",
            "hunter: plan usage limit reached (HTTP 429)",
            "paused: hunter plan used up",
        ),
        (
            "provider_unavailable",
            "llm: account out of credit (HTTP 429)",
            "paused: llm account out of credit",
        ),
        (
            "provider_unavailable",
            "pagespeed: daily quota used up (HTTP 429)",
            "paused: pagespeed quota used up",
        ),
        ("provider_unavailable", "semrush: key rejected (HTTP 401)", "paused: semrush key rejected"),
        ("provider_unavailable", "hunter: HUNTER_API_KEY is not set", "paused: hunter key missing"),
        ("paused_by_user", "Paused by cpo.", "paused: press Resume to go on"),
    ],
)
def test_pause_reads_as_what_the_batch_waits_for(stop_reason, stop_detail, text):
    assert pause_text(stop_reason, stop_detail) == text


def test_queued_cancelling_and_finishing_batches_give_no_number():
    common = {"finished": False, "processing": 0, "finished_since_start": 0}
    queued = batch_eta(status="queued", started=False, open_leads=10, **common)
    cancelling = batch_eta(status="cancelling", started=True, open_leads=3, **common)
    finishing = batch_eta(status="running", started=True, open_leads=0, **common)
    assert [eta.state for eta in (queued, cancelling, finishing)] == [
        "waiting_to_start",
        "cancelling",
        "finishing",
    ]
    assert {eta.seconds for eta in (queued, cancelling, finishing)} == {None}


def test_leads_waiting_out_an_open_circuit_name_it():
    eta = batch_eta(
        status="running",
        finished=False,
        started=True,
        open_leads=4,
        processing=0,
        waiting_for_retry=4,
        next_retry_in=19.2,
        last_retry_in=25,
        finished_since_start=10,
        elapsed_seconds=60,
        open_circuits=("semrush",),
    )
    assert (eta.state, eta.seconds) == ("waiting_for_retries", None)
    assert eta.text == "waiting for retries: semrush circuit open (next try in 20 s)"
