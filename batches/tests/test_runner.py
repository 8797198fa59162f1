import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db.models import Count, Sum
from django.utils import timezone

from batches.engine import claim_next, new_owner, process, settle
from batches.models import BatchReport, BatchReportLead
from batches.selectors import batch_snapshot
from batches.services import batch_cancel, batch_create_draft, batch_launch, batch_retry_failed
from batches.tests.engine import ScriptedTransport, make_leads, make_user, run_to_end
from reports.models import ProviderCall
from reports.sandbox import override_transport

S = BatchReportLead.Status
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_sandbox(settings):
    settings.SANDBOX_LATENCY_MS = 0
    settings.SANDBOX_FAILURE_RATE = 0.0
    settings.BATCH_RETRY_BASE_SECONDS = 0
    settings.BATCH_RETRY_MAX_SECONDS = 0


def launch(leads, user=None, **options):
    batch = batch_create_draft(user=user, lead_ids=[lead.pk for lead in leads], **options)
    return batch_launch(batch=batch, user=user, enqueue=False)


def rows(batch):
    return {
        row.lead.domain: row for row in BatchReportLead.objects.filter(batch=batch).select_related("lead")
    }


def test_transient_failures_are_retried_and_the_lead_succeeds_on_the_third_attempt():
    leads = make_leads(4)
    batch = launch(leads, max_retries=3)
    with override_transport(ScriptedTransport({("pagespeed", "lead0.example.com"): 2})):
        batch = run_to_end(batch.pk)
    by_domain = rows(batch)
    flaky = by_domain["lead0.example.com"]
    assert (flaky.status, flaky.attempts, flaky.error_code, flaky.last_error) == (S.SUCCEEDED, 3, "", "")
    assert [row.attempts for domain, row in sorted(by_domain.items())][1:] == [1, 1, 1]
    assert batch.status == BatchReport.Status.COMPLETED
    calls = ProviderCall.objects.filter(batch_lead_id=flaky.pk)
    assert list(calls.filter(provider="pagespeed").order_by("attempt").values_list("attempt", "status")) == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    # What succeeded on attempt 1 was paid once and reused from the cache afterwards.
    assert list(calls.filter(provider="semrush").order_by("attempt").values_list("status", flat=True)) == [
        "succeeded",
        "cached",
        "cached",
    ]
    paid = ProviderCall.objects.filter(batch_lead_id__in=[r.pk for r in by_domain.values()])
    assert batch.actual_cost_usd == paid.aggregate(total=Sum("cost_usd"))["total"]
    assert flaky.cost_usd == calls.aggregate(total=Sum("cost_usd"))["total"]
    assert batch.reserved_usd == 0


def test_a_lead_failing_every_attempt_fails_after_max_retries_without_stopping_the_batch():
    leads = make_leads(3)
    batch = launch(leads, max_retries=2)
    with override_transport(ScriptedTransport({("semrush", "lead1.example.com"): -1})):
        batch = run_to_end(batch.pk)
    by_domain = rows(batch)
    failed = by_domain["lead1.example.com"]
    assert (failed.status, failed.attempts) == (S.FAILED, 3)
    assert failed.last_error.startswith("semrush:")
    assert failed.report_id is None and failed.reserved_usd == 0
    assert {by_domain["lead0.example.com"].status, by_domain["lead2.example.com"].status} == {S.SUCCEEDED}
    assert batch.status == BatchReport.Status.COMPLETED_WITH_ERRORS
    assert ProviderCall.objects.filter(batch_lead_id=failed.pk, provider="semrush").count() == 3


def test_a_lead_whose_site_cannot_be_loaded_succeeds_at_once_with_warnings_for_the_missing_sections():
    good = make_leads(2)
    broken = make_leads(1, prefix="gone")[0]
    broken.website, broken.domain = "https://gone.invalid", "gone.invalid"
    broken.save()
    batch = launch([*good, broken], max_retries=3)
    batch = run_to_end(batch.pk)
    row = BatchReportLead.objects.get(batch=batch, lead=broken)
    assert (row.status, row.attempts, row.error_code, row.last_error) == (S.SUCCEEDED, 1, "", "")
    assert row.report_id is not None
    missing = {warning["provider"] for warning in row.warnings}
    assert missing and "llm" not in missing and missing <= {"website", "pagespeed", "semrush", "screenshot"}
    assert all(warning["code"] and warning["message"] for warning in row.warnings)
    # Not retried: one call per provider, and the failed ones cost nothing.
    calls = ProviderCall.objects.filter(batch_lead_id=row.pk)
    assert not calls.values("provider").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert not calls.filter(status="failed", cost_usd__gt=0).exists()
    assert BatchReportLead.objects.filter(batch=batch, status=S.SUCCEEDED).count() == 3
    assert batch.status == BatchReport.Status.COMPLETED
    snapshot_row = next(
        item for item in batch_snapshot(batch_id=batch.pk)["recent"] if item["lead_id"] == broken.pk
    )
    assert snapshot_row["warnings"] == row.warnings


def test_cancel_mid_batch_starts_nothing_new_lets_in_flight_finish_and_cancels_the_rest(settings):
    settings.SANDBOX_LATENCY_MS = 40
    user = make_user()
    batch = launch(make_leads(30), user=user, concurrency=2)
    runner = threading.Thread(target=run_to_end, args=(batch.pk,))
    runner.start()
    deadline = time.monotonic() + 20
    while BatchReportLead.objects.filter(batch=batch, status=S.SUCCEEDED).count() < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    batch_cancel(batch=batch, user=user)
    cancelled_at = timezone.now()
    runner.join(30)
    batch.refresh_from_db()
    counts = dict(BatchReportLead.objects.filter(batch=batch).values_list("status").annotate(n=Count("id")))
    assert batch.status == BatchReport.Status.CANCELLED and batch.finished_at is not None
    assert set(counts) == {S.SUCCEEDED, S.CANCELLED}
    assert counts[S.SUCCEEDED] + counts[S.CANCELLED] == 30
    assert not BatchReportLead.objects.filter(batch=batch, started_at__gt=cancelled_at).exists()
    assert BatchReportLead.objects.filter(batch=batch, status=S.CANCELLED, attempts__gt=0).count() == 0
    assert len(mail.outbox) == 1


def test_a_lead_settled_back_to_pending_as_the_cancel_commits_is_cancelled_and_the_batch_ends():
    # The race: a settle reads the batch while it still runs and decides on a retry; the cancel commits
    # meanwhile (its UPDATE of pending leads cannot see the row being settled); the settle then commits
    # a pending lead into a cancelling batch, which no runner will ever claim. Played here in order:
    # the settle first, then the cancel's status change without its UPDATE of the pending leads.
    from batches.engine import Result, batch_finish_if_done, recover
    from reports.selectors import price_table

    for finisher in ("runner", "recovery"):
        batch = launch(make_leads(3))
        claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
        assert settle(claim, Result(error_code="timeout", transient=True)) == S.PENDING
        BatchReportLead.objects.filter(batch=batch).exclude(pk=claim.row_id).update(status=S.CANCELLED)
        BatchReport.objects.filter(pk=batch.pk).update(status=BatchReport.Status.CANCELLING)
        if finisher == "runner":
            assert batch_finish_if_done(batch_id=batch.pk)
        else:
            assert recover()["finished"] == 1
        batch.refresh_from_db()
        assert (batch.status, batch.reserved_usd) == (BatchReport.Status.CANCELLED, 0)
        statuses = set(BatchReportLead.objects.filter(batch=batch).values_list("status", flat=True))
        assert statuses == {S.CANCELLED}


def test_a_transient_failure_while_the_batch_cancels_cancels_the_lead():
    from batches.engine import Result, batch_finish_if_done
    from reports.selectors import price_table

    user = make_user()
    batch = launch(make_leads(2), user=user)
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
    batch_cancel(batch=batch, user=user)
    assert settle(
        claim, Result(error_code="timeout", error_message="pagespeed: timed out", transient=True)
    ) == (S.CANCELLED)
    assert batch_finish_if_done(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.stop_reason, batch.reserved_usd) == (
        BatchReport.Status.CANCELLED,
        "cancelled_by_user",
        0,
    )


def test_retry_failed_reruns_only_the_failed_leads():
    user = make_user()
    batch = launch(make_leads(5), user=user, max_retries=0)
    with override_transport(ScriptedTransport({("screenshot", "lead3.example.com"): -1})):
        batch = run_to_end(batch.pk)
    assert batch.status == BatchReport.Status.COMPLETED_WITH_ERRORS
    first_cost = batch.actual_cost_usd
    batch = batch_retry_failed(batch=batch, user=user)
    assert (batch.status, batch.run, batch.finished_at) == (BatchReport.Status.QUEUED, 2, None)
    batch = run_to_end(batch.pk)
    by_domain = rows(batch)
    assert batch.status == BatchReport.Status.COMPLETED
    assert by_domain["lead3.example.com"].attempts == 2
    assert sorted(row.attempts for row in by_domain.values()) == [1, 1, 1, 1, 2]
    assert BatchReportLead.objects.filter(batch=batch, status=S.SUCCEEDED).count() == 5
    # The retry paid only the screenshot and the LLM (which runs once the data is complete); the rest
    # of lead 3's data came from the cache.
    retry_paid = ProviderCall.objects.filter(batch_lead_id=by_domain["lead3.example.com"].pk, attempt=2)
    assert set(retry_paid.filter(status="succeeded").values_list("provider", flat=True)) == {
        "screenshot",
        "llm",
    }
    assert batch.actual_cost_usd == first_cost + retry_paid.aggregate(total=Sum("cost_usd"))["total"]
    assert len(mail.outbox) == 2


def test_completion_is_announced_once_when_two_runners_finish_together():
    user = make_user()
    batch = launch(make_leads(12), user=user, concurrency=6)
    threads = [threading.Thread(target=run_to_end, args=(batch.pk,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    batch.refresh_from_db()
    assert batch.status == BatchReport.Status.COMPLETED
    assert batch.notified_at is not None
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["cpo@example.com"]
    assert "completed" in mail.outbox[0].subject
    assert "Leads: 12 - succeeded 12" in mail.outbox[0].body


def test_a_settle_by_a_worker_that_lost_its_lease_is_ignored():
    batch = launch(make_leads(1))
    owner = new_owner()
    from reports.selectors import price_table

    claim = claim_next(batch_id=batch.pk, owner=owner, prices=price_table())
    BatchReportLead.objects.filter(pk=claim.row_id).update(lease_owner="someone-else")
    assert settle(claim, process(claim)) is None
    row = BatchReportLead.objects.get(pk=claim.row_id)
    assert (row.status, row.lease_owner) == (S.PROCESSING, "someone-else")


def _max_in_flight_sampler(batch_id, stop, seen):
    from django.db import connections

    try:
        while not stop.is_set():
            seen.append(BatchReportLead.objects.filter(batch_id=batch_id, status=S.PROCESSING).count())
    finally:
        connections.close_all()


@pytest.mark.slow
def test_two_runners_process_every_lead_exactly_once_within_concurrency(settings):
    settings.SANDBOX_LATENCY_MS = 8
    leads = make_leads(500)
    batch = launch(leads, concurrency=8)
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=_max_in_flight_sampler, args=(batch.pk, stop, seen))
    sampler.start()
    runners = [
        threading.Thread(target=run_to_end, args=(batch.pk,), kwargs={"timeout": 120.0}) for _ in range(2)
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(180)
    stop.set()
    sampler.join()
    batch.refresh_from_db()
    assert batch.status == BatchReport.Status.COMPLETED
    assert BatchReportLead.objects.filter(batch=batch, status=S.SUCCEEDED, attempts=1).count() == 500
    assert len(seen) > 20 and max(seen) <= 8
    assert max(seen) >= 2
    row_ids = list(BatchReportLead.objects.filter(batch=batch).values_list("pk", flat=True))
    per_lead = (
        ProviderCall.objects.filter(batch_lead_id__in=row_ids).values("batch_lead_id").annotate(n=Count("id"))
    )
    calls = ProviderCall.objects.filter(batch_lead_id__in=row_ids)
    assert calls.count() == 500 * 5
    assert not calls.values("batch_lead_id", "provider").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert len(per_lead) == 500
    assert batch.actual_cost_usd == calls.aggregate(total=Sum("cost_usd"))["total"]
    assert batch.reserved_usd == 0


def _worst_case(lead, prices):
    from batches.engine import worst_cases

    return worst_cases([lead], prices)[0][0]


def test_budget_race_twenty_claims_against_a_budget_for_seven():
    from reports.selectors import price_table

    leads = make_leads(20)
    prices = price_table()
    worst = _worst_case(leads[0], prices)
    batch = launch(leads, concurrency=20)
    # Launch refuses a budget below the estimate, so the tight budget is set on the launched batch.
    BatchReport.objects.filter(pk=batch.pk).update(budget_usd=worst * 7 + Decimal("0.0001"))
    barrier = threading.Barrier(20)
    claims = []

    def claim():
        from django.db import connections

        try:
            barrier.wait()
            claims.append(claim_next(batch_id=batch.pk, owner=new_owner(), prices=prices))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [c for c in claims if not isinstance(c, str)]
    assert len(won) == 7
    # The others wait: the seven leads in flight may give room back when they settle.
    assert sorted(c for c in claims if isinstance(c, str)) == ["wait"] * 13
    batch.refresh_from_db()
    assert batch.reserved_usd == worst * 7
    assert batch.actual_cost_usd + batch.reserved_usd <= batch.budget_usd
    for won_claim in won:
        settle(won_claim, process(won_claim))
    batch = run_to_end(batch.pk)
    assert batch.status == BatchReport.Status.COMPLETED_WITH_ERRORS
    assert batch.stop_reason == "budget_exhausted"
    assert BatchReportLead.objects.filter(batch=batch, status=S.SUCCEEDED).count() == 7
    skipped = BatchReportLead.objects.filter(batch=batch, status=S.SKIPPED, error_code="budget_exhausted")
    assert skipped.count() == 13
    assert batch.reserved_usd == 0
    assert Decimal(0) < batch.actual_cost_usd <= batch.budget_usd
    assert (
        batch.actual_cost_usd
        == ProviderCall.objects.filter(
            batch_lead_id__in=BatchReportLead.objects.filter(batch=batch).values("pk")
        ).aggregate(total=Sum("cost_usd"))["total"]
    )


def test_daily_budget_exhausted_during_a_run_skips_the_rest(settings):
    from batches.models import DailySpend
    from reports.selectors import price_table

    leads = make_leads(10)
    worst = _worst_case(leads[0], price_table())
    settings.DAILY_BUDGET_USD = worst * Decimal("2.5")
    batch = launch(leads, concurrency=1)
    assert "left of today's budget" in batch.estimate["budget"]["warnings"][0]
    batch = run_to_end(batch.pk)
    counts = dict(BatchReportLead.objects.filter(batch=batch).values_list("status").annotate(n=Count("id")))
    assert counts == {S.SUCCEEDED: 2, S.SKIPPED: 8}
    assert batch.status == BatchReport.Status.COMPLETED_WITH_ERRORS
    assert batch.stop_reason == "daily_budget_exhausted"
    skipped = BatchReportLead.objects.filter(batch=batch, status=S.SKIPPED).first()
    assert (skipped.error_code, skipped.last_error) == ("budget_exhausted", "The daily budget is exhausted.")
    day = DailySpend.objects.get()
    assert day.spent_usd == batch.actual_cost_usd <= settings.DAILY_BUDGET_USD
    assert day.reserved_usd == 0


def _all_cached(lead, *, expires_at=None):
    """Fetch and cache every provider's data for `lead` outside any batch (optionally expiring soon)."""
    from reports.models import ProviderResult
    from reports.services import report_generate

    assert report_generate(lead=lead).error is None
    if expires_at is not None:
        ProviderResult.objects.update(expires_at=expires_at)


def test_a_lead_claimed_at_no_cost_that_pays_after_all_books_it_on_the_days_ledger():
    from batches.models import DailySpend
    from reports.models import ProviderResult
    from reports.selectors import price_table

    lead = make_leads(1)[0]
    _all_cached(lead)
    batch = launch([lead], include_recent=True)
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
    assert claim.reserved_usd == 0
    assert not DailySpend.objects.exists()
    # The cache expires between the claim and the provider calls: the lead pays for fresh data.
    ProviderResult.objects.update(expires_at=timezone.now())
    assert settle(claim, process(claim)) == S.SUCCEEDED
    row = BatchReportLead.objects.get(pk=claim.row_id)
    paid = ProviderCall.objects.filter(batch_lead_id=row.pk).aggregate(total=Sum("cost_usd"))["total"]
    assert paid > 0 and row.cost_usd == paid
    assert sum(Decimal(cost) for cost in row.cost_breakdown.values()) == paid
    assert row.cost_breakdown["pagespeed"] == "0.030000"
    batch.refresh_from_db()
    assert (batch.actual_cost_usd, batch.reserved_usd) == (paid, 0)
    day = DailySpend.objects.get()
    assert (day.spent_usd, day.reserved_usd) == (paid, 0)


def test_leads_priced_ahead_serve_several_claims_and_are_priced_again_once_a_cached_entry_expires():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from batches.engine import PricedAhead, claim_leads
    from reports.selectors import price_table

    first, cached, third = make_leads(3)
    _all_cached(cached, expires_at=timezone.now() + timedelta(seconds=1))
    batch = launch([first, cached, third], concurrency=3, include_recent=True)
    prices, owner, ahead = price_table(), new_owner(), PricedAhead(rows=3)
    [claim] = claim_leads(batch_id=batch.pk, owner=owner, prices=prices, limit=1, ahead=ahead)
    assert (claim.lead_id, claim.reserved_usd) == (first.pk, _worst_case(first, prices))
    assert ahead.amounts[ahead_row(batch, cached)] == 0
    with CaptureQueriesContext(connection) as queries:
        [claim] = claim_leads(batch_id=batch.pk, owner=owner, prices=prices, limit=1, ahead=ahead)
    assert (claim.lead_id, claim.reserved_usd) == (cached.pk, 0)
    # The claim of a lead priced ahead is one statement, one round trip.
    assert [query["sql"].split("(")[0] for query in queries] == [
        "SELECT outcome, row_id, lead_id, attempts, run_attempts, reserved_usd FROM batch_claim_v1"
    ]
    # The next claim may not count on the cached entry once it has expired.
    BatchReportLead.objects.filter(pk=claim.row_id).update(
        status=S.PENDING, lease_owner="", lease_expires_at=None, reserved_usd=0
    )
    time.sleep(1.1)
    [claim] = claim_leads(batch_id=batch.pk, owner=owner, prices=prices, limit=1, ahead=ahead)
    assert (claim.lead_id, claim.reserved_usd) == (cached.pk, _worst_case(cached, prices))


def ahead_row(batch, lead) -> int:
    return BatchReportLead.objects.get(batch=batch, lead=lead).pk


def test_a_claim_reserves_lead_by_lead_up_to_the_budget_then_waits_for_its_leads_in_flight():
    from batches.engine import PricedAhead, claim_leads
    from batches.models import DailySpend
    from reports.selectors import price_table

    leads = make_leads(4)
    prices = price_table()
    worst = _worst_case(leads[0], prices)
    batch = launch(leads, concurrency=4)
    BatchReport.objects.filter(pk=batch.pk).update(budget_usd=worst * Decimal("2.5"))
    claims = claim_leads(
        batch_id=batch.pk, owner=new_owner(), prices=prices, limit=4, ahead=PricedAhead(rows=8)
    )
    assert [claim.lead_id for claim in claims] == [lead.pk for lead in leads[:2]]
    batch.refresh_from_db()
    assert batch.reserved_usd == worst * 2 == DailySpend.objects.get().reserved_usd
    again = claim_leads(
        batch_id=batch.pk, owner=new_owner(), prices=prices, limit=2, ahead=PricedAhead(rows=4)
    )
    assert again == "wait"
    assert not BatchReportLead.objects.filter(batch=batch, status=S.SKIPPED).exists()
    for claim in claims:
        assert settle(claim, process(claim)) == S.SUCCEEDED
    # What the two paid leaves less than a worst case: the rest is skipped, and nothing is reserved.
    again = claim_leads(
        batch_id=batch.pk, owner=new_owner(), prices=prices, limit=2, ahead=PricedAhead(rows=4)
    )
    assert again == "done"
    assert (
        BatchReportLead.objects.filter(batch=batch, status=S.SKIPPED, error_code="budget_exhausted").count()
        == 2
    )
    batch.refresh_from_db()
    assert (batch.reserved_usd, batch.stop_reason) == (0, "budget_exhausted")
    assert batch.actual_cost_usd + worst > batch.budget_usd


def test_a_first_attempt_priced_with_nothing_cached_skips_the_cache_lookup_unless_its_domain_is_shared():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from batches.engine import PricedAhead, claim_leads
    from leads.models import Lead
    from reports.selectors import price_table

    alone, *chain = make_leads(3)
    Lead.objects.filter(pk__in=[lead.pk for lead in chain]).update(domain="chain.example.com")
    batch = launch([alone, *chain], concurrency=1)
    prices, owner, ahead = price_table(), new_owner(), PricedAhead(rows=3)
    looked_up = []
    for _ in range(3):
        [claim] = claim_leads(batch_id=batch.pk, owner=owner, prices=prices, limit=1, ahead=ahead)
        with CaptureQueriesContext(connection) as queries:
            assert settle(claim, process(claim)) == S.SUCCEEDED
        looked_up.append(
            any(q["sql"].startswith("SELECT") and "reports_providerresult" in q["sql"] for q in queries)
        )
    assert looked_up == [False, True, True]
    # The second lead of the chain reused what the first one paid for its domain.
    second = BatchReportLead.objects.get(batch=batch, lead=chain[1])
    statuses = dict(ProviderCall.objects.filter(batch_lead_id=second.pk).values_list("provider", "status"))
    assert statuses["pagespeed"] == statuses["semrush"] == "cached"
    assert statuses["llm"] == "succeeded"


def test_a_claimed_lead_is_reported_on_without_reading_its_row_again():
    """The claim loads only the lead fields a report reads: touching any other would cost a query per
    lead, in every runner."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from reports.selectors import price_table

    [lead] = make_leads(1)
    lead.city, lead.state = "Fresno", "CA"
    lead.save()
    batch = launch([lead])
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
    assert claim.lead.get_deferred_fields()  # loaded with only some of its fields
    with CaptureQueriesContext(connection) as queries:
        assert settle(claim, process(claim)) == S.SUCCEEDED
    assert not [q["sql"] for q in queries if q["sql"].startswith("SELECT") and '"leads_lead"' in q["sql"]]
    report = BatchReportLead.objects.get(pk=claim.row_id).report
    assert report.data["location"] == "Fresno, CA"


def test_a_settle_is_one_statement_when_no_progress_event_is_due():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from batches import events
    from reports.selectors import price_table

    batch = launch(make_leads(2))
    prices = price_table()
    first = claim_next(batch_id=batch.pk, owner=new_owner(), prices=prices)
    assert settle(first, process(first)) == S.SUCCEEDED  # wins the batch's progress event for a second
    claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=prices)
    result = process(claim)
    with CaptureQueriesContext(connection) as queries:
        assert settle(claim, result) == S.SUCCEEDED
    assert [query["sql"].split("(")[0] for query in queries] == ["SELECT batch_settle_v1"]
    events.throttle_reset()
    batch.refresh_from_db()
    assert batch.reserved_usd == 0
    assert (
        batch.actual_cost_usd
        == ProviderCall.objects.filter(batch_lead_id__in=[first.row_id, claim.row_id]).aggregate(
            total=Sum("cost_usd")
        )["total"]
    )


def test_claims_and_settles_commit_asynchronously_without_changing_the_sessions_setting():
    """Only the claim's and the settle's own transactions: the call log's writes stay synchronous."""
    from django.db import connection, transaction

    from reports.selectors import price_table

    def synchronous_commit():
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    batch = launch(make_leads(1))
    with transaction.atomic():
        claim = claim_next(batch_id=batch.pk, owner=new_owner(), prices=price_table())
        assert synchronous_commit() == "off"
    assert synchronous_commit() == "on"
    result = process(claim)
    assert synchronous_commit() == "on"
    with transaction.atomic():
        assert settle(claim, result) == S.SUCCEEDED
        assert synchronous_commit() == "off"
    assert synchronous_commit() == "on"
    assert claim.reserved_usd > 0 and BatchReport.objects.get(pk=batch.pk).reserved_usd == 0


def test_a_runner_keeps_no_more_leads_in_flight_than_its_threads_fit_in_the_pool(settings):
    """RUNNER_THREADS (the pool less the runner's claim loop and heartbeat) caps one runner below the
    batch's concurrency; each in-flight lead holds a thread and its connection."""
    settings.SANDBOX_LATENCY_MS = 8
    settings.RUNNER_THREADS = 3
    batch = launch(make_leads(60), concurrency=10)
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=_max_in_flight_sampler, args=(batch.pk, stop, seen))
    sampler.start()
    try:
        batch = run_to_end(batch.pk, timeout=120.0)
    finally:
        stop.set()
        sampler.join()

    assert batch.status == BatchReport.Status.COMPLETED
    assert len(seen) > 5 and 2 <= max(seen) <= 3
