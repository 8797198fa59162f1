import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from leads.tests.factories import LeadFactory
from reports import sandbox


@pytest.fixture(autouse=True)
def sandbox_settings(settings):
    """Sandbox mode, no latency, no random failures, a fixed seed: tests opt into anything else."""
    settings.PROVIDER_MODE = "sandbox"
    settings.SANDBOX_LATENCY_MS = 0
    settings.SANDBOX_FAILURE_RATE = 0.0
    settings.SANDBOX_PROVIDER_FAILURE_RATES = {}
    settings.SANDBOX_PROVIDERS_UNAVAILABLE = set()
    settings.SANDBOX_SEED = "tests"
    settings.PROVIDER_BASE_URLS = {}
    return settings


@pytest.fixture(autouse=True)
def fresh_breakers(settings, monkeypatch):
    """Every test starts with every provider's circuit closed (in this process and in Redis)."""
    from reports import breaker

    monkeypatch.setattr(breaker, "_local", breaker.LocalBreakers())
    if settings.REDIS_URL:
        client = breaker.breakers().client
        keys = list(client.scan_iter(f"{breaker.KEY_PREFIX}:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def lead_factory(db):
    return LeadFactory


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests to another transport and counts them per provider."""

    def __init__(self, inner: httpx.AsyncBaseTransport, script: dict | None = None):
        self.inner = inner
        self.calls: list[str] = []
        # {provider: [status or None, ...]}: scripted answers for the next calls, None = pass through.
        self.script = script or {}

    async def handle_async_request(self, request):
        provider = request.extensions["leadgen_provider"]
        self.calls.append(provider)
        planned = self.script.get(provider)
        if planned:
            status = planned.pop(0)
            if status is not None:
                return httpx.Response(status, json={"error": {"message": f"scripted {status}"}})
        return await self.inner.handle_async_request(request)

    def count(self, provider: str | None = None) -> int:
        return len(self.calls) if provider is None else self.calls.count(provider)


@pytest.fixture
def counting_transport():
    transport = CountingTransport(sandbox.SandboxTransport())
    with sandbox.override_transport(transport):
        yield transport


class ReplayServer(ThreadingHTTPServer):
    """A local HTTP server answering each provider's path with a scripted response."""

    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ReplayHandler)
        self.answers: dict[str, tuple[int, dict, bytes, float, float]] = {}
        self.requests: list[dict] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def answer(
        self,
        provider: str,
        status: int = 200,
        body=b"",
        headers=None,
        delay: float = 0.0,
        trickle: float = 0.0,
    ):
        """Answer `provider`'s path after `delay` seconds; `trickle` > 0 sends the body in ten pieces that
        many seconds apart (a slow answer whose every read is quick)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        elif isinstance(body, str):
            body = body.encode()
        self.answers[provider] = (status, headers or {}, body, delay, trickle)


class _ReplayHandler(BaseHTTPRequestHandler):
    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        provider = url.path.strip("/").split("/")[0]
        self.server.requests.append(
            {"provider": provider, "path": url.path, "query": parse_qs(url.query), "body": body}
        )
        status, headers, content, delay, trickle = self.server.answers.get(
            provider, (404, {}, b"not scripted", 0, 0)
        )
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if not trickle:
                self.wfile.write(content)
                return
            piece = max(1, -(-len(content) // 10))
            for start in range(0, len(content), piece):
                self.wfile.write(content[start : start + piece])
                self.wfile.flush()
                time.sleep(trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format, *args):
        pass


@pytest.fixture
def replay_server(settings):
    """Live mode with every provider's base URL on a local replay server."""
    server = ReplayServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    settings.PROVIDER_MODE = "live"
    # The leads' websites are on the replay server too: the egress policy must let loopback through.
    settings.EGRESS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    # Generous: a loaded CI machine must not time out.
    settings.PROVIDER_TIMEOUTS = {name: 5.0 for name in settings.PROVIDER_TIMEOUTS}
    settings.SEMRUSH_DATABASE = "us"
    settings.PROVIDER_BASE_URLS = {
        name: f"{server.base_url}/{name}" for name in ("pagespeed", "semrush", "screenshot", "hunter", "llm")
    }
    settings.PAGESPEED_API_KEY = "ps-key"
    settings.SEMRUSH_API_KEY = "sr-key"
    settings.SCREENSHOTONE_ACCESS_KEY = "so-key"
    settings.HUNTER_API_KEY = "hu-key"
    settings.LLM_API_KEY = "llm-key"
    settings.LLM_MODEL = "test-model"
    yield server
    server.shutdown()
    server.server_close()
