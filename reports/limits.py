"""Per-provider concurrency and rate limits for live calls.

With REDIS_URL set the limits hold across every process and host (one Lua script per attempt: a sorted
set of holders whose scores are lease expiries, so a crashed holder frees its slot when the lease runs
out, per-second and per-minute INCR counters with EXPIRE, and a hold key). Without Redis they hold per
process (a lock-protected counter shared by all threads and event loops of the process).

Limits come from settings.PROVIDER_LIMITS ({provider: {"concurrency": n, "per_second": r,
"per_minute": m}}), merged over DEFAULT_LIMITS. When a provider asks to slow down (`hold_off`, after a
rate-limited answer), nobody starts a call to it until the hold ends. They apply in live mode only: the
sandbox charges nothing and must not be the bottleneck of a 0-latency benchmark.
"""

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from django.conf import settings

from reports.models import Provider

POLL_SECONDS = 0.02
LEASE_SECONDS = 120
KEY_PREFIX = "leadgen:provider-limit"

DEFAULT_LIMITS: dict[str, dict[str, float]] = {
    Provider.WEBSITE: {"concurrency": 50, "per_second": 50},
    # PageSpeed Insights: 240 queries per minute per project by default.
    Provider.PAGESPEED: {"concurrency": 20, "per_second": 4},
    Provider.SEMRUSH: {"concurrency": 10, "per_second": 10},
    Provider.SCREENSHOT: {"concurrency": 10, "per_second": 5},
    # Hunter Domain Search: 15 requests per second and 500 per minute.
    Provider.HUNTER: {"concurrency": 10, "per_second": 15, "per_minute": 500},
    Provider.LLM: {"concurrency": 20, "per_second": 50},
}


# The longest a rate-limited answer holds every caller off; the lead that met it waits its own
# Retry-After in the engine's backoff.
MAX_HOLD_SECONDS = 30.0


@dataclass(frozen=True)
class Limit:
    concurrency: int
    per_second: float
    # 0: no per-minute limit.
    per_minute: float = 0


def limit_for(provider: str) -> Limit | None:
    if settings.PROVIDER_MODE != "live":
        return None
    configured = (getattr(settings, "PROVIDER_LIMITS", None) or {}).get(provider, {})
    merged = {**DEFAULT_LIMITS.get(provider, {"concurrency": 10, "per_second": 10}), **configured}
    return Limit(
        concurrency=int(merged["concurrency"]),
        per_second=float(merged["per_second"]),
        per_minute=float(merged.get("per_minute", 0)),
    )


class LocalLimiter:
    """Process-wide limits: a counter of holders and a count of starts in the current second."""

    def __init__(self):
        self._lock = threading.Lock()
        self._holders: dict[str, int] = {}
        self._window: dict[str, tuple[int, int]] = {}
        self._minute: dict[str, tuple[int, int]] = {}
        self._hold: dict[str, float] = {}

    def try_acquire(self, provider: str, limit: Limit, token: str) -> bool:
        now = time.time()
        second, minute = int(now), int(now // 60)
        with self._lock:
            if self._hold.get(provider, 0.0) > now:
                return False
            window_second, started = self._window.get(provider, (second, 0))
            if window_second != second:
                started = 0
            window_minute, started_minute = self._minute.get(provider, (minute, 0))
            if window_minute != minute:
                started_minute = 0
            if self._holders.get(provider, 0) >= limit.concurrency or started >= limit.per_second:
                return False
            if limit.per_minute and started_minute >= limit.per_minute:
                return False
            self._holders[provider] = self._holders.get(provider, 0) + 1
            self._window[provider] = (second, started + 1)
            self._minute[provider] = (minute, started_minute + 1)
            return True

    def hold_off(self, provider: str, seconds: float) -> None:
        with self._lock:
            self._hold[provider] = max(self._hold.get(provider, 0.0), time.time() + seconds)

    def release(self, provider: str, token: str) -> None:
        with self._lock:
            self._holders[provider] = max(0, self._holders.get(provider, 0) - 1)

    def holders(self, provider: str) -> int:
        return self._holders.get(provider, 0)


# KEYS[1] holders (sorted set: member = token, score = lease expiry), KEYS[2] this second's counter,
# KEYS[3] this minute's counter, KEYS[4] the hold (a time until which nobody starts).
# ARGV: now, lease expiry, token, concurrency, per-second rate, holders' TTL, per-minute rate (0: none).
_ACQUIRE_SCRIPT = """
if tonumber(redis.call('GET', KEYS[4]) or '0') > tonumber(ARGV[1]) then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
local started = tonumber(redis.call('GET', KEYS[2]) or '0')
if started >= tonumber(ARGV[5]) then return 0 end
local per_minute = tonumber(ARGV[7])
if per_minute > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= per_minute then return 0 end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 2)
if per_minute > 0 then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], 61)
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return 1
"""
# KEYS[1] the hold; ARGV: its end (seconds since the epoch), its TTL in milliseconds. Only extends it.
_HOLD_SCRIPT = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""


class RedisLimiter:
    """Cluster-wide limits in Redis. Calls are sub-millisecond, so the sync client is used directly."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self._acquire = self.client.register_script(_ACQUIRE_SCRIPT)
        self._hold = self.client.register_script(_HOLD_SCRIPT)

    def _keys(self, provider: str, second: int) -> list[str]:
        return [
            f"{KEY_PREFIX}:{provider}:holders",
            f"{KEY_PREFIX}:{provider}:second:{second}",
            f"{KEY_PREFIX}:{provider}:minute:{second // 60}",
            f"{KEY_PREFIX}:{provider}:hold",
        ]

    def try_acquire(self, provider: str, limit: Limit, token: str) -> bool:
        now = time.time()
        keys = self._keys(provider, int(now))
        args = [
            now,
            now + LEASE_SECONDS,
            token,
            limit.concurrency,
            limit.per_second,
            LEASE_SECONDS * 2,
            limit.per_minute,
        ]
        return bool(self._acquire(keys=keys, args=args))

    def hold_off(self, provider: str, seconds: float) -> None:
        until = time.time() + seconds
        self._hold(keys=[self._keys(provider, 0)[3]], args=[until, max(1, int(seconds * 1000))])

    def release(self, provider: str, token: str) -> None:
        self.client.zrem(self._keys(provider, 0)[0], token)

    def holders(self, provider: str) -> int:
        key = self._keys(provider, 0)[0]
        self.client.zremrangebyscore(key, "-inf", time.time())
        return int(self.client.zcard(key))


_local = LocalLimiter()
_redis: dict[str, RedisLimiter] = {}
_redis_lock = threading.Lock()


def limiter() -> LocalLimiter | RedisLimiter:
    url = settings.REDIS_URL
    if not url:
        return _local
    with _redis_lock:
        if url not in _redis:
            _redis[url] = RedisLimiter(url)
        return _redis[url]


def provider_hold_off(provider: str, seconds: float | None) -> None:
    """After a provider asked to slow down: nobody in the cluster starts a call to it for `seconds`
    (at most MAX_HOLD_SECONDS). Live mode only, like the limits."""
    if not seconds or seconds <= 0 or limit_for(provider) is None:
        return
    limiter().hold_off(provider, min(float(seconds), MAX_HOLD_SECONDS))


@contextlib.asynccontextmanager
async def provider_slot(provider: str) -> AsyncIterator[None]:
    """Wait for a concurrency slot and a rate token of `provider`, hold the slot for the block."""
    limit = limit_for(provider)
    if limit is None:
        yield
        return
    backend = limiter()
    token = uuid.uuid4().hex
    while True:
        if backend.try_acquire(provider, limit, token):
            break
        await asyncio.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        backend.release(provider, token)
