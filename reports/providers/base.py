"""What every provider has in common: the request/parse/classify cycle, errors and timing.

A provider is a stateless object. `call()` builds the provider's HTTP request, sends it through the
client it is given (live httpx transport, the sandbox transport, or a test transport: the code here does
not know which), classifies failures and parses the body into the provider's dataclass. It never touches
the database: the report service caches, logs and bills what `call()` returns.
"""

import asyncio
import dataclasses
import html
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
import orjson
from django.conf import settings
from django.utils import timezone

from leadgen.egress import BLOCKED_ADDRESS, EgressRefused

PROVIDER_EXTENSION = "leadgen_provider"
# For a provider missing from PROVIDER_TIMEOUTS (settings give each one its own).
DEFAULT_TIMEOUT_SECONDS = 20.0

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def hostname_is_valid(host: str) -> bool:
    """RFC 1123 host name with at least two labels (what a provider can be asked about)."""
    if not host or len(host) > 253:
        return False
    labels = host.rstrip(".").split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


class ProviderError(Exception):
    """A provider call that did not give data. `transient` errors may succeed when retried.

    `unavailable` errors are ours and the same for every lead (plan or quota used up, key missing or
    rejected): no lead should spend an attempt on them, and the batch pauses until someone fixes it.
    """

    def __init__(
        self,
        *,
        provider: str,
        code: str,
        message: str,
        transient: bool,
        retry_after: float | None = None,
        http_status: int | None = None,
        unavailable: bool = False,
    ):
        super().__init__(f"{provider}: {code}: {message}")
        self.provider = provider
        self.code = code
        self.message = message
        self.transient = transient
        self.retry_after = retry_after
        self.http_status = http_status
        self.unavailable = unavailable

    def __repr__(self) -> str:
        return f"ProviderError({self.provider!r}, {self.code!r}, transient={self.transient})"


@dataclass(frozen=True)
class LeadInfo:
    """The part of a lead the providers need, copied out of the ORM object before any async work."""

    # The Lead fields a report reads (these, and nothing else of the lead): a caller loading many leads
    # to report on may load only these.
    LEAD_FIELDS: ClassVar[tuple[str, ...]] = (
        "id",
        "company_name",
        "website",
        "domain",
        "email",
        "industry",
        "city",
        "state",
    )

    id: int
    company_name: str
    website: str
    domain: str
    email: str
    industry: str = ""
    city: str = ""
    state: str = ""

    @classmethod
    def from_lead(cls, lead) -> "LeadInfo":
        return cls(
            id=lead.pk,
            company_name=lead.company_name,
            website=lead.website,
            domain=lead.domain,
            email=lead.email,
            industry=lead.get_industry_display() if lead.industry else "",
            city=lead.city,
            state=lead.state,
        )


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    # Billed units of a provider that bills per line of its answer (SEMrush); one for the others.
    units: int = 1


@dataclass
class CallResult:
    """What one provider call gave: `data` (the provider's dataclass) or `error`."""

    provider: str
    data: Any = None
    error: ProviderError | None = None
    http_status: int | None = None
    duration_ms: int = 0
    usage: Usage = field(default_factory=Usage)

    @property
    def succeeded(self) -> bool:
        return self.error is None


def json_body(response: httpx.Response) -> Any:
    """The answer's JSON body; ValueError when it is not JSON in UTF-8 (a byte order mark is allowed).

    orjson: a provider's answers (PageSpeed's run most of all) are decoded several times faster than by
    the stdlib's json, and it refuses what a JSON column would refuse later (NaN, lone surrogates).
    """
    return orjson.loads(response.content.removeprefix(b"\xef\xbb\xbf"))


def json_error(response: httpx.Response) -> dict:
    """The `error` object of a JSON error body (Google's and OpenAI's shape), or {} for any other body."""
    try:
        error = json_body(response).get("error") or {}
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | None) -> float | None:
    """A Go-style duration as seconds ("20ms", "1s", "6m0s", "1h2m3.5s"), or a bare number of seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _DURATION_SECONDS[unit] for number, unit in parts)


_TAG = re.compile(r"<[^>]*>")


def one_line(text: str | None, limit: int = 160) -> str:
    """Provider wording fit to be stored and shown: one line, no markup, at most `limit` characters.

    An HTML page (a proxy's or load balancer's error page) says nothing the status does not: it gives "".
    """
    if not text:
        return ""
    text = str(text)
    if "<html" in text[:500].lower() or text.lstrip().startswith("<"):
        return ""
    text = " ".join(html.unescape(_TAG.sub(" ", text)).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _is_name_resolution_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    return "name or service not known" in text or "nodename nor servname" in text


class BaseProvider:
    """One provider. Subclasses set the class attributes and implement `build_request` and `parse`."""

    name: ClassVar[str]
    ttl: ClassVar[timedelta]
    default_base_url: ClassVar[str] = ""
    result_type: ClassVar[type]
    # Per-lead providers are cached by lead (`lead:<id>`), the others by domain.
    per_lead: ClassVar[bool] = False
    needs_domain: ClassVar[bool] = True
    follow_redirects: ClassVar[bool] = False
    # The setting holding the provider's API key; "" for a provider that needs none.
    key_setting: ClassVar[str] = ""
    # Fetches URLs a lead supplies (its website): live calls go through the egress policy's transport.
    fetches_lead_urls: ClassVar[bool] = False

    @property
    def label(self) -> str:
        from reports.models import Provider

        return str(Provider(self.name).label)

    def applies(self, *, has_website: bool, has_email: bool) -> bool:
        return has_website

    def subject(self, lead: LeadInfo) -> str:
        return f"lead:{lead.id}" if self.per_lead else lead.domain

    def base_url(self) -> str:
        overrides = getattr(settings, "PROVIDER_BASE_URLS", None) or {}
        return (overrides.get(self.name) or self.default_base_url).rstrip("/")

    def api_key(self) -> str:
        return str(getattr(settings, self.key_setting, "") or "").strip() if self.key_setting else ""

    def deadline(self) -> float:
        """Total seconds one call may take, connection to last byte (PROVIDER_TIMEOUTS)."""
        timeouts = getattr(settings, "PROVIDER_TIMEOUTS", None) or {}
        return float(timeouts.get(self.name) or DEFAULT_TIMEOUT_SECONDS)

    def build_request(self, lead: LeadInfo, context: dict[str, Any]) -> httpx.Request:
        raise NotImplementedError

    async def fetch(self, client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        """Send `request` and read the answer (within the call's deadline); may raise ProviderError."""
        response = await client.send(request, follow_redirects=self.follow_redirects)
        await response.aread()
        return response

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[Any, Usage]:
        """The provider's dataclass and token usage from a 2xx response; `self.error(...)` if unusable."""
        raise NotImplementedError

    def error(self, code: str, message: str, *, transient: bool = False, **kwargs) -> ProviderError:
        return ProviderError(provider=self.name, code=code, message=message, transient=transient, **kwargs)

    def error_message(self, response: httpx.Response) -> str:
        """The provider's own wording of an error response, one line, when it has one."""
        try:
            body = json_body(response)
        except ValueError:
            return one_line(response.text)
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and error.get("message"):
                return one_line(error["message"])
            if isinstance(error, str):
                return one_line(error)
        return ""

    def failure(self, response: httpx.Response, code: str, reason: str, **kwargs) -> ProviderError:
        """An error for `response` whose message is `reason` and the HTTP status, e.g.
        "plan usage limit reached (HTTP 429)"."""
        return self.error(
            code, f"{reason} (HTTP {response.status_code})", http_status=response.status_code, **kwargs
        )

    def retry_after(self, response: httpx.Response) -> float | None:
        return parse_retry_after(response.headers.get("Retry-After"))

    def classify(self, response: httpx.Response) -> ProviderError | None:
        """None for a usable response. Transient: 5xx and 429 (with `Retry-After`); unavailable: 401, a
        key rejected, the same for every lead; permanent: other 4xx. Providers refine this with what
        their error bodies say."""
        status = response.status_code
        if status < 400:
            return None
        message = self.error_message(response)
        if status == 401:
            return self.failure(
                response, "key_rejected", f"key rejected: {message or 'unauthorized'}", unavailable=True
            )
        if status == 429:
            return self.failure(
                response,
                "rate_limited",
                message or "too many requests",
                transient=True,
                retry_after=self.retry_after(response),
            )
        if status >= 500:
            return self.failure(
                response,
                f"http_{status}",
                message or "server error",
                transient=True,
                retry_after=self.retry_after(response),
            )
        return self.failure(response, f"http_{status}", message or "request refused")

    def classify_exception(self, exc: httpx.HTTPError) -> ProviderError:
        if isinstance(exc, EgressRefused):
            return self.error(BLOCKED_ADDRESS, exc.message)
        if isinstance(exc, httpx.TimeoutException):
            return self.error("timeout", f"no answer within {self.deadline():g} s", transient=True)
        if isinstance(exc, httpx.ConnectError) and _is_name_resolution_error(exc):
            return self.error("unreachable", one_line(str(exc)) or "host name does not resolve")
        if isinstance(exc, httpx.TransportError):
            return self.error("connection_error", one_line(str(exc)) or type(exc).__name__, transient=True)
        return self.error("http_error", one_line(str(exc)) or type(exc).__name__)

    def leads_own(self, error: ProviderError) -> bool:
        """Whether `error` is the lead's own problem (its site cannot be loaded, its domain is not
        valid): retrying cannot help, and a report can still be built without this provider. A
        website the egress policy refuses is not: that lead fails."""
        return (
            not error.transient
            and not error.unavailable
            and error.code not in ("bad_response", BLOCKED_ADDRESS)
        )

    def precheck(self, lead: LeadInfo) -> ProviderError | None:
        """An error found before any request: a key missing in live mode (ours, for every lead) or a
        lead the provider cannot be asked about."""
        if self.key_setting and settings.PROVIDER_MODE == "live" and not self.api_key():
            return self.error("key_missing", f"{self.key_setting} is not set", unavailable=True)
        if self.needs_domain and not hostname_is_valid(lead.domain):
            return self.error("malformed_domain", f"Not a valid host name: {lead.domain!r}")
        return None

    async def call(
        self, client: httpx.AsyncClient, lead: LeadInfo, context: dict[str, Any] | None = None
    ) -> CallResult:
        """One attempt: request, classify, parse. Never raises for provider trouble."""
        problem = self.precheck(lead)
        if problem is not None:
            return CallResult(provider=self.name, error=problem)
        request = self.build_request(lead, context or {})
        request.extensions[PROVIDER_EXTENSION] = self.name
        deadline = self.deadline()
        # httpx's timeouts bound each connect and read; the deadline bounds the whole call, redirects
        # and a slowly trickling body included.
        request.extensions["timeout"] = httpx.Timeout(deadline).as_dict()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(deadline):
                response = await self.fetch(client, request)
        except (httpx.HTTPError, TimeoutError, ProviderError) as exc:
            elapsed = int((time.perf_counter() - started) * 1000)
            if isinstance(exc, TimeoutError):
                error = self.error("timeout", f"no answer within {deadline:g} s", transient=True)
            elif isinstance(exc, ProviderError):
                error = exc
            else:
                error = self.classify_exception(exc)
            return CallResult(provider=self.name, error=error, duration_ms=elapsed)
        elapsed = int((time.perf_counter() - started) * 1000)
        response.extensions["leadgen_elapsed_ms"] = elapsed
        problem = self.classify(response)
        if problem is None:
            try:
                data, usage = self.parse(response, lead)
            except ProviderError as exc:
                problem = exc
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                problem = self.error("bad_response", one_line(f"unparseable answer: {exc}"))
        if problem is not None:
            problem.http_status = problem.http_status or response.status_code
            return CallResult(
                provider=self.name, error=problem, http_status=response.status_code, duration_ms=elapsed
            )
        return CallResult(
            provider=self.name, data=data, http_status=response.status_code, duration_ms=elapsed, usage=usage
        )

    def load(self, data: dict) -> Any:
        """The provider's dataclass from cached JSON."""
        return self.result_type.from_dict(data)


class ResultData:
    """Mixin for provider dataclasses: JSON round trip for the cache."""

    def to_dict(self) -> dict:
        # Shallow: the fields hold JSON values already (numbers, strings, lists and dicts of them).
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})
