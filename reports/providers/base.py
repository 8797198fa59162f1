"""What every provider has in common: the request/parse/classify cycle, errors and timing.

A provider is a stateless object. `call()` builds the provider's HTTP request, sends it through the
client it is given (live httpx transport, the sandbox transport, or a test transport: the code here does
not know which), classifies failures and parses the body into the provider's dataclass. It never touches
the database: the report service caches, logs and bills what `call()` returns.
"""

import dataclasses
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
from django.conf import settings
from django.utils import timezone

PROVIDER_EXTENSION = "leadgen_provider"

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

    def build_request(self, lead: LeadInfo, context: dict[str, Any]) -> httpx.Request:
        raise NotImplementedError

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[Any, Usage]:
        """The provider's dataclass and token usage from a 2xx response; `self.error(...)` if unusable."""
        raise NotImplementedError

    def error(self, code: str, message: str, *, transient: bool = False, **kwargs) -> ProviderError:
        return ProviderError(provider=self.name, code=code, message=message, transient=transient, **kwargs)

    def error_message(self, response: httpx.Response) -> str:
        """The provider's own wording of an error response, when it has one."""
        try:
            body = response.json()
        except ValueError:
            return response.text[:200]
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])[:200]
            if isinstance(error, str):
                return error[:200]
        return response.text[:200]

    def classify(self, response: httpx.Response) -> ProviderError | None:
        """Transient: 5xx and 429 (with `Retry-After`); permanent: other 4xx. None for a usable response."""
        status = response.status_code
        if status < 400:
            return None
        message = self.error_message(response)
        if status == 429:
            return self.error(
                "rate_limited",
                message or "Too many requests",
                transient=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                http_status=status,
            )
        if status >= 500:
            return self.error(
                f"http_{status}",
                message or "Server error",
                transient=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                http_status=status,
            )
        return self.error(f"http_{status}", message or "Request refused", http_status=status)

    def classify_exception(self, exc: httpx.HTTPError) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException):
            return self.error("timeout", str(exc) or "Timed out", transient=True)
        if isinstance(exc, httpx.ConnectError) and _is_name_resolution_error(exc):
            return self.error("unreachable", str(exc) or "Host name does not resolve")
        if isinstance(exc, httpx.TransportError):
            return self.error("connection_error", str(exc) or type(exc).__name__, transient=True)
        return self.error("http_error", str(exc) or type(exc).__name__)

    def precheck(self, lead: LeadInfo) -> ProviderError | None:
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
        request.extensions["timeout"] = httpx.Timeout(settings.PROVIDER_TIMEOUT_SECONDS).as_dict()
        started = time.perf_counter()
        try:
            response = await client.send(request, follow_redirects=self.follow_redirects)
            await response.aread()
        except httpx.HTTPError as exc:
            elapsed = int((time.perf_counter() - started) * 1000)
            return CallResult(provider=self.name, error=self.classify_exception(exc), duration_ms=elapsed)
        elapsed = int((time.perf_counter() - started) * 1000)
        response.extensions["leadgen_elapsed_ms"] = elapsed
        problem = self.classify(response)
        if problem is None:
            try:
                data, usage = self.parse(response, lead)
            except ProviderError as exc:
                problem = exc
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                problem = self.error("bad_response", f"Unparseable response: {exc}")
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
