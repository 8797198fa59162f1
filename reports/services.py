"""Writes of the reports app: generating a report for a lead, rendering its PDF."""

import asyncio
import base64
import functools
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpcore
import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.template.loader import get_template
from django.utils import timezone

from leadgen import egress
from leadgen.errors import ServiceError
from leads.models import Lead
from reports import sandbox, writes
from reports.breaker import breaker_open_for, breaker_record
from reports.content import CATEGORY_LABELS, report_content
from reports.limits import provider_hold_off, provider_slot
from reports.models import BrandProfile, Provider, ProviderCall, ProviderResult, Report, ShareLink
from reports.pricing import COST_QUANTUM, PriceInfo, call_cost
from reports.providers import PROVIDER_ORDER, PROVIDERS, ProviderError, applicable_providers
from reports.providers.base import CallResult, LeadInfo
from reports.selectors import cache_subject, fresh_results, price_table_recent
from reports.sharing import DEFAULT_EXPIRES_IN_DAYS, MAX_EXPIRES_IN_DAYS, share_key_new

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "reports/report.html"


@dataclass
class ReportOutcome:
    """What one report_generate call did. `cost_usd` is what this call paid (its ProviderCall costs)."""

    report: Report | None
    cost_usd: Decimal = Decimal("0")
    cost_breakdown: dict[str, str] = field(default_factory=dict)
    error: ProviderError | None = None
    # The sections the report lacks because of the lead's own problem (`partial=True` only), each
    # {"provider", "code", "message"}.
    warnings: list[dict[str, str]] = field(default_factory=list)


class _ThreadRuntime(threading.local):
    """One event loop and one httpx client per thread, kept between calls for connection reuse.

    The loop only runs inside report_generate (run_until_complete), so the thread stays a plain sync
    thread for the ORM between steps.
    """

    loop: asyncio.AbstractEventLoop | None = None
    client: httpx.AsyncClient | None = None
    # For the URLs leads supply (their websites): the egress policy's transport in live mode.
    lead_client: httpx.AsyncClient | None = None
    transport: object = None


_runtime = _ThreadRuntime()


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing and sends nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


class ProviderClient(httpx.AsyncClient):
    """The client of every provider call: it keeps no cookies. The provider APIs use none, and a lead's
    site must not leave any behind: a worker's client lives for the whole process, so its jar would hold
    the cookies of every site it ever audited (and httpx parses each answer's cookies into it)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies) -> None:
        pass


def _loop_and_clients() -> tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, httpx.AsyncClient]:
    if _runtime.loop is None or _runtime.loop.is_closed():
        _runtime.loop = asyncio.new_event_loop()
        _runtime.client = _runtime.lead_client = None
    transport = sandbox.provider_transport()
    if _runtime.client is None or _runtime.transport is not transport:
        for client in {_runtime.client, _runtime.lead_client} - {None}:
            _runtime.loop.run_until_complete(client.aclose())
        if transport is None:
            _runtime.client = ProviderClient(
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                headers={"User-Agent": "Leadgen/1.0"},
            )
            _runtime.lead_client = ProviderClient(
                transport=egress.EgressTransport(), trust_env=False, headers={"User-Agent": "Leadgen/1.0"}
            )
        else:
            _runtime.client = _runtime.lead_client = ProviderClient(transport=transport, trust_env=False)
        _runtime.transport = transport
    return _runtime.loop, _runtime.client, _runtime.lead_client


def _website_refusal(info: LeadInfo) -> ProviderError | None:
    """Why the egress policy refuses the lead's website, before any provider is called for the lead:
    its syntax, scheme, port or written address, and in live mode the addresses its name resolves to
    (the connection is vetted again when it is made)."""
    website = PROVIDERS[Provider.WEBSITE]
    url = website.url_of(info)
    try:
        if sandbox.provider_transport() is None:
            egress.url_vet(url)
        else:
            egress.url_check(url)
    except egress.EgressRefused as exc:
        return website.error(egress.BLOCKED_ADDRESS, exc.message)
    except httpcore.ConnectError:
        # A name that does not resolve: the audit itself reports the site unreachable.
        return None
    return None


async def _call(
    name: str,
    client: httpx.AsyncClient,
    lead: LeadInfo,
    context: dict,
    *,
    lead_client: httpx.AsyncClient | None = None,
) -> CallResult:
    """One provider call with its circuit breaker and limits; a provider fetching the lead's own URLs
    uses `lead_client` (the egress policy's transport in live mode)."""
    wait = breaker_open_for(name)
    if wait > 0:
        # The provider is down: answer at once, so the lead waits out the cool-down instead of a timeout.
        error = ProviderError(
            provider=name,
            code="circuit_open",
            message=f"failing repeatedly; circuit open for {wait:.0f} s",
            transient=True,
            retry_after=wait,
        )
        return CallResult(provider=name, error=error)
    provider = PROVIDERS[name]
    if provider.fetches_lead_urls and lead_client is not None:
        client = lead_client
    async with provider_slot(name):
        result = await provider.call(client, lead, context)
    breaker_record(name, result.error)
    error = result.error
    if error is not None and error.transient and error.code == "rate_limited":
        # The provider asked the whole account to slow down, not just this lead.
        provider_hold_off(name, error.retry_after)
    return result


class _ReportRun:
    def __init__(
        self,
        *,
        lead: Lead,
        batch_lead_id: int | None,
        attempt: int,
        at: datetime | None,
        cache_lookup: bool,
        partial: bool = False,
        brand: BrandProfile | None = None,
    ):
        self.lead = lead
        self.brand = brand
        self.cache_lookup = cache_lookup
        self.partial = partial
        self.info = LeadInfo.from_lead(lead)
        self.batch_lead_id = batch_lead_id
        self.attempt = attempt
        self.now = at or timezone.now()
        self.prices: dict[str, PriceInfo] | None = None
        self.data: dict[str, object] = {}
        self.fetched_at: dict[str, datetime] = {}
        self.cached: set[str] = set()
        self.costs: dict[str, Decimal] = {}
        self.errors: list[ProviderError] = []
        # The lead's own problems, when the report is built without their sections (partial).
        self.missing: list[ProviderError] = []
        # Rows for writes.insert, by field attname.
        self.unsaved_calls: list[dict] = []
        self.unsaved_results: list[dict] = []

    def run(self) -> ReportOutcome:
        names = applicable_providers(has_website=bool(self.lead.website), has_email=bool(self.lead.email))
        refusal = _website_refusal(self.info) if Provider.WEBSITE in names else None
        if refusal is not None:
            # Nothing is sent for this lead, to its site or to any provider about it.
            self.prices = price_table_recent(at=self.now)
            self._record([CallResult(provider=Provider.WEBSITE, error=refusal)])
            self.errors = [refusal]
            self.missing = []
            self._flush()
            return self._outcome(report=None, error=refusal)
        subjects = {
            name: cache_subject(name, lead_id=self.info.id, domain=self.info.domain)
            for name in names
            if PROVIDERS[name].per_lead or self.info.domain
        }
        if self.cache_lookup:
            self._reuse(fresh_results(subjects=subjects, at=self.now), subjects)
        first = [name for name in names if name not in self.data and name != Provider.LLM]
        if first:
            self._fetch(first)
        if not self.errors and Provider.LLM in names and Provider.LLM not in self.data:
            # Its paid result is committed together with the report (or alone on failure).
            self._fetch([Provider.LLM])
        if self.errors:
            self._flush()
            return self._outcome(report=None, error=self._worst_error())
        try:
            report = self._save_report()
        except BaseException:
            self._flush()
            raise
        return self._outcome(report=report)

    def _reuse(self, rows: dict[str, dict], subjects: dict[str, str]) -> None:
        for name, row in rows.items():
            try:
                self.data[name] = PROVIDERS[name].load(row["data"])
            except TypeError:
                logger.warning("Ignoring cached %s data for %s: it no longer fits", name, subjects[name])
                continue
            self.fetched_at[name] = row["fetched_at"]
            self.cached.add(name)
            self.costs[name] = Decimal("0")
            self.unsaved_calls.append(self._call_row(name, status=ProviderCall.Status.CACHED))

    def _fetch(self, names: list[str]) -> None:
        """Run the providers concurrently, committing what they paid for as it arrives.

        Each group of paid results that arrives while other calls still run is committed at once. The
        last group of a step is committed by the next write: while the next step's calls are in flight
        (they get one turn of the loop to go out first), or with the report itself. So no step waits
        for a commit before its calls start, and a crash loses at most the results of the last moments,
        as it always could.
        """
        if self.prices is None:
            self.prices = price_table_recent(at=self.now)
        loop, client, lead_client = _loop_and_clients()
        context = dict(self.data)
        token = sandbox.current_attempt.set(self.attempt)
        try:
            pending = {
                loop.create_task(_call(name, client, self.info, context, lead_client=lead_client))
                for name in names
            }
        finally:
            sandbox.current_attempt.reset(token)
        try:
            if self._unwritten_paid():
                loop.run_until_complete(asyncio.sleep(0))
                self._flush()
            while pending:
                done, pending = loop.run_until_complete(
                    asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                )
                self._record([task.result() for task in done])
                if pending and self._unwritten_paid():
                    self._flush()
        except BaseException:
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending))
            raise

    def _unwritten_paid(self) -> bool:
        """Whether something paid for (a cache row, or a call that cost money) is not written yet."""
        return bool(self.unsaved_results) or any(call["cost_usd"] > 0 for call in self.unsaved_calls)

    def _call_row(self, name: str, *, status: str, result: CallResult | None = None, cost=Decimal("0")):
        """A ProviderCall row."""
        error = result.error if result is not None else None
        return {
            "provider": name,
            "lead_id": self.info.id,
            "batch_lead_id": self.batch_lead_id,
            "attempt": self.attempt,
            "status": str(status),
            "http_status": result.http_status if result is not None else None,
            "duration_ms": result.duration_ms if result is not None else 0,
            "cost_usd": cost,
            "input_tokens": result.usage.input_tokens if result is not None else 0,
            "output_tokens": result.usage.output_tokens if result is not None else 0,
            "error_code": error.code[:50] if error else "",
            "error": error.message if error else "",
            "transient": bool(error and error.transient),
            "created_at": self.now,
        }

    def _record(self, results: list[CallResult]) -> None:
        """Log the calls and keep their data, to be written by `_flush` or with the report."""
        for result in results:
            name = result.provider
            price = self.prices[name]
            cost = call_cost(
                price,
                succeeded=result.succeeded,
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
                units=result.usage.units,
            )
            self.costs[name] = cost
            if result.succeeded:
                provider = PROVIDERS[name]
                self.data[name] = result.data
                self.fetched_at[name] = self.now
                self.unsaved_results.append(
                    {
                        "provider": name,
                        "subject": provider.subject(self.info),
                        "data": result.data.to_dict(),
                        "fetched_at": self.now,
                        "expires_at": self.now + provider.ttl,
                        "cost_usd": cost,
                    }
                )
                status = ProviderCall.Status.SUCCEEDED
            else:
                if self.partial and PROVIDERS[name].leads_own(result.error):
                    self.missing.append(result.error)
                else:
                    self.errors.append(result.error)
                status = ProviderCall.Status.FAILED
            self.unsaved_calls.append(self._call_row(name, status=status, result=result, cost=cost))

    def _pending_writes(self) -> list[writes.Statement]:
        """The cache and call-log rows not yet written, as INSERTs."""
        statements = []
        if self.unsaved_results:
            # In key order, so two reports upserting the same rows (leads sharing a domain) lock them in
            # the same order and cannot deadlock.
            self.unsaved_results.sort(key=lambda result: (result["provider"], result["subject"]))
            statements.append(
                writes.insert(
                    ProviderResult,
                    self.unsaved_results,
                    conflict=("provider", "subject"),
                    update=("data", "fetched_at", "expires_at", "cost_usd"),
                )
            )
        if self.unsaved_calls:
            statements.append(writes.insert(ProviderCall, self.unsaved_calls))
        return statements

    def _written(self) -> None:
        self.unsaved_results, self.unsaved_calls = [], []

    def _flush(self) -> None:
        writes.run(self._pending_writes())
        self._written()

    def _worst_error(self) -> ProviderError:
        """An unavailable error if any (ours, the same for every lead: the batch pauses rather than the
        lead failing), else a permanent one (retrying cannot help), else the transient one asking to
        wait longest."""
        errors = sorted(self.errors, key=lambda error: PROVIDER_ORDER.index(error.provider))
        unavailable = [error for error in errors if error.unavailable]
        if unavailable:
            return unavailable[0]
        permanent = [error for error in errors if not error.transient]
        if permanent:
            return permanent[0]
        return max(errors, key=lambda error: error.retry_after or 0.0)

    def _save_report(self) -> Report:
        content = report_content(
            lead=self.info,
            data=self.data,
            fetched_at=self.fetched_at,
            cached=self.cached,
            generated_at=self.now,
            provider_mode=settings.PROVIDER_MODE,
            missing={error.provider: error.message for error in self.missing},
        )
        report = Report(
            lead=self.lead,
            provider_mode=settings.PROVIDER_MODE,
            overall_score=content["overall_score"],
            scores=content["scores"],
            data=content,
            cost_usd=sum(self.costs.values(), Decimal("0")),
            brand=self.brand,
            created_at=self.now,
        )
        report.html = report_render_html(report=report)
        # The last results, their calls, the lead's stamp and the report, together.
        stamp = writes.Statement(
            "UPDATE leads_lead SET last_reported_at = %s WHERE id = %s",
            [connection.ops.adapt_datetimefield_value(self.now), self.lead.pk],
        )
        report.pk = writes.run(
            [*self._pending_writes(), stamp, writes.insert(Report, [writes.model_row(report)])],
            returning_id=True,
        )
        report._state.adding, report._state.db = False, "default"
        self._written()
        self.lead.last_reported_at = self.now
        return report

    def _outcome(self, *, report: Report | None, error: ProviderError | None = None) -> ReportOutcome:
        return ReportOutcome(
            report=report,
            cost_usd=sum(self.costs.values(), Decimal("0")).quantize(COST_QUANTUM),
            cost_breakdown={name: str(cost.quantize(COST_QUANTUM)) for name, cost in self.costs.items()},
            error=error,
            warnings=[
                {"provider": missing.provider, "code": missing.code, "message": missing.message}
                for missing in sorted(
                    self.missing, key=lambda missing: PROVIDER_ORDER.index(missing.provider)
                )
            ]
            if report is not None
            else [],
        )


def report_generate(
    *,
    lead: Lead,
    batch_lead_id: int | None = None,
    attempt: int = 1,
    at: datetime | None = None,
    cache_lookup: bool = True,
    partial: bool = False,
    brand: BrandProfile | None = None,
) -> ReportOutcome:
    """Build a report for `lead`: reuse fresh cached provider data at $0, call the other applicable
    providers concurrently, log and bill every call, and save the Report with its rendered HTML.

    Every paid result is cached and logged (with batch_lead_id and attempt) and committed as soon as
    the next write can take it (while the next provider calls are in flight, or with the report), so a
    retry or crash recovery reuses it instead of paying again.
    If any provider fails the outcome carries the error (transient only if every failure was) and no
    report; the caller decides on retries. `at` (default now) is the call time: prices in force and
    cache freshness are judged at it. `cache_lookup=False` is for a caller that has just seen nothing
    in the cache for the lead: every provider is called without looking. `partial=True`: a provider
    failing for the lead's own reason (its site cannot be loaded; see BaseProvider.leads_own) does not
    fail the report; the report is built from the providers that answered, marks the missing section,
    and the outcome lists it in `warnings`. `brand` (None: unbranded) is the profile the report is
    rendered with. Sync; safe to call from worker threads, not from a running loop.
    """
    return _ReportRun(
        lead=lead,
        batch_lead_id=batch_lead_id,
        attempt=attempt,
        at=at,
        cache_lookup=cache_lookup,
        partial=partial,
        brand=brand,
    ).run()


async def report_generate_async(
    *, lead: Lead, batch_lead_id: int | None = None, attempt: int = 1, at: datetime | None = None
) -> ReportOutcome:
    """report_generate for async callers (runs it in Django's sync thread)."""
    return await sync_to_async(report_generate)(
        lead=lead, batch_lead_id=batch_lead_id, attempt=attempt, at=at
    )


@transaction.atomic
def brand_profile_save(*, profile: BrandProfile) -> BrandProfile:
    """Save a brand profile; making it the default takes the mark from the profile that had it."""
    if profile.is_default:
        BrandProfile.objects.select_for_update().filter(is_default=True).exclude(pk=profile.pk).update(
            is_default=False
        )
    profile.save()
    return profile


def _expiry(expires_in_days) -> timedelta:
    if expires_in_days is None:
        return timedelta(days=DEFAULT_EXPIRES_IN_DAYS)
    if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int):
        raise ServiceError(fields={"expires_in_days": ["Enter a whole number of days."]})
    if not 1 <= expires_in_days <= MAX_EXPIRES_IN_DAYS:
        raise ServiceError(fields={"expires_in_days": [f"Must be from 1 to {MAX_EXPIRES_IN_DAYS}."]})
    return timedelta(days=expires_in_days)


def share_link_create(*, report: Report, user, expires_in_days: int | None = None) -> ShareLink:
    """A new link to `report` that opens without login for `expires_in_days` (default 30)."""
    now = timezone.now()
    return ShareLink.objects.create(
        report=report,
        key=share_key_new(),
        created_by=user if user is not None and user.is_authenticated else None,
        created_at=now,
        expires_at=now + _expiry(expires_in_days),
    )


@transaction.atomic
def share_links_ensure(*, report_ids: list[int], user, expires_in_days: int | None = None) -> int:
    """A link for each of the reports that has no active one (a repeat creates nothing); returns how
    many were created."""
    now = timezone.now()
    expiry = _expiry(expires_in_days)
    creator = user if user is not None and user.is_authenticated else None
    covered = set(
        ShareLink.objects.filter(
            report_id__in=report_ids, revoked_at__isnull=True, expires_at__gt=now
        ).values_list("report_id", flat=True)
    )
    links = [
        ShareLink(
            report_id=report_id,
            key=share_key_new(),
            created_by=creator,
            created_at=now,
            expires_at=now + expiry,
        )
        for report_id in dict.fromkeys(report_ids)
        if report_id not in covered
    ]
    ShareLink.objects.bulk_create(links, batch_size=1000)
    return len(links)


def share_link_revoke(*, link: ShareLink, user) -> ShareLink:
    """Revoke the link: from this commit on it opens nothing (every request reads the row)."""
    ShareLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    link.refresh_from_db(fields=["revoked_at"])
    return link


LOGO_CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}


@functools.lru_cache(maxsize=8)
def _logo_data_uri(name: str, updated_at: datetime) -> str:
    """The logo file as a data URI, read once per version of the profile (`updated_at`)."""
    try:
        with default_storage.open(name, "rb") as logo:
            content = logo.read()
    except OSError:
        logger.warning("Brand logo %s is missing; the report is rendered without it", name)
        return ""
    content_type = LOGO_CONTENT_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")
    return f"data:{content_type};base64,{base64.b64encode(content).decode()}"


def _text_colour_on(hex_colour: str) -> str:
    """Black or white, whichever reads better on `hex_colour` (WCAG relative luminance)."""

    def channel(value: int) -> float:
        value = value / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)
    # Contrast against white is 1.05 / (L + 0.05), against black (L + 0.05) / 0.05: equal at L = 0.179.
    return "#111111" if luminance > 0.179 else "#ffffff"


def _brand_context(brand: BrandProfile | None) -> dict | None:
    if brand is None:
        return None
    return {
        "agency_name": brand.agency_name,
        "logo_src": _logo_data_uri(brand.logo.name, brand.updated_at) if brand.logo else "",
        "accent": brand.accent_colour.lower(),
        "accent_text": _text_colour_on(brand.accent_colour),
        "contact_line": brand.contact_line,
        "cta_label": brand.cta_label,
        "cta_url": brand.cta_url,
        "footer": brand.footer,
    }


def _screenshot_data_uri(screenshot: dict | None) -> str:
    if not screenshot:
        return ""
    try:
        with default_storage.open(screenshot["image_path"], "rb") as image:
            content = image.read()
    except (OSError, KeyError):
        return ""
    return f"data:{screenshot['content_type']};base64,{base64.b64encode(content).decode()}"


def _seo_rows(seo: dict) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    if "title" in seo:
        rows += [
            ("Page title", seo["title"] or "(missing)"),
            ("Meta description", seo["meta_description"] or "(missing)"),
            ("Main heading", seo["h1"] or "(missing)"),
            ("HTTPS", "yes" if seo["https"] else "no"),
            ("Mobile viewport", "yes" if seo["mobile_viewport"] else "no"),
            ("Homepage", f"HTTP {seo['status_code']}, {seo['response_time_ms']} ms, {seo['page_kib']} KiB"),
        ]
    if seo.get("search_data_found"):
        rows += [
            ("Search rank", seo["search_rank"] or "-"),
            ("Organic keywords", seo["organic_keywords"]),
            ("Organic visits / month", seo["organic_traffic"]),
            ("Paid keywords", seo["paid_keywords"]),
        ]
    elif "search_data_found" in seo:
        rows.append(("Search visibility", "No search data for this domain"))
    return rows


def _utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(UTC)


def report_render_html(*, report: Report) -> str:
    """The self-contained HTML of a report (inline CSS, screenshot as a data URI)."""
    data = report.data
    scores = [
        {"key": key, "label": label, "value": data["scores"][key]}
        for key, label in CATEGORY_LABELS.items()
        if key in data.get("scores", {})
    ]
    context = {
        "report": data,
        "scores": scores,
        "seo_rows": _seo_rows(data.get("seo", {})),
        "sources": [
            {**source, "fetched_at": _utc(source["fetched_at"])} for source in data.get("sources", [])
        ],
        "generated_at": _utc(data["generated_at"]),
        "screenshot_src": _screenshot_data_uri(data.get("screenshot")),
        "sandbox": data.get("provider_mode") == "sandbox",
        "brand": _brand_context(report.brand),
    }
    return get_template(TEMPLATE_NAME, using="jinja2").render(context)


def report_pdf_ensure(*, report: Report) -> Report:
    """The report with its PDF, rendered from the stored HTML with WeasyPrint on first use and kept.

    Rendered once: the first caller renders under the report's row lock; callers that arrive meanwhile
    wait for it and get its file instead of rendering their own.
    """
    if report.pdf:
        return report
    with transaction.atomic():
        locked = Report.objects.select_for_update().only("html", "pdf").get(pk=report.pk)
        return _report_pdf_render(report=locked)


def _report_pdf_render(*, report: Report) -> Report:
    """Render and keep the PDF unless the report has one; the caller holds the report's row lock."""
    if report.pdf:
        return report
    from weasyprint import HTML

    from reports.pdf import pdf_url_fetcher

    pdf = HTML(string=report.html, url_fetcher=pdf_url_fetcher()).write_pdf(pdf_variant="pdf/ua-1")
    report.pdf.save(f"report-{report.pk}.pdf", ContentFile(pdf), save=False)
    Report.objects.filter(pk=report.pk).update(pdf=report.pdf.name)
    return report
