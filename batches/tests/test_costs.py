from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from batches.costs import LeadFacts, money, preview_cost, worst_case_cost
from reports.pricing import DEFAULT_PRICES, ProviderStats
from reports.providers import applicable_providers

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ALL = ("website", "pagespeed", "semrush", "screenshot", "hunter", "llm")


def stats(rate=0.0, latency=100.0):
    return {
        p: ProviderStats(
            calls=100,
            transient_failure_rate=rate,
            mean_latency_ms=latency,
            mean_input_tokens=500.0,
            mean_output_tokens=250.0,
        )
        for p in ALL
    }


def preview(leads, **overrides):
    options = dict(
        leads=leads,
        prices=DEFAULT_PRICES,
        stats=stats(),
        cached_pairs=set(),
        applicable=applicable_providers,
        now=NOW,
        skip_recent_days=30,
        include_recent=False,
        concurrency=10,
        max_retries=3,
        max_input_tokens=2000,
        max_output_tokens=600,
        budget_usd=None,
        daily_budget_usd=Decimal("1000"),
        daily_used_usd=Decimal("0"),
    )
    options.update(overrides)
    return preview_cost(**options)


# LLM at the expected tokens: 500 * 0.15 / 1M + 250 * 0.60 / 1M = 0.000225
LLM_EXPECTED = Decimal("0.000225")


def test_lead_with_website_and_email_pays_pagespeed_semrush_screenshot_and_llm():
    result = preview([LeadFacts(1, True, True, None)])
    lines = {line.provider: line for line in result.providers}
    assert [line.provider for line in result.providers] == [
        "website",
        "pagespeed",
        "semrush",
        "screenshot",
        "llm",
    ]
    assert lines["semrush"].calls == 1 and lines["semrush"].cost_usd == Decimal("0.08")
    assert lines["website"].cost_usd == Decimal("0")
    assert result.total_usd == Decimal("0.13") + LLM_EXPECTED
    assert result.per_lead_usd == result.total_usd
    assert result.expected_retries == 0
    assert result.within_budget


def test_no_website_means_fewer_providers_and_no_email_adds_hunter():
    result = preview([LeadFacts(1, False, False, None)])
    assert {line.provider: line.calls for line in result.providers} == {"llm": 1}
    assert result.total_usd == LLM_EXPECTED
    assert result.leads_without_website == 1
    with_site = preview([LeadFacts(1, True, False, None)])
    assert {line.provider: line.calls for line in with_site.providers}["hunter"] == 1
    assert with_site.total_usd == Decimal("0.23") + LLM_EXPECTED


def test_cached_calls_cost_nothing_and_are_counted():
    leads = [LeadFacts(1, True, True, None), LeadFacts(2, True, True, None)]
    result = preview(leads, cached_pairs={(1, "semrush"), (1, "pagespeed")})
    lines = {line.provider: line for line in result.providers}
    assert (lines["semrush"].calls, lines["semrush"].cached_calls) == (1, 1)
    assert result.total_usd == Decimal("0.13") * 2 - Decimal("0.11") + 2 * LLM_EXPECTED
    assert result.as_dict()["cached_calls"] == 2


def test_recently_reported_leads_are_skipped_unless_included():
    leads = [
        LeadFacts(1, True, True, NOW - timedelta(days=3)),
        LeadFacts(2, True, True, NOW - timedelta(days=45)),
        LeadFacts(3, True, True, None),
    ]
    result = preview(leads)
    assert result.skipped == {"recent_report": 1}
    assert result.skipped_lead_ids == (1,)
    assert result.billable_leads == 2
    assert preview(leads, include_recent=True).billable_leads == 3
    assert preview(leads, skip_recent_days=60).skipped_lead_ids == (1, 2)


def test_transient_failures_add_expected_retries_and_only_unbilled_cost():
    leads = [LeadFacts(i, True, True, None) for i in range(100)]
    result = preview(leads, stats=stats(rate=0.1))
    # Attempt 1 fails when any of the 5 providers fails: 1 - 0.9^5 = 0.40951; attempt 2: 1 - 0.99^5.
    per_lead = (1 - 0.9**5) + (1 - 0.99**5) + (1 - 0.999**5)
    assert result.expected_retries == pytest.approx(100 * per_lead)
    # Failed calls are free; a provider is paid once it succeeds within 4 attempts (1 - 0.1^4).
    assert result.total_usd == pytest.approx(Decimal("13.0225") * Decimal("0.9999"), abs=Decimal("0.0001"))


def test_billed_failures_are_part_of_the_estimate():
    prices = dict(DEFAULT_PRICES)
    prices["semrush"] = type(prices["semrush"])(
        "semrush", unit_price_usd=Decimal("0.08"), bills_failures=True
    )
    result = preview([LeadFacts(1, True, True, None)], prices=prices, stats=stats(rate=0.5), max_retries=0)
    lines = {line.provider: line for line in result.providers}
    # Succeeds with p=0.5, and the failed first call is billed with p=0.5.
    assert lines["semrush"].cost_usd == Decimal("0.08")
    assert lines["pagespeed"].cost_usd == Decimal("0.015")


def test_budget_checks_and_warnings():
    leads = [LeadFacts(i, True, True, None) for i in range(10)]
    over = preview(leads, budget_usd=Decimal("1.00"))
    assert not over.within_budget
    assert "above the batch budget" in over.warnings[0]
    half = preview(leads, daily_budget_usd=Decimal("2.00"))
    assert half.within_budget and "over 50% of the daily budget" in half.warnings[0]
    short = preview(leads, daily_budget_usd=Decimal("10"), daily_used_usd=Decimal("9"))
    assert short.daily_remaining_usd == Decimal("1")
    assert "left of today's budget" in short.warnings[0]
    assert preview(leads, budget_usd=Decimal("1.31")).warnings == ()


def test_duration_from_concurrency_and_latency():
    leads = [LeadFacts(i, True, True, None) for i in range(100)]
    # website..screenshot run together (100 ms), then the LLM (100 ms): 0.2 s per lead, 10 at once.
    assert preview(leads, stats=stats(latency=100.0)).estimated_duration_seconds == 2
    assert preview(leads, stats=stats(latency=100.0), concurrency=1).estimated_duration_seconds == 20


def test_worst_case_prices_the_llm_at_its_token_caps_and_skips_cached():
    providers = applicable_providers(has_website=True, has_email=False)
    worst = worst_case_cost(
        providers=providers, prices=DEFAULT_PRICES, max_input_tokens=2000, max_output_tokens=600
    )
    # 0.03 + 0.08 + 0.02 + 0.10 + (2000 * 0.15 + 600 * 0.60) / 1M
    assert worst == Decimal("0.23066")
    cached = worst_case_cost(
        providers=providers,
        prices=DEFAULT_PRICES,
        cached={"semrush"},
        max_input_tokens=2000,
        max_output_tokens=600,
    )
    assert cached == Decimal("0.15066")


def test_as_dict_is_json_ready_with_four_place_money():
    data = preview([LeadFacts(1, True, True, None)], budget_usd=Decimal("5")).as_dict()
    assert data["total_usd"] == "0.1302"
    assert data["budget"]["budget_usd"] == "5.0000"
    assert data["providers"][1] == {
        "provider": "pagespeed",
        "calls": 1,
        "cached_calls": 0,
        "unit_price_usd": "0.0300",
        "cost_usd": "0.0300",
    }
    assert money(Decimal("0.00005")) == "0.0001"


def test_empty_selection_preview_is_zero():
    result = preview([])
    assert (result.lead_count, result.total_usd, result.per_lead_usd) == (0, Decimal("0"), Decimal("0"))
