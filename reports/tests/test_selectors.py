from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from leads.models import Lead
from reports.models import ProviderCall, ProviderPrice, ProviderResult
from reports.pricing import (
    LLM_EXPECTED_INPUT_TOKENS,
    LLM_MAX_INPUT_TOKENS,
    LLM_MAX_OUTPUT_TOKENS,
    PriceInfo,
    ProviderStats,
    call_cost,
    max_call_cost,
)
from reports.providers import applicable_providers
from reports.selectors import fresh_cache_pairs, price_table, provider_stats


def test_applicable_providers_in_fixed_order():
    assert applicable_providers(has_website=True, has_email=False) == [
        "website",
        "pagespeed",
        "semrush",
        "screenshot",
        "hunter",
        "llm",
    ]
    assert applicable_providers(has_website=True, has_email=True) == [
        "website",
        "pagespeed",
        "semrush",
        "screenshot",
        "llm",
    ]
    assert applicable_providers(has_website=False, has_email=False) == ["llm"]


def test_call_cost_rules():
    unit = PriceInfo("semrush", unit_price_usd=Decimal("0.08"))
    assert call_cost(unit, succeeded=True) == Decimal("0.08")
    assert call_cost(unit, succeeded=False) == Decimal("0")
    billed = PriceInfo("semrush", unit_price_usd=Decimal("0.08"), bills_failures=True)
    assert call_cost(billed, succeeded=False) == Decimal("0.08")
    llm = PriceInfo(
        "llm", input_price_per_million_usd=Decimal("0.15"), output_price_per_million_usd=Decimal("0.60")
    )
    assert call_cost(llm, succeeded=True, input_tokens=1_000_000, output_tokens=1_000_000) == Decimal("0.75")
    assert call_cost(llm, succeeded=True, input_tokens=523, output_tokens=211) == Decimal("0.000205")
    assert call_cost(llm, succeeded=False, input_tokens=523, output_tokens=211) == Decimal("0")
    assert max_call_cost(llm) == call_cost(
        llm, succeeded=True, input_tokens=LLM_MAX_INPUT_TOKENS, output_tokens=LLM_MAX_OUTPUT_TOKENS
    )


@pytest.mark.django_db
def test_default_prices_from_the_data_migration():
    table = price_table()
    assert {name: info.unit_price_usd for name, info in table.items()} == {
        "website": Decimal("0"),
        "pagespeed": Decimal("0.03"),
        "semrush": Decimal("0.08"),
        "screenshot": Decimal("0.02"),
        "hunter": Decimal("0.10"),
        "llm": Decimal("0"),
    }
    assert table["llm"].input_price_per_million_usd == Decimal("0.15")
    assert table["llm"].output_price_per_million_usd == Decimal("0.60")
    assert ProviderPrice.objects.count() == 6


@pytest.mark.django_db
def test_price_in_force_is_the_latest_effective_row():
    now = timezone.now()
    ProviderPrice.objects.create(
        provider="hunter", unit_price_usd=Decimal("0.12"), effective_from=now - timedelta(days=2)
    )
    ProviderPrice.objects.create(
        provider="hunter", unit_price_usd=Decimal("0.15"), effective_from=now + timedelta(days=2)
    )
    assert price_table(at=now)["hunter"].unit_price_usd == Decimal("0.12")
    assert price_table(at=now - timedelta(days=3))["hunter"].unit_price_usd == Decimal("0.10")
    assert price_table(at=now + timedelta(days=2))["hunter"].unit_price_usd == Decimal("0.15")


@pytest.mark.django_db
def test_fresh_cache_pairs(lead_factory, django_assert_num_queries):
    now = timezone.now()
    with_email = lead_factory(website="https://alpha.com")
    no_email = lead_factory(website="https://beta.com", email="")
    no_site = lead_factory(website="", email="")
    fresh = now + timedelta(days=1)
    ProviderResult.objects.bulk_create(
        [
            ProviderResult(provider="pagespeed", subject="alpha.com", expires_at=fresh),
            ProviderResult(provider="hunter", subject="alpha.com", expires_at=fresh),  # has email: n/a
            ProviderResult(provider="hunter", subject="beta.com", expires_at=fresh),
            ProviderResult(provider="semrush", subject="beta.com", expires_at=now - timedelta(seconds=1)),
            ProviderResult(provider="llm", subject=f"lead:{no_site.pk}", expires_at=fresh),
        ]
    )
    expected = {(with_email.pk, "pagespeed"), (no_email.pk, "hunter"), (no_site.pk, "llm")}
    queryset = Lead.objects.filter(pk__in=[with_email.pk, no_email.pk, no_site.pk])
    with django_assert_num_queries(2):  # the leads, the cache
        assert fresh_cache_pairs(leads=queryset, at=now) == expected
    objects = list(queryset)
    with django_assert_num_queries(1):
        assert fresh_cache_pairs(leads=objects, at=now) == expected
    assert fresh_cache_pairs(leads=objects, at=now + timedelta(days=2)) == set()


@pytest.mark.django_db
def test_provider_stats_defaults_in_sandbox(settings):
    settings.SANDBOX_FAILURE_RATE = 0.07
    settings.SANDBOX_LATENCY_MS = 250
    settings.SANDBOX_PROVIDER_FAILURE_RATES = {"semrush": 0.5}
    stats = provider_stats(since=timezone.now() - timedelta(days=1))
    assert stats["pagespeed"] == ProviderStats(0, 0.07, 250.0, 0.0, 0.0)
    assert stats["semrush"].transient_failure_rate == 0.5
    assert stats["llm"].mean_input_tokens == LLM_EXPECTED_INPUT_TOKENS


@pytest.mark.django_db
def test_provider_stats_defaults_in_live(settings):
    settings.PROVIDER_MODE = "live"
    stats = provider_stats(since=timezone.now())
    assert stats["hunter"].transient_failure_rate == 0.02
    assert stats["hunter"].mean_latency_ms == 700.0


@pytest.mark.django_db
def test_provider_stats_from_history():
    now = timezone.now()
    rows = [
        ProviderCall(
            provider="llm", status="succeeded", duration_ms=100, input_tokens=400, output_tokens=200
        ),
        ProviderCall(
            provider="llm", status="succeeded", duration_ms=300, input_tokens=600, output_tokens=100
        ),
        ProviderCall(provider="llm", status="failed", transient=True, duration_ms=200),
        ProviderCall(provider="llm", status="failed", transient=False, duration_ms=200),
        ProviderCall(provider="llm", status="cached"),
        ProviderCall(provider="llm", status="failed", transient=True, created_at=now - timedelta(days=9)),
    ]
    ProviderCall.objects.bulk_create(rows)
    stats = provider_stats(since=now - timedelta(days=1))["llm"]
    assert stats == ProviderStats(
        calls=4,
        transient_failure_rate=0.25,
        mean_latency_ms=200.0,
        mean_input_tokens=500.0,
        mean_output_tokens=150.0,
    )
