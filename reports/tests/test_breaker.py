"""Per-provider circuit breakers: open after consecutive transient failures, half-open after the cool-down."""

import asyncio
import time

import httpx
import pytest

from reports import breaker
from reports.breaker import LocalBreakers, RedisBreakers, breaker_open_for, breaker_record, breaker_states
from reports.providers.base import LeadInfo, ProviderError
from reports.services import _call


def transient(code: str = "http_503") -> ProviderError:
    return ProviderError(provider="pagespeed", code=code, message="x", transient=True)


@pytest.fixture
def live(settings):
    settings.PROVIDER_MODE = "live"
    settings.PROVIDER_BREAKER_FAILURES = 3
    settings.PROVIDER_BREAKER_COOLDOWN_SECONDS = 0.3
    return settings


def test_opens_after_consecutive_failures_and_half_opens_after_the_cool_down(live):
    breaker_record("pagespeed", transient())
    breaker_record("pagespeed", transient("timeout"))
    assert breaker_open_for("pagespeed") == 0
    breaker_record("pagespeed", transient())
    assert 0.2 < breaker_open_for("pagespeed") <= 0.3
    assert breaker_states(["pagespeed", "semrush"]) == {"pagespeed": "open", "semrush": "ok"}
    time.sleep(0.35)
    assert breaker_open_for("pagespeed") == 0
    # Half-open: one more failure opens it again; a success closes it for good.
    breaker_record("pagespeed", transient())
    assert breaker_open_for("pagespeed") > 0
    time.sleep(0.35)
    breaker_record("pagespeed", None)
    breaker_record("pagespeed", transient())
    breaker_record("pagespeed", transient())
    assert breaker_open_for("pagespeed") == 0


def test_an_answer_resets_the_count_and_a_rate_limit_is_not_a_failure(live):
    breaker_record("pagespeed", transient())
    breaker_record("pagespeed", transient())
    breaker_record(
        "pagespeed", ProviderError(provider="pagespeed", code="http_400", message="x", transient=False)
    )
    breaker_record("pagespeed", transient())
    breaker_record("pagespeed", transient("rate_limited"))
    breaker_record("pagespeed", transient())
    assert breaker_open_for("pagespeed") == 0
    breaker_record("pagespeed", transient())
    assert breaker_open_for("pagespeed") > 0


def test_the_sandbox_has_no_breaker(settings):
    settings.PROVIDER_BREAKER_FAILURES = 1
    breaker_record("pagespeed", transient())
    assert breaker_open_for("pagespeed") == 0
    assert breaker._local.open_for("pagespeed") == 0


def test_an_open_circuit_answers_without_sending(replay_server, settings):
    settings.PROVIDER_BREAKER_FAILURES = 3
    settings.PROVIDER_BREAKER_COOLDOWN_SECONDS = 30.0
    replay_server.answer("semrush", 503, "Service Unavailable")
    lead = LeadInfo(id=1, company_name="X", website="https://x-dental.com", domain="x-dental.com", email="")

    async def calls(count: int):
        async with httpx.AsyncClient() as client:
            return [await _call("semrush", client, lead, {}) for _ in range(count)]

    results = asyncio.run(calls(4))

    assert [result.error.code for result in results] == ["http_503", "http_503", "http_503", "circuit_open"]
    assert len(replay_server.requests) == 3
    last = results[-1].error
    assert (last.transient, last.unavailable) == (True, False)
    assert 29 < last.retry_after <= 30
    assert last.message == "failing repeatedly; circuit open for 30 s"


@pytest.mark.redis
def test_redis_breakers_are_shared(settings):
    one, other = RedisBreakers(settings.REDIS_URL), RedisBreakers(settings.REDIS_URL)
    provider = f"test-{time.time_ns()}"
    one.failed(provider, 2, 0.3)
    other.failed(provider, 2, 0.3)
    assert 0.2 < one.open_for(provider) <= 0.3
    time.sleep(0.35)
    assert other.open_for(provider) == 0
    one.failed(provider, 2, 0.3)  # half-open: open again at once
    assert other.open_for(provider) > 0
    other.succeeded(provider)
    time.sleep(0.35)
    one.failed(provider, 2, 0.3)
    assert other.open_for(provider) == 0
    assert isinstance(breaker._local, LocalBreakers)
