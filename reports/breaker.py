"""Per-provider circuit breakers for live calls.

After PROVIDER_BREAKER_FAILURES consecutive transient failures of a provider (timeouts, 5xx,
connection errors; a rate limit is the provider answering, not failing) its circuit opens for
PROVIDER_BREAKER_COOLDOWN_SECONDS: calls to it are not sent but answered at once with a transient
`circuit_open` error whose `retry_after` is the time left, so the leads needing it wait rather than
spend their attempts on a provider that is down. When the cool-down ends one call goes through: a
success closes the circuit, a failure opens it again at once.

With REDIS_URL set the state is shared by every process and host (a counter and a key with a TTL);
without, it is per process. Live mode only, like the limits (reports.limits).
"""

import threading
import time

from django.conf import settings

KEY_PREFIX = "leadgen:provider-breaker"
# How long the count of consecutive failures survives without a new failure.
FAILURE_MEMORY_SECONDS = 300

OK = "ok"
OPEN = "open"


def _threshold() -> int:
    return max(1, int(getattr(settings, "PROVIDER_BREAKER_FAILURES", 5)))


def _cooldown() -> float:
    return max(0.001, float(getattr(settings, "PROVIDER_BREAKER_COOLDOWN_SECONDS", 30.0)))


class LocalBreakers:
    def __init__(self):
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def failed(self, provider: str, threshold: int, cooldown: float) -> None:
        with self._lock:
            failures = self._failures.get(provider, 0) + 1
            if failures >= threshold:
                self._open_until[provider] = time.monotonic() + cooldown
                # Half-open after the cool-down: the next failure opens it again.
                failures = threshold - 1
            self._failures[provider] = failures

    def succeeded(self, provider: str) -> None:
        with self._lock:
            self._failures.pop(provider, None)

    def open_for(self, provider: str) -> float:
        """Seconds the circuit stays open (0: closed)."""
        return max(0.0, self._open_until.get(provider, 0.0) - time.monotonic())


# KEYS[1] the failure counter, KEYS[2] the open circuit. ARGV: threshold, cool-down ms, memory s.
_FAILED_SCRIPT = """
local failures = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if failures >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2]))
  redis.call('SET', KEYS[1], tonumber(ARGV[1]) - 1, 'EX', tonumber(ARGV[3]))
end
return failures
"""


class RedisBreakers:
    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self._failed = self.client.register_script(_FAILED_SCRIPT)

    def _keys(self, provider: str) -> list[str]:
        return [f"{KEY_PREFIX}:{provider}:failures", f"{KEY_PREFIX}:{provider}:open"]

    def failed(self, provider: str, threshold: int, cooldown: float) -> None:
        self._failed(
            keys=self._keys(provider), args=[threshold, max(1, int(cooldown * 1000)), FAILURE_MEMORY_SECONDS]
        )

    def succeeded(self, provider: str) -> None:
        self.client.delete(self._keys(provider)[0])

    def open_for(self, provider: str) -> float:
        milliseconds = self.client.pttl(self._keys(provider)[1])
        return milliseconds / 1000 if milliseconds and milliseconds > 0 else 0.0


_local = LocalBreakers()
_redis: dict[str, RedisBreakers] = {}
_redis_lock = threading.Lock()


def breakers() -> LocalBreakers | RedisBreakers:
    url = settings.REDIS_URL
    if not url:
        return _local
    with _redis_lock:
        if url not in _redis:
            _redis[url] = RedisBreakers(url)
        return _redis[url]


def _applies() -> bool:
    return settings.PROVIDER_MODE == "live"


def breaker_open_for(provider: str) -> float:
    """Seconds `provider`'s circuit stays open; 0 when closed (always in the sandbox)."""
    return breakers().open_for(provider) if _applies() else 0.0


def breaker_record(provider: str, error) -> None:
    """Count one call's outcome: `error` None or a ProviderError."""
    if not _applies():
        return
    if error is not None and error.transient and error.code not in {"rate_limited", "circuit_open"}:
        breakers().failed(provider, _threshold(), _cooldown())
    elif error is None or not error.transient:
        breakers().succeeded(provider)


def breaker_states(providers) -> dict[str, str]:
    """{provider: "ok" | "open"} for the live page and the status API."""
    return {name: OPEN if breaker_open_for(name) > 0 else OK for name in providers}
