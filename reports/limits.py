"""Per-provider concurrency and rate limits for live calls.

With REDIS_URL set the limits hold across every process and host (one Lua script per attempt: a sorted
set of holders whose scores are lease expiries, so a crashed holder frees its slot when the lease runs
out, and a per-second INCR counter with EXPIRE). Without Redis they hold per process (a lock-protected
counter shared by all threads and event loops of the process).

Limits come from settings.PROVIDER_LIMITS ({provider: {"concurrency": n, "per_second": r}}), merged
over DEFAULT_LIMITS. They apply in live mode only: the sandbox charges nothing and must not be the
bottleneck of a 0-latency benchmark.
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
    # Hunter: 15 requests per second.
    Provider.HUNTER: {"concurrency": 10, "per_second": 15},
    Provider.LLM: {"concurrency": 20, "per_second": 50},
}


@dataclass(frozen=True)
class Limit:
    concurrency: int
    per_second: float


def limit_for(provider: str) -> Limit | None:
    if settings.PROVIDER_MODE != "live":
        return None
    configured = (getattr(settings, "PROVIDER_LIMITS", None) or {}).get(provider, {})
    merged = {**DEFAULT_LIMITS.get(provider, {"concurrency": 10, "per_second": 10}), **configured}
    return Limit(concurrency=int(merged["concurrency"]), per_second=float(merged["per_second"]))


class LocalLimiter:
    """Process-wide limits: a counter of holders and a count of starts in the current second."""

    def __init__(self):
        self._lock = threading.Lock()
        self._holders: dict[str, int] = {}
        self._window: dict[str, tuple[int, int]] = {}

    def try_acquire(self, provider: str, limit: Limit, token: str) -> bool:
        second = int(time.time())
        with self._lock:
            window_second, started = self._window.get(provider, (second, 0))
            if window_second != second:
                started = 0
            if self._holders.get(provider, 0) >= limit.concurrency or started >= limit.per_second:
                return False
            self._holders[provider] = self._holders.get(provider, 0) + 1
            self._window[provider] = (second, started + 1)
            return True

    def release(self, provider: str, token: str) -> None:
        with self._lock:
            self._holders[provider] = max(0, self._holders.get(provider, 0) - 1)

    def holders(self, provider: str) -> int:
        return self._holders.get(provider, 0)


# KEYS[1] holders (sorted set: member = token, score = lease expiry), KEYS[2] this second's counter.
# ARGV: now, lease expiry, token, concurrency, per-second rate.
_ACQUIRE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
local started = tonumber(redis.call('GET', KEYS[2]) or '0')
if started >= tonumber(ARGV[5]) then return 0 end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 2)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return 1
"""


class RedisLimiter:
    """Cluster-wide limits in Redis. Calls are sub-millisecond, so the sync client is used directly."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self._acquire = self.client.register_script(_ACQUIRE_SCRIPT)

    def _keys(self, provider: str, second: int) -> list[str]:
        return [f"{KEY_PREFIX}:{provider}:holders", f"{KEY_PREFIX}:{provider}:second:{second}"]

    def try_acquire(self, provider: str, limit: Limit, token: str) -> bool:
        now = time.time()
        keys = self._keys(provider, int(now))
        args = [now, now + LEASE_SECONDS, token, limit.concurrency, limit.per_second, LEASE_SECONDS * 2]
        return bool(self._acquire(keys=keys, args=args))

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
