"""report_generate: concurrency of providers, billing, cache reuse, TTLs, prices in force, retries."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone

from leads.models import Lead
from reports.models import ProviderCall, ProviderPrice, ProviderResult, Report
from reports.pricing import call_cost
from reports.selectors import price_table
from reports.services import report_generate, report_generate_async

pytestmark = pytest.mark.django_db


def llm_cost(call: ProviderCall) -> Decimal:
    return call_cost(
        price_table(at=call.created_at)["llm"],
        succeeded=True,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
    )


def paid_calls(lead: Lead, **filters):
    return ProviderCall.objects.filter(lead=lead, status=ProviderCall.Status.SUCCEEDED, **filters)


def test_first_report_pays_each_applicable_provider_once(lead_factory, counting_transport):
    lead = lead_factory(email="")

    outcome = report_generate(lead=lead, batch_lead_id=41, attempt=1)

    assert outcome.error is None
    report = outcome.report
    assert isinstance(report, Report) and report.pk
    llm_call = paid_calls(lead).get(provider="llm")
    assert 300 <= llm_call.input_tokens <= 700
    expected = Decimal("0.03") + Decimal("0.08") + Decimal("0.02") + Decimal("0.10") + llm_cost(llm_call)
    assert outcome.cost_usd == expected
    assert report.cost_usd == expected
    assert outcome.cost_breakdown["pagespeed"] == "0.030000"
    assert outcome.cost_breakdown["llm"] == str(llm_cost(llm_call))
    assert sorted(counting_transport.calls) == sorted(
        ["website", "pagespeed", "semrush", "screenshot", "hunter", "llm"]
    )
    assert set(ProviderCall.objects.values_list("batch_lead_id", "attempt")) == {(41, 1)}
    assert ProviderResult.objects.count() == 6
    assert ProviderResult.objects.get(provider="llm").subject == f"lead:{lead.pk}"
    lead.refresh_from_db()
    assert lead.last_reported_at == report.created_at
    assert report.html.startswith("<!doctype html>")
    assert report.overall_score is not None
    assert set(report.scores) == {"performance", "accessibility", "seo", "best_practices"}


def test_hunter_only_without_email_and_only_llm_without_website(lead_factory, counting_transport):
    with_email = lead_factory()
    assert "hunter" not in report_generate(lead=with_email).cost_breakdown

    no_site = lead_factory(website="", email="")
    outcome = report_generate(lead=no_site)
    assert list(outcome.cost_breakdown) == ["llm"]
    assert outcome.report.overall_score is None


def test_second_report_inside_ttl_is_free_and_after_ttl_pays_again(lead_factory, counting_transport):
    lead = lead_factory(email="")
    t0 = timezone.now()
    first = report_generate(lead=lead, at=t0)
    requests_after_first = counting_transport.count()

    second = report_generate(lead=lead, at=t0 + timedelta(hours=23))

    assert second.error is None
    assert second.cost_usd == Decimal("0")
    assert set(second.cost_breakdown.values()) == {"0.000000"}
    assert counting_transport.count() == requests_after_first
    assert ProviderCall.objects.filter(status="cached").count() == 6
    assert Report.objects.filter(lead=lead).count() == 2
    assert second.report.data["sources"][0]["cached"] is True

    # A day later only the website audit ($0) is stale; eight days later pagespeed, screenshot and the
    # LLM are too; semrush and hunter (30 days) are still fresh.
    third = report_generate(lead=lead, at=t0 + timedelta(days=8))
    llm_call = paid_calls(lead, created_at=t0 + timedelta(days=8)).get(provider="llm")
    assert third.cost_usd == Decimal("0.03") + Decimal("0.02") + llm_cost(llm_call)
    assert {name for name, cost in third.cost_breakdown.items() if cost != "0.000000"} == {
        "pagespeed",
        "screenshot",
        "llm",
    }
    assert first.cost_usd > third.cost_usd


def test_expired_cache_row_is_paid_again(lead_factory, counting_transport):
    lead = lead_factory()
    report_generate(lead=lead)
    ProviderResult.objects.filter(provider="semrush").update(expires_at=timezone.now() - timedelta(seconds=1))

    outcome = report_generate(lead=lead)

    assert outcome.cost_usd == Decimal("0.08")
    assert counting_transport.count("semrush") == 2


def test_price_change_applies_after_its_effective_time_only(lead_factory, counting_transport):
    t0 = timezone.now()
    ProviderPrice.objects.create(
        provider="pagespeed", unit_price_usd=Decimal("0.05"), effective_from=t0 + timedelta(days=10)
    )
    lead = lead_factory()

    before = report_generate(lead=lead, at=t0 + timedelta(days=8))
    after = report_generate(lead=lead, at=t0 + timedelta(days=16))

    assert before.cost_breakdown["pagespeed"] == "0.030000"
    assert after.cost_breakdown["pagespeed"] == "0.050000"
    assert price_table(at=t0)["pagespeed"].unit_price_usd == Decimal("0.03")
    assert price_table(at=t0 + timedelta(days=10))["pagespeed"].unit_price_usd == Decimal("0.05")


def test_transient_failure_keeps_paid_results_for_the_retry(lead_factory, counting_transport):
    counting_transport.script = {"pagespeed": [503, 503]}
    lead = lead_factory(email="")

    first = report_generate(lead=lead, batch_lead_id=9, attempt=1)

    assert first.report is None
    assert (first.error.provider, first.error.code, first.error.transient) == ("pagespeed", "http_503", True)
    assert first.cost_usd == Decimal("0.08") + Decimal("0.02") + Decimal("0.10")
    assert counting_transport.count("llm") == 0  # no summary is bought for a report that cannot be built
    assert ProviderResult.objects.filter(provider__in=["semrush", "screenshot", "hunter"]).count() == 3

    second = report_generate(lead=lead, batch_lead_id=9, attempt=2)
    assert second.report is None
    assert second.cost_usd == Decimal("0")

    third = report_generate(lead=lead, batch_lead_id=9, attempt=3)
    assert third.error is None
    llm_call = paid_calls(lead).get(provider="llm")
    assert third.cost_usd == Decimal("0.03") + llm_cost(llm_call)
    assert counting_transport.count("semrush") == 1
    total = sum(ProviderCall.objects.filter(batch_lead_id=9).values_list("cost_usd", flat=True))
    assert total == Decimal("0.23") + llm_cost(llm_call)
    assert list(
        ProviderCall.objects.filter(batch_lead_id=9, provider="pagespeed")
        .order_by("attempt")
        .values_list("attempt", "status", "transient")
    ) == [(1, "failed", True), (2, "failed", True), (3, "succeeded", False)]


def test_failures_billed_when_the_price_says_so(lead_factory, counting_transport):
    ProviderPrice.objects.create(
        provider="semrush",
        unit_price_usd=Decimal("0.08"),
        bills_failures=True,
        effective_from=timezone.now() - timedelta(minutes=1),
    )
    counting_transport.script = {"semrush": [500]}
    outcome = report_generate(lead=lead_factory())
    assert outcome.cost_breakdown["semrush"] == "0.080000"
    assert ProviderCall.objects.get(provider="semrush").cost_usd == Decimal("0.08")


def test_permanent_failure_wins_over_transient(lead_factory, counting_transport):
    counting_transport.script = {"semrush": [503], "screenshot": [400]}
    outcome = report_generate(lead=lead_factory())
    assert (outcome.error.provider, outcome.error.transient) == ("screenshot", False)


def test_unreachable_site_fails_permanently_without_a_summary(lead_factory, counting_transport):
    lead = lead_factory(website="http://harbor-dental-17.invalid")
    outcome = report_generate(lead=lead)
    assert outcome.report is None
    assert (outcome.error.provider, outcome.error.code, outcome.error.transient) == (
        "website",
        "unreachable",
        False,
    )
    assert counting_transport.count("llm") == 0
    assert Report.objects.count() == 0
    lead.refresh_from_db()
    assert lead.last_reported_at is None


def test_malformed_site_fails_permanently_without_requests(lead_factory, counting_transport):
    outcome = report_generate(lead=lead_factory(website="http://-harbor-dental-17-.example"))
    assert (outcome.error.code, outcome.error.transient) == ("malformed_domain", False)
    assert outcome.cost_usd == Decimal("0")
    assert counting_transport.count() == 0


def test_sandbox_failures_are_retried_by_attempt(lead_factory, settings):
    settings.SANDBOX_FAILURE_RATE = 0.3
    leads = lead_factory.create_batch(20)
    outcomes = {lead.pk: report_generate(lead=lead, attempt=1) for lead in leads}
    failed = [lead for lead in leads if outcomes[lead.pk].error is not None]
    assert failed and all(outcomes[lead.pk].error.transient for lead in failed)
    for lead in failed:
        for attempt in range(2, 30):
            if report_generate(lead=lead, attempt=attempt).error is None:
                break
        else:
            pytest.fail("never succeeded")
    assert Report.objects.count() == 20


def test_generate_queries_are_bounded(lead_factory, counting_transport, django_assert_max_num_queries):
    lead = lead_factory(email="")
    # cache lookup, prices, one commit of the first five results (2 inserts), then the LLM result, its
    # call, the report and the lead in one transaction; SAVEPOINT-free on both databases.
    with django_assert_max_num_queries(12):
        report_generate(lead=lead)
    with django_assert_max_num_queries(6):
        report_generate(lead=lead)


@pytest.mark.django_db(transaction=True)
async def test_async_variant(counting_transport):
    from asgiref.sync import sync_to_async

    from leads.tests.factories import LeadFactory

    lead = await sync_to_async(LeadFactory)()
    outcome = await report_generate_async(lead=lead)
    assert outcome.error is None
    assert await sync_to_async(Report.objects.filter(lead=lead).count)() == 1
    await sync_to_async(connections.close_all)()  # the sync thread's connection, before DB teardown


@pytest.mark.django_db(transaction=True)
def test_worker_threads_generate_concurrently():
    from concurrent.futures import ThreadPoolExecutor

    from leads.tests.factories import LeadFactory

    leads = LeadFactory.create_batch(12, email="")

    def work(lead):
        try:
            return report_generate(lead=lead)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(work, leads))

    assert all(outcome.error is None for outcome in outcomes)
    assert Report.objects.count() == 12
    assert ProviderCall.objects.filter(status="succeeded").count() == 12 * 6
    assert sum(outcome.cost_usd for outcome in outcomes) == sum(
        ProviderCall.objects.values_list("cost_usd", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_the_first_providers_results_are_committed_while_the_summary_is_in_flight(lead_factory):
    """What the first step paid for is durable before the summary's answer arrives, without the summary
    waiting for that commit to start: another connection sees it while the summary call is out."""
    import asyncio
    import threading

    import httpx

    from reports import sandbox

    seen: dict[str, object] = {}

    def committed_elsewhere() -> None:
        try:
            seen["providers"] = sorted(ProviderResult.objects.values_list("provider", flat=True))
            seen["calls"] = ProviderCall.objects.count()
        finally:
            connections.close_all()

    class SlowSummary(httpx.AsyncBaseTransport):
        inner = sandbox.SandboxTransport()

        async def handle_async_request(self, request):
            if request.extensions["leadgen_provider"] == "llm":
                seen["llm_started"] = True
                await asyncio.sleep(0.2)  # the summary is out; the first step's commit runs meanwhile
                reader = threading.Thread(target=committed_elsewhere)
                reader.start()
                while reader.is_alive():
                    await asyncio.sleep(0.01)
            return await self.inner.handle_async_request(request)

    lead = lead_factory(email="")
    with sandbox.override_transport(SlowSummary()):
        outcome = report_generate(lead=lead, batch_lead_id=5, attempt=1)

    assert outcome.error is None
    assert seen["llm_started"] is True
    assert seen["providers"] == ["hunter", "pagespeed", "screenshot", "semrush", "website"]
    assert seen["calls"] == 5
    assert ProviderCall.objects.filter(batch_lead_id=5).count() == 6
