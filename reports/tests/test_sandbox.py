"""The sandbox transport: real formats, deterministic data, latency and failures."""

import asyncio
import time
from statistics import mean

import httpx
import pytest

from reports import sandbox
from reports.pricing import LLM_EXPECTED_INPUT_TOKENS, LLM_EXPECTED_OUTPUT_TOKENS
from reports.providers import PROVIDERS
from reports.providers.base import LeadInfo


def info(domain: str, lead_id: int = 1, website: str | None = None) -> LeadInfo:
    return LeadInfo(
        id=lead_id,
        company_name=f"{domain} company",
        website=website or f"https://www.{domain}",
        domain=domain,
        email="",
    )


def run_calls(name: str, leads: list[LeadInfo], attempt: int = 1, context=None):
    async def go():
        token = sandbox.current_attempt.set(attempt)
        try:
            async with httpx.AsyncClient(transport=sandbox.SandboxTransport()) as client:
                return [await PROVIDERS[name].call(client, lead, context or {}) for lead in leads]
        finally:
            sandbox.current_attempt.reset(token)

    return asyncio.run(go())


def comparable(result) -> dict:
    data = result.data.to_dict()
    data.pop("response_time_ms", None)  # measured wall time, not sandbox data
    return data


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_same_lead_and_seed_give_the_same_data(name, settings):
    leads = [info(f"shop{n}.com", lead_id=n) for n in range(20)]
    first = run_calls(name, leads)
    second = run_calls(name, leads)
    assert all(result.error is None for result in first + second)
    assert [comparable(result) for result in first] == [comparable(result) for result in second]
    assert len({str(comparable(result)) for result in first}) > 1, "data varies between domains"

    settings.SANDBOX_SEED = "another seed"
    third = run_calls(name, leads)
    if name != "screenshot":  # 12 stock images: some domains may share one
        assert [comparable(result) for result in third] != [comparable(result) for result in first]


def test_answers_parse_into_plausible_data():
    lead = info("bright-smile.com")
    pagespeed = run_calls("pagespeed", [lead])[0].data
    assert set(pagespeed.scores) == {"performance", "accessibility", "seo", "best_practices"}
    assert all(0 <= score <= 100 for score in pagespeed.scores.values())
    website = run_calls("website", [lead])[0].data
    assert website.status_code == 200
    assert website.https is True
    assert website.images_total >= 1
    llm = run_calls("llm", [lead])[0]
    assert llm.data.summary.startswith("bright-smile.com company")
    assert len(llm.data.quick_wins) == 3


def test_latency_is_deterministic_with_30_percent_jitter(settings):
    settings.SANDBOX_LATENCY_MS = 300
    values = [sandbox.latency_ms("pagespeed", f"d{n}.com", 1) for n in range(2000)]
    assert values == [sandbox.latency_ms("pagespeed", f"d{n}.com", 1) for n in range(2000)]
    assert min(values) >= 210 and max(values) <= 390
    assert abs(mean(values) - 300) < 5
    assert min(values) < 220 and max(values) > 380  # the whole range is used
    settings.SANDBOX_LATENCY_MS = 0
    assert sandbox.latency_ms("pagespeed", "d1.com", 1) == 0


def test_latency_is_slept(settings):
    settings.SANDBOX_LATENCY_MS = 40
    expected = sandbox.latency_ms("semrush", "slow.com", 1) / 1000
    started = time.perf_counter()
    result = run_calls("semrush", [info("slow.com")])[0]
    assert result.error is None
    assert time.perf_counter() - started >= expected - 0.002


def test_latency_includes_building_the_answer(settings, monkeypatch):
    """As with a real provider, the time to build the answer is part of the latency, not added to it."""
    settings.SANDBOX_LATENCY_MS = 200
    expected = sandbox.latency_ms("semrush", "busy.com", 1) / 1000
    build = sandbox._ANSWERS["semrush"]

    def slow_build(*args):
        time.sleep(0.1)
        return build(*args)

    monkeypatch.setitem(sandbox._ANSWERS, "semrush", slow_build)
    started = time.perf_counter()
    result = run_calls("semrush", [info("busy.com")])[0]
    elapsed = time.perf_counter() - started
    assert result.error is None
    assert expected - 0.002 <= elapsed < expected + 0.08


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_failure_rate_over_2000_calls(settings, rate):
    settings.SANDBOX_FAILURE_RATE = rate
    results = run_calls("semrush", [info(f"biz{n}.com") for n in range(2000)])
    failures = [result.error for result in results if result.error is not None]
    assert abs(len(failures) / 2000 - rate) <= 0.01
    assert all(error.transient for error in failures)
    assert {error.code for error in failures} == {"http_503", "rate_limited", "timeout"}
    assert all(error.retry_after == 0 for error in failures if error.code == "rate_limited")
    # Deterministic: the same calls fail again.
    again = run_calls("semrush", [info(f"biz{n}.com") for n in range(2000)])
    assert [result.error is None for result in again] == [result.error is None for result in results]


def test_a_retry_can_succeed(settings):
    settings.SANDBOX_FAILURE_RATE = 0.5
    failing = next(
        f"x{n}.com" for n in range(100) if sandbox.transient_failure("hunter", f"x{n}.com", 1) is not None
    )
    assert run_calls("hunter", [info(failing)], attempt=1)[0].error is not None
    attempt = next(a for a in range(2, 50) if sandbox.transient_failure("hunter", failing, a) is None)
    assert run_calls("hunter", [info(failing)], attempt=attempt)[0].error is None


def test_rate_limit_answers_carry_retry_after(settings):
    settings.SANDBOX_FAILURE_RATE = 1.0
    settings.SANDBOX_LATENCY_MS = 1  # sleeps about a millisecond; Retry-After becomes 1 s
    domain = next(
        f"r{n}.com" for n in range(200) if sandbox.transient_failure("pagespeed", f"r{n}.com", 1) == "429"
    )
    error = run_calls("pagespeed", [info(domain)])[0].error
    assert (error.code, error.http_status, error.retry_after) == ("rate_limited", 429, 1.0)


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("hunter", 403, "rate_limited"),
        ("screenshot", 400, "concurrency_limit_reached"),
        ("llm", 429, "rate_limited"),
    ],
)
def test_rate_limits_come_in_each_providers_real_shape_and_pass(settings, name, status, code):
    settings.SANDBOX_FAILURE_RATE = 1.0
    # The LLM's sandbox subject is the lead, the others' the domain.
    n = next(
        n
        for n in range(200)
        if sandbox.transient_failure(name, f"lead-{n}" if name == "llm" else f"q{n}.com", 1) == "429"
    )
    error = run_calls(name, [info(f"q{n}.com", lead_id=n)])[0].error
    assert (error.code, error.http_status, error.transient, error.unavailable) == (code, status, True, False)


def test_per_provider_failure_rate_override(settings):
    settings.SANDBOX_PROVIDER_FAILURE_RATES = {"pagespeed": 1.0}
    leads = [info(f"drill{n}.com") for n in range(50)]
    assert all(result.error is not None for result in run_calls("pagespeed", leads))
    assert all(result.error is None for result in run_calls("semrush", leads))


def test_unreachable_and_malformed_domains_fail_permanently():
    unreachable = info("harbor-dental-17.invalid", website="http://harbor-dental-17.invalid")
    website = run_calls("website", [unreachable])[0].error
    assert (website.code, website.transient) == ("unreachable", False)
    pagespeed = run_calls("pagespeed", [unreachable])[0].error
    assert (pagespeed.code, pagespeed.transient, pagespeed.unavailable, pagespeed.http_status) == (
        "failed_document_request",
        False,
        False,
        400,
    )
    assert pagespeed.message == (
        "could not load this site (FAILED_DOCUMENT_REQUEST: net::ERR_NAME_NOT_RESOLVED) (HTTP 400)"
    )
    screenshot = run_calls("screenshot", [unreachable])[0].error
    assert (screenshot.code, screenshot.transient, screenshot.unavailable) == (
        "name_not_resolved",
        False,
        False,
    )

    malformed = info("-harbor-dental-17-.example", website="http://-harbor-dental-17-.example")
    for name in ("website", "pagespeed", "semrush", "screenshot", "hunter"):
        error = run_calls(name, [malformed])[0].error
        assert (error.code, error.transient) == ("malformed_domain", False)


def test_malformed_host_answered_in_the_provider_format():
    async def go():
        async with httpx.AsyncClient(transport=sandbox.SandboxTransport()) as client:
            return await client.get("https://api.hunter.io/v2/domain-search", params={"domain": "-x-.com"})

    response = asyncio.run(go())
    assert response.status_code == 400
    assert response.json()["errors"][0]["id"] == "wrong_params"


def test_llm_usage_varies_per_lead_around_the_documented_means():
    results = run_calls("llm", [info(f"l{n}.com", lead_id=n) for n in range(400)])
    inputs = [result.usage.input_tokens for result in results]
    outputs = [result.usage.output_tokens for result in results]
    assert len(set(inputs)) > 100
    assert min(inputs) >= 300 and max(inputs) <= 700
    assert min(outputs) >= 150 and max(outputs) <= 350
    assert abs(mean(inputs) - LLM_EXPECTED_INPUT_TOKENS) < 20
    assert abs(mean(outputs) - LLM_EXPECTED_OUTPUT_TOKENS) < 10


def test_override_transport_applies_in_both_modes(settings):
    seen = []

    def handler(request):
        seen.append(request.url.host)
        return httpx.Response(503)

    from reports.services import _loop_and_clients

    settings.SEMRUSH_API_KEY = "sr-key"
    for mode in ("sandbox", "live"):
        settings.PROVIDER_MODE = mode
        with sandbox.override_transport(httpx.MockTransport(handler)):
            loop, client, _ = _loop_and_clients()
            result = loop.run_until_complete(PROVIDERS["semrush"].call(client, info("a.com"), {}))
        assert result.error.code == "http_503"
    assert seen == ["api.semrush.com", "api.semrush.com"]
    assert sandbox.provider_transport() is None  # live mode, override gone


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("hunter", "plan_limit_reached", "plan usage limit reached (HTTP 429)"),
        ("llm", "insufficient_quota", "account out of credit (HTTP 429)"),
        ("screenshot", "screenshots_limit_reached", "plan screenshot limit reached (HTTP 400)"),
        ("pagespeed", "quota_exhausted", "daily quota used up (HTTP 429)"),
        ("semrush", "semrush_error_132", "API UNITS BALANCE IS ZERO"),
    ],
)
def test_a_used_up_plan_answers_in_the_providers_real_shape(settings, name, code, message):
    settings.SANDBOX_PROVIDERS_UNAVAILABLE = {name}
    error = run_calls(name, [info("plan.com")])[0].error
    assert (error.code, error.unavailable, error.transient, error.message) == (code, True, False, message)
    assert run_calls("website", [info("plan.com")])[0].error is None


def test_semrush_answers_every_database_without_one_and_one_row_with_it():
    async def answer(params):
        async with httpx.AsyncClient(transport=sandbox.SandboxTransport()) as client:
            return await client.get("https://api.semrush.com/", params=params)

    every = asyncio.run(answer({"type": "domain_ranks", "domain": "rows.com"})).text.splitlines()
    one = asyncio.run(
        answer({"type": "domain_ranks", "domain": "rows.com", "database": "us"})
    ).text.splitlines()

    assert [line.split(";")[0] for line in every[1:]] == list(sandbox.SEMRUSH_DATABASES)
    assert one[0] == every[0] and one[1:] == [every[-1]]
    data = run_calls("semrush", [info("rows.com")])[0].data
    assert (data.database, data.rank) == ("us", int(one[1].split(";")[2]))
