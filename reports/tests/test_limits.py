import asyncio
import time

import httpx
import pytest

from reports import limits
from reports.limits import Limit, LocalLimiter, RedisLimiter, limit_for, provider_slot
from reports.providers.base import LeadInfo
from reports.services import _call


def test_limits_apply_in_live_mode_only(settings):
    assert limit_for("pagespeed") is None
    settings.PROVIDER_MODE = "live"
    assert limit_for("pagespeed") == Limit(concurrency=20, per_second=4.0)
    settings.PROVIDER_LIMITS = {"pagespeed": {"per_second": 100}}
    assert limit_for("pagespeed") == Limit(concurrency=20, per_second=100.0)


def test_local_limiter_concurrency_and_rate():
    limiter = LocalLimiter()
    limit = Limit(concurrency=2, per_second=3)
    assert limiter.try_acquire("hunter", limit, "a")
    assert limiter.try_acquire("hunter", limit, "b")
    assert not limiter.try_acquire("hunter", limit, "c")  # two holders
    limiter.release("hunter", "a")
    second = int(time.time())
    acquired = limiter.try_acquire("hunter", limit, "c")
    if int(time.time()) == second:
        assert acquired
        limiter.release("hunter", "c")
        limiter.release("hunter", "b")
        assert not limiter.try_acquire("hunter", limit, "d")  # three starts this second
    assert limiter.try_acquire("semrush", limit, "e")  # per provider


def test_provider_slot_holds_concurrency(settings, monkeypatch):
    settings.PROVIDER_MODE = "live"
    settings.PROVIDER_LIMITS = {"llm": {"concurrency": 2, "per_second": 1000}}
    monkeypatch.setattr(limits, "_local", LocalLimiter())
    active, peak = 0, 0

    async def work():
        nonlocal active, peak
        async with provider_slot("llm"):
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.03)
            active -= 1

    async def main():
        await asyncio.gather(*(work() for _ in range(6)))

    asyncio.run(main())
    assert peak == 2
    assert limits._local.holders("llm") == 0


@pytest.mark.redis
def test_redis_limiter_across_clients(settings):
    limiter_a = RedisLimiter(settings.REDIS_URL)
    limiter_b = RedisLimiter(settings.REDIS_URL)
    provider = f"test-{time.time_ns()}"
    limit = Limit(concurrency=2, per_second=1000)
    assert limiter_a.try_acquire(provider, limit, "a")
    assert limiter_b.try_acquire(provider, limit, "b")
    assert not limiter_a.try_acquire(provider, limit, "c")
    limiter_b.release(provider, "b")
    assert limiter_a.try_acquire(provider, limit, "c")
    assert limiter_a.holders(provider) == 2
    limiter_a.release(provider, "a")
    limiter_a.release(provider, "c")
    assert limiter_b.holders(provider) == 0


@pytest.mark.redis
def test_redis_limiter_rate_and_crashed_holders(settings, monkeypatch):
    limiter = RedisLimiter(settings.REDIS_URL)
    provider = f"test-{time.time_ns()}"
    while time.time() % 1 > 0.8:  # stay inside one second for the rate check
        time.sleep(0.05)
    rate = Limit(concurrency=100, per_second=2)
    assert limiter.try_acquire(provider, rate, "a")
    assert limiter.try_acquire(provider, rate, "b")
    assert not limiter.try_acquire(provider, rate, "c")

    other = f"{provider}-lease"
    monkeypatch.setattr(limits, "LEASE_SECONDS", -1)  # the holder's lease is already over
    assert limiter.try_acquire(other, Limit(concurrency=1, per_second=100), "crashed")
    monkeypatch.setattr(limits, "LEASE_SECONDS", 120)
    assert limiter.try_acquire(other, Limit(concurrency=1, per_second=100), "next")


def test_local_limiter_per_minute():
    limiter = LocalLimiter()
    while time.time() % 60 > 58:  # stay inside one minute
        time.sleep(0.1)
    limit = Limit(concurrency=100, per_second=1000, per_minute=3)
    assert all(limiter.try_acquire("hunter", limit, token) for token in "abc")
    assert not limiter.try_acquire("hunter", limit, "d")
    assert limiter.try_acquire("semrush", limit, "e")


def test_hold_off_stops_every_start_until_it_ends():
    limiter = LocalLimiter()
    limit = Limit(concurrency=100, per_second=1000)
    limiter.hold_off("hunter", 0.2)
    assert not limiter.try_acquire("hunter", limit, "a")
    assert limiter.try_acquire("llm", limit, "b")
    time.sleep(0.25)
    assert limiter.try_acquire("hunter", limit, "a")


def test_provider_hold_off_in_live_mode_only_and_bounded(settings, monkeypatch):
    settings.REDIS_URL = ""  # the per-process limiter (Redis: test_redis_limiter_per_minute_and_hold...)
    monkeypatch.setattr(limits, "_local", LocalLimiter())
    limits.provider_hold_off("hunter", 5.0)
    assert limits._local._hold == {}  # sandbox: no limits at all
    settings.PROVIDER_MODE = "live"
    before = time.time()
    limits.provider_hold_off("hunter", 3600.0)
    assert before + 29 < limits._local._hold["hunter"] <= time.time() + limits.MAX_HOLD_SECONDS


def test_hunter_slow_down_holds_off_every_hunter_call(replay_server, settings, monkeypatch):
    settings.REDIS_URL = ""
    monkeypatch.setattr(limits, "_local", LocalLimiter())
    replay_server.answer("hunter", 403, {"errors": [{"id": "too_many_requests", "code": 403}]})
    lead = LeadInfo(id=1, company_name="X", website="https://x-dental.com", domain="x-dental.com", email="")

    async def hunter_call():
        async with httpx.AsyncClient() as client:
            return await _call("hunter", client, lead, {})

    result = asyncio.run(hunter_call())

    assert (result.error.code, result.error.retry_after) == ("rate_limited", 5.0)
    assert not limits._local.try_acquire("hunter", limit_for("hunter"), "next")
    assert limits._local.try_acquire("semrush", limit_for("semrush"), "other")


@pytest.mark.redis
def test_redis_limiter_per_minute_and_hold_across_clients(settings):
    limiter_a = RedisLimiter(settings.REDIS_URL)
    limiter_b = RedisLimiter(settings.REDIS_URL)
    provider = f"test-{time.time_ns()}"
    while time.time() % 60 > 58:
        time.sleep(0.1)
    limit = Limit(concurrency=100, per_second=1000, per_minute=2)
    assert limiter_a.try_acquire(provider, limit, "a")
    assert limiter_b.try_acquire(provider, limit, "b")
    assert not limiter_a.try_acquire(provider, limit, "c")

    held = f"{provider}-held"
    free = Limit(concurrency=100, per_second=1000)
    limiter_a.hold_off(held, 0.3)
    assert not limiter_b.try_acquire(held, free, "a")
    limiter_b.hold_off(held, 0.05)  # a shorter hold does not shorten it
    time.sleep(0.1)
    assert not limiter_b.try_acquire(held, free, "a")
    time.sleep(0.3)
    assert limiter_b.try_acquire(held, free, "a")
