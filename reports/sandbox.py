"""The sandbox: an httpx transport that answers every provider's requests offline, like the real APIs.

The providers build their live requests (same URLs, same parameters) and parse the answers with the
same code in both modes; only the transport differs. Everything the sandbox answers is deterministic:

- data: seeded by hash(SANDBOX_SEED, provider, subject), the subject being the domain (the lead for
  the LLM), so the same lead and seed always get the same data;
- latency: SANDBOX_LATENCY_MS with uniform +-30% jitter, seeded per (seed, provider, subject, attempt),
  counted from the request, so that (as with a real provider) it includes building the answer;
  0 means no sleep at all;
- transient failures (503, 429 with `Retry-After`, timeouts) at SANDBOX_FAILURE_RATE, or the
  provider's entry in SANDBOX_PROVIDER_FAILURE_RATES, decided per (seed, provider, subject, attempt),
  so a retry (the report service sets `current_attempt`) can succeed;
- permanent failures for malformed host names and for unreachable ones (the `.invalid` top-level
  domain, which seeded data uses for unreachable sites);
- for the providers in SANDBOX_PROVIDERS_UNAVAILABLE, every call answers as if the plan or quota were
  used up, in the provider's real shape (Hunter's 429, OpenAI's `insufficient_quota`, ScreenshotOne's
  `screenshots_limit_reached`, PageSpeed's daily quota, SEMrush's ERROR 132);
- LLM token usage per lead: uniform 300-700 input and 150-350 output tokens (means 500 and 250:
  reports.pricing.LLM_EXPECTED_INPUT_TOKENS / LLM_EXPECTED_OUTPUT_TOKENS).

`override_transport(handler)` routes all provider HTTP (either mode) to a test transport instead.
"""

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import io
import random
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from django.conf import settings
from django.utils import timezone

from reports.models import Provider
from reports.providers.base import PROVIDER_EXTENSION, hostname_is_valid

JITTER = 0.3
# Shares of the transient failures: the rest (after 503s and 429s) are timeouts.
SHARE_503 = 0.4
SHARE_429 = 0.3
LLM_INPUT_TOKENS = (300, 700)
LLM_OUTPUT_TOKENS = (150, 350)
SEMRUSH_NOT_FOUND_RATE = 0.12

current_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("report_attempt", default=1)

_override: httpx.AsyncBaseTransport | None = None
_override_lock = threading.Lock()


@contextlib.contextmanager
def override_transport(handler: httpx.AsyncBaseTransport) -> Iterator[httpx.AsyncBaseTransport]:
    """Send all provider HTTP, in sandbox and live mode, to `handler` (e.g. an httpx.MockTransport).

    Process-wide rather than per context, so report_generate calls from worker threads see it too.
    """
    global _override
    with _override_lock:
        previous, _override = _override, handler
    try:
        yield handler
    finally:
        with _override_lock:
            _override = previous


def provider_transport() -> httpx.AsyncBaseTransport | None:
    """The transport provider calls use now: the test override, the sandbox, or None (live httpx)."""
    if _override is not None:
        return _override
    if settings.PROVIDER_MODE == "sandbox":
        return _SANDBOX
    return None


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b("|".join(str(part) for part in parts).encode(), digest_size=16).digest()


def _unit(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by its parts."""
    return int.from_bytes(_digest(*parts)[:8], "big") / 2**64


def _rng(provider: str, subject: str) -> random.Random:
    return random.Random(int.from_bytes(_digest(settings.SANDBOX_SEED, provider, subject), "big"))


def failure_rate(provider: str) -> float:
    overrides = getattr(settings, "SANDBOX_PROVIDER_FAILURE_RATES", None) or {}
    return float(overrides.get(provider, settings.SANDBOX_FAILURE_RATE))


def latency_ms(provider: str, subject: str, attempt: int) -> float:
    """The simulated latency of one call: SANDBOX_LATENCY_MS with uniform +-30% jitter."""
    base = settings.SANDBOX_LATENCY_MS
    if base <= 0:
        return 0.0
    jitter = _unit(settings.SANDBOX_SEED, provider, subject, attempt, "latency") * 2 - 1
    return base * (1 + JITTER * jitter)


def transient_failure(provider: str, subject: str, attempt: int) -> str | None:
    """ "503", "429", "timeout" or None: whether and how this attempt fails."""
    rate = failure_rate(provider)
    if rate <= 0:
        return None
    seed = settings.SANDBOX_SEED
    if _unit(seed, provider, subject, attempt, "fail") >= rate:
        return None
    kind = _unit(seed, provider, subject, attempt, "kind")
    if kind < SHARE_503:
        return "503"
    if kind < SHARE_503 + SHARE_429:
        return "429"
    return "timeout"


def retry_after_seconds() -> int:
    # With latency switched off (tests, benchmarks) the sandbox asks for no wait either.
    return 1 if settings.SANDBOX_LATENCY_MS > 0 else 0


def _host_to_domain(host: str) -> str:
    return host.lower().rstrip(".").removeprefix("www.")


def _provider_of(request: httpx.Request) -> str:
    name = request.extensions.get(PROVIDER_EXTENSION)
    if name:
        return name
    host = request.url.host
    path = request.url.path
    if host == "www.googleapis.com":
        return Provider.PAGESPEED
    if host == "api.semrush.com":
        return Provider.SEMRUSH
    if host == "api.screenshotone.com":
        return Provider.SCREENSHOT
    if host == "api.hunter.io":
        return Provider.HUNTER
    if path.endswith("/chat/completions"):
        return Provider.LLM
    return Provider.WEBSITE


def _subject_of(provider: str, request: httpx.Request) -> tuple[str, dict[str, Any] | None]:
    params = request.url.params
    if provider == Provider.LLM:
        body = orjson.loads(request.content or b"{}")
        return str(body.get("user") or hashlib.sha256(request.content).hexdigest()[:16]), body
    if provider in (Provider.PAGESPEED, Provider.SCREENSHOT):
        # The host of the page asked about (urllib's split costs a tenth of an httpx.URL).
        return _host_to_domain(urlsplit(params.get("url", "")).hostname or ""), None
    if provider in (Provider.SEMRUSH, Provider.HUNTER):
        return _host_to_domain(params.get("domain", "")), None
    return _host_to_domain(request.url.host), None


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    # orjson: compact UTF-8, as httpx's own `json=` writes it, several times faster.
    return httpx.Response(
        status, content=orjson.dumps(body), headers={"Content-Type": "application/json", **(headers or {})}
    )


def _text(status: int, body: str, content_type: str = "text/plain", headers=None) -> httpx.Response:
    return httpx.Response(
        status,
        content=body.encode(),
        headers={"Content-Type": f"{content_type}; charset=utf-8", **(headers or {})},
    )


class SandboxTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The provider's answer after its simulated latency, which (as a real provider's) includes the
        time it takes to build the answer."""
        started = time.monotonic()
        provider = _provider_of(request)
        subject, body = _subject_of(provider, request)
        attempt = current_attempt.get()
        try:
            answer = self._answer(request, provider, subject, body, attempt)
        except httpx.TransportError as exc:
            answer = exc
        delay = latency_ms(provider, subject, attempt) / 1000 - (time.monotonic() - started)
        if delay > 0:
            await asyncio.sleep(delay)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _answer(self, request, provider: str, subject: str, body, attempt: int) -> httpx.Response:
        if provider in (getattr(settings, "SANDBOX_PROVIDERS_UNAVAILABLE", None) or ()):
            return _used_up(provider)
        if provider != Provider.LLM:
            if not hostname_is_valid(subject):
                return _permanent(provider, subject, "malformed")
            if subject.endswith(".invalid"):
                if provider == Provider.WEBSITE:
                    raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)
                return _permanent(provider, subject, "unreachable")
        failure = transient_failure(provider, subject, attempt)
        if failure == "timeout":
            raise httpx.ReadTimeout("Sandbox: the provider did not answer in time", request=request)
        if failure is not None:
            return _transient(provider, int(failure))
        return _ANSWERS[provider](request, subject, body)


_SANDBOX = SandboxTransport()


def _transient(provider: str, status: int) -> httpx.Response:
    """A transient failure in the provider's real shape. "429" is each provider's way of saying "too
    many requests for now": Hunter's 403, ScreenshotOne's 400 `concurrency_limit_reached` (their 429
    and Hunter's mean a used-up plan, which is not transient)."""
    headers = {"Retry-After": str(retry_after_seconds())}
    if status == 429:
        if provider == Provider.HUNTER:
            body = {
                "errors": [
                    {"id": "too_many_requests", "code": 403, "details": "You have reached the rate limit."}
                ]
            }
            return _json(403, body, headers)
        if provider == Provider.SCREENSHOT:
            body = {
                "is_successful": False,
                "error_code": "concurrency_limit_reached",
                "error_message": "You reached the request concurrency limit, retry after a while.",
            }
            return _json(400, body, headers)
        bodies = {
            Provider.PAGESPEED: {
                "error": {
                    "code": 429,
                    "message": "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' "
                    "of service 'pagespeedonline.googleapis.com'.",
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
            Provider.LLM: {
                "error": {
                    "message": "Rate limit reached for requests.",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                }
            },
        }
    else:
        bodies = {
            Provider.PAGESPEED: {
                "error": {
                    "code": 503,
                    "message": "The service is currently unavailable.",
                    "status": "UNAVAILABLE",
                }
            },
            Provider.SCREENSHOT: {
                "is_successful": False,
                "error_code": "internal_application_error",
                "error_message": "Temporarily unavailable, please retry.",
            },
            Provider.HUNTER: {
                "errors": [{"id": "service_unavailable", "code": 503, "details": "Please retry later."}]
            },
            Provider.LLM: {
                "error": {"message": "The server is overloaded.", "type": "server_error", "code": None}
            },
        }
    if provider in bodies:
        return _json(status, bodies[provider], headers)
    reason = "Too Many Requests" if status == 429 else "Service Unavailable"
    if provider == Provider.WEBSITE:
        return _text(status, f"<html><body><h1>{status} {reason}</h1></body></html>", "text/html", headers)
    return _text(status, reason, headers=headers)


def _used_up(provider: str) -> httpx.Response:
    """A plan or quota used up, as each provider answers it (../shared/provider-fixtures/)."""
    if provider == Provider.HUNTER:
        details = "You have reached your usage limit. Upgrade your plan if necessary."
        return _json(429, {"errors": [{"id": "too_many_requests", "code": 429, "details": details}]})
    if provider == Provider.LLM:
        message = "You exceeded your current quota, please check your plan and billing details."
        error = {
            "message": message,
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
        return _json(429, {"error": error})
    if provider == Provider.SCREENSHOT:
        message = "The usage quota has been exceeded."
        body = {"is_successful": False, "error_code": "screenshots_limit_reached", "error_message": message}
        return _json(400, body)
    if provider == Provider.PAGESPEED:
        message = (
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per day' of service "
            "'pagespeedonline.googleapis.com'."
        )
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "metadata": {"quota_limit": "defaultPerDayPerProject", "quota_limit_value": "25000"},
        }
        return _json(
            429,
            {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": [info]}},
        )
    if provider == Provider.SEMRUSH:
        return _text(403, "ERROR 132 :: API UNITS BALANCE IS ZERO")
    return _text(503, "Service Unavailable")


def _permanent(provider: str, subject: str, why: str) -> httpx.Response:
    if provider == Provider.PAGESPEED:
        if why == "unreachable":
            message = (
                "Lighthouse returned error: FAILED_DOCUMENT_REQUEST. Lighthouse was unable to reliably load "
                "the page you requested. (Details: net::ERR_NAME_NOT_RESOLVED)"
            )
            reason, domain = "lighthouseUserError", "lighthouse"
        else:
            message, reason, domain = "Invalid value at 'url'", "badRequest", "global"
        return _json(
            400,
            {
                "error": {
                    "code": 400,
                    "message": message,
                    "errors": [{"message": message, "domain": domain, "reason": reason}],
                    **({} if why == "unreachable" else {"status": "INVALID_ARGUMENT"}),
                }
            },
        )
    if provider == Provider.SEMRUSH:
        return _text(200, "ERROR 50 :: NOTHING FOUND")
    if provider == Provider.SCREENSHOT:
        return _json(
            400,
            {
                "is_successful": False,
                "error_code": "name_not_resolved" if why == "unreachable" else "invalid_url",
                "error_message": f"The site {subject} could not be loaded.",
            },
        )
    if provider == Provider.HUNTER:
        if why == "unreachable":
            return _json(200, _hunter_body(subject, organization="", emails=[]))
        return _json(
            400, {"errors": [{"id": "wrong_params", "code": 400, "details": "The domain is invalid."}]}
        )
    return _text(400, "Bad Request")


def _words(subject: str) -> str:
    return subject.split(".")[0].replace("-", " ").title()


AUDITS = [
    ("render-blocking-resources", "Eliminate render-blocking resources", "Potential savings of {n} ms"),
    ("uses-optimized-images", "Efficiently encode images", "Potential savings of {n} KiB"),
    ("uses-responsive-images", "Properly size images", "Potential savings of {n} KiB"),
    ("unused-javascript", "Reduce unused JavaScript", "Potential savings of {n} KiB"),
    ("server-response-time", "Reduce initial server response time", "Root document took {n} ms"),
    ("image-alt", "Image elements do not have [alt] attributes", ""),
    ("color-contrast", "Background and foreground colors do not have a sufficient contrast ratio", ""),
    ("meta-description", "Document does not have a meta description", ""),
    ("document-title", "Document doesn't have a <title> element", ""),
    ("tap-targets", "Tap targets are not sized appropriately", ""),
    ("uses-text-compression", "Enable text compression", "Potential savings of {n} KiB"),
    ("errors-in-console", "Browser errors were logged to the console", ""),
]


def _pagespeed(request: httpx.Request, subject: str, body) -> httpx.Response:
    rng = _rng(Provider.PAGESPEED, subject)
    url = request.url.params.get("url", "")
    categories = {
        key: {"id": key, "title": title, "score": round(rng.uniform(low, 1.0), 2)}
        for key, title, low in (
            ("performance", "Performance", 0.2),
            ("accessibility", "Accessibility", 0.5),
            ("best-practices", "Best Practices", 0.5),
            ("seo", "SEO", 0.55),
        )
    }
    fcp = rng.uniform(0.8, 5.0)
    lcp = fcp + rng.uniform(0.3, 6.0)
    tbt = rng.randint(0, 1500)
    cls = round(rng.uniform(0, 0.5), 3)
    audits: dict[str, Any] = {
        "first-contentful-paint": _metric(
            "first-contentful-paint", "First Contentful Paint", fcp * 1000, f"{fcp:.1f} s", 1.8, 3.0
        ),
        "largest-contentful-paint": _metric(
            "largest-contentful-paint", "Largest Contentful Paint", lcp * 1000, f"{lcp:.1f} s", 2.5, 4.0
        ),
        "total-blocking-time": _metric(
            "total-blocking-time", "Total Blocking Time", tbt, f"{tbt:,} ms", 200, 600
        ),
        "cumulative-layout-shift": _metric(
            "cumulative-layout-shift", "Cumulative Layout Shift", cls, f"{cls}", 0.1, 0.25
        ),
        "speed-index": _metric("speed-index", "Speed Index", (fcp + 1) * 1000, f"{fcp + 1:.1f} s", 3.4, 5.8),
    }
    for audit_id, title, display in AUDITS:
        score = rng.choice([0, 0, 0.3, 0.5, 0.7, 1, 1, 1, 1])
        audits[audit_id] = {
            "id": audit_id,
            "title": title,
            "description": f"See the Lighthouse documentation for {audit_id}.",
            "score": score,
            "scoreDisplayMode": "binary" if not display else "metricSavings",
            "displayValue": display.format(n=rng.randint(50, 2400)) if display and score < 1 else "",
        }
    audits["screenshot-thumbnails"] = {
        "id": "screenshot-thumbnails",
        "score": None,
        "scoreDisplayMode": "informative",
    }
    return _json(
        200,
        {
            "captchaResult": "CAPTCHA_NOT_NEEDED",
            "kind": "pagespeedonline#result",
            "id": url,
            "lighthouseResult": {
                "requestedUrl": url,
                "finalUrl": url,
                "lighthouseVersion": "12.2.1",
                "fetchTime": timezone.now().isoformat(),
                "configSettings": {"formFactor": "mobile", "locale": "en-US"},
                "categories": categories,
                "audits": audits,
            },
            "analysisUTCTimestamp": timezone.now().isoformat(),
        },
    )


def _metric(audit_id: str, title: str, value: float, display: str, good: float, poor: float) -> dict:
    score = 1.0 if value <= good else (0.5 if value <= poor else 0.1)
    return {
        "id": audit_id,
        "title": title,
        "score": score,
        "scoreDisplayMode": "numeric",
        "numericValue": value,
        "displayValue": display,
    }


# The regional databases of a SEMrush answer without `database`, in its order (the silktide.com file).
SEMRUSH_DATABASES = (
    "ar",
    "au",
    "be",
    "bing-us",
    "br",
    "ca",
    "ch",
    "de",
    "dk",
    "es",
    "fi",
    "fr",
    "hk",
    "ie",
    "il",
    "it",
    "mx",
    "nl",
    "no",
    "pl",
    "ru",
    "se",
    "sg",
    "tr",
    "uk",
    "us",
)
SEMRUSH_HEADER = (
    "Database;Domain;Rank;Organic Keywords;Organic Traffic;Organic Cost;"
    "Adwords Keywords;Adwords Traffic;Adwords Cost"
)


def _semrush(request: httpx.Request, subject: str, body) -> httpx.Response:
    rng = _rng(Provider.SEMRUSH, subject)
    if rng.random() < SEMRUSH_NOT_FOUND_RATE:
        return _text(200, "ERROR 50 :: NOTHING FOUND")
    keywords = int(rng.lognormvariate(4.5, 1.3))
    traffic = int(keywords * rng.uniform(0.5, 6))
    paid = rng.choice([0, 0, 0, rng.randint(1, 80)])
    rank = rng.randint(40_000, 25_000_000)
    values = [
        str(keywords),
        str(traffic),
        str(int(traffic * rng.uniform(0.2, 3.5))),
        str(paid),
        str(paid * rng.randint(0, 30)),
        str(int(paid * rng.uniform(0, 40))),
    ]
    # With `database` one row for it; without, one row per regional database in alphabetical order,
    # the asked-for figures in the `us` row and others' shrunk (as SEMrush answers, e.g. silktide.com).
    asked = request.url.params.get("database")
    rows = []
    for index, database in enumerate([asked] if asked else SEMRUSH_DATABASES):
        own = database == (asked or "us")
        figures = values if own else [str(int(value) // (index + 2)) for value in values]
        rows.append(";".join([database, subject, str(rank if own else rank * (index + 2)), *figures]))
    return _text(200, "\r\n".join([SEMRUSH_HEADER, *rows]) + "\r\n")


@functools.cache
def _screenshot_images() -> tuple[bytes, ...]:
    from PIL import Image, ImageDraw

    images = []
    for hue in range(12):
        image = Image.new("RGB", (160, 100), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        colour = ((hue * 67) % 256, (hue * 131 + 60) % 256, (hue * 29 + 120) % 256)
        draw.rectangle((0, 0, 160, 18), fill=colour)
        draw.rectangle((12, 30, 100, 40), fill=(60, 60, 60))
        draw.rectangle((12, 50, 148, 90), fill=tuple(min(255, c + 90) for c in colour))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=70)
        images.append(buffer.getvalue())
    return tuple(images)


def _screenshot(request: httpx.Request, subject: str, body) -> httpx.Response:
    images = _screenshot_images()
    image = images[_rng(Provider.SCREENSHOT, subject).randrange(len(images))]
    return httpx.Response(200, content=image, headers={"Content-Type": "image/jpeg"})


FIRST_NAMES = ["Maria", "James", "Linda", "Robert", "Ana", "David", "Susan", "Kevin", "Priya", "Tom"]
LAST_NAMES = ["Garcia", "Smith", "Nguyen", "Johnson", "Patel", "Brown", "Lee", "Miller", "Davis", "Lopez"]
POSITIONS = ["Owner", "Office Manager", "Marketing Manager", "Director", "Front Desk", ""]


def _hunter_body(subject: str, *, organization: str, emails: list[dict]) -> dict:
    return {
        "data": {
            "domain": subject,
            "disposable": False,
            "webmail": False,
            "accept_all": False,
            "pattern": "{first}" if emails else None,
            "organization": organization or None,
            "emails": emails,
        },
        "meta": {"results": len(emails), "limit": 10, "offset": 0, "params": {"domain": subject}},
    }


def _hunter(request: httpx.Request, subject: str, body) -> httpx.Response:
    rng = _rng(Provider.HUNTER, subject)
    emails = []
    for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        generic = rng.random() < 0.3
        emails.append(
            {
                "value": f"{'info' if generic else first.lower()}@{subject}",
                "type": "generic" if generic else "personal",
                "confidence": rng.randint(40, 99),
                "sources": [],
                "first_name": None if generic else first,
                "last_name": None if generic else last,
                "position": None if generic else rng.choice(POSITIONS) or None,
                "seniority": None,
                "department": None,
                "verification": {"date": None, "status": None},
            }
        )
    unique = {email["value"]: email for email in emails}
    return _json(200, _hunter_body(subject, organization=_words(subject), emails=list(unique.values())))


def _website(request: httpx.Request, subject: str, body) -> httpx.Response:
    rng = _rng(Provider.WEBSITE, subject)
    if request.url.scheme == "http" and rng.random() < 0.5:
        return httpx.Response(301, headers={"Location": str(request.url.copy_with(scheme="https"))})
    name = _words(subject)
    title = "" if rng.random() < 0.08 else f"{name} | Home"
    description = (
        "" if rng.random() < 0.3 else f"{name}: friendly local service since {rng.randint(1960, 2020)}."
    )
    viewport = rng.random() >= 0.15
    h1_count = rng.choice([0, 1, 1, 1, 1, 2])
    images = rng.randint(1, 8)
    missing_alt = rng.randint(0, images) if rng.random() < 0.6 else 0
    paragraphs = rng.randint(2, 8)
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>',
        f'<meta name="description" content="{description}">' if description else "",
        '<meta name="viewport" content="width=device-width, initial-scale=1">' if viewport else "",
        "</head><body><header><nav><a href='/'>Home</a> <a href='/contact'>Contact</a></nav></header>",
        *(f"<h1>Welcome to {name}</h1>" for _ in range(h1_count)),
        *(
            f'<img src="/img/{index}.jpg">'
            if index < missing_alt
            else f'<img src="/img/{index}.jpg" alt="Photo {index}">'
            for index in range(images)
        ),
        *(
            f"<p>{name} has served the community with care and attention to detail. Call us today.</p>"
            for _ in range(paragraphs)
        ),
        "</body></html>",
    ]
    return _text(200, "".join(parts), "text/html")


QUICK_WINS = [
    "Add a meta description that says what you do and where.",
    "Compress and resize images before uploading them.",
    "Add alt text to every image.",
    "Put your phone number and a booking button at the top of the homepage.",
    "Serve the site over HTTPS and redirect HTTP to it.",
    "Claim and complete your Google Business Profile.",
    "Remove unused scripts and plugins.",
    "Add a clear page title with your business name and city.",
]


def _llm(request: httpx.Request, subject: str, body: dict[str, Any]) -> httpx.Response:
    rng = _rng(Provider.LLM, subject)
    facts = next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")
    lines = facts.splitlines()
    business = lines[0].removeprefix("Business: ") if lines else "This business"
    issues = [line.removeprefix("Failed audit: ") for line in lines if line.startswith("Failed audit: ")]
    issues = issues[:3] or ["The website could not be assessed in depth."]
    summary = (
        f"{business} has a web presence that can be improved. "
        f"The most important problem is: {issues[0]}. "
        "Fixing the basics below should bring more visitors and more calls within weeks."
    )
    content = {"summary": summary, "top_issues": issues, "quick_wins": rng.sample(QUICK_WINS, 3)}
    return _json(
        200,
        {
            "id": f"chatcmpl-sandbox-{hashlib.sha256(subject.encode()).hexdigest()[:12]}",
            "object": "chat.completion",
            "created": int(timezone.now().timestamp()),
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": orjson.dumps(content).decode()},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": (prompt := rng.randint(*LLM_INPUT_TOKENS)),
                "completion_tokens": (completion := rng.randint(*LLM_OUTPUT_TOKENS)),
                "total_tokens": prompt + completion,
            },
        },
    )


_ANSWERS = {
    Provider.WEBSITE: _website,
    Provider.PAGESPEED: _pagespeed,
    Provider.SEMRUSH: _semrush,
    Provider.SCREENSHOT: _screenshot,
    Provider.HUNTER: _hunter,
    Provider.LLM: _llm,
}
