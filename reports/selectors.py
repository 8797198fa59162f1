"""Reads of the reports app: prices in force, fresh cache entries, provider statistics."""

import time
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Avg, CharField, Count, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from leads.models import Lead
from reports import sandbox
from reports.models import BrandProfile, Provider, ProviderCall, ProviderPrice, ProviderResult, ShareLink
from reports.pricing import (
    DEFAULT_PRICES,
    LIVE_EXPECTED_FAILURE_RATE,
    LIVE_EXPECTED_LATENCY_MS,
    LLM_EXPECTED_INPUT_TOKENS,
    LLM_EXPECTED_OUTPUT_TOKENS,
    PriceInfo,
    ProviderStats,
)
from reports.providers import PROVIDERS, applicable_providers
from reports.sharing import share_key_from_token

# Leads per cache query: keeps the number of bound parameters far below every database's limit while a
# batch of the default maximum size (10,000 leads) still takes a single query.
CACHE_QUERY_CHUNK = 10_000


def price_table(*, at: datetime | None = None) -> dict[str, PriceInfo]:
    """The price in force at `at` (default now) for every provider: the row with the latest
    effective_from <= at. A provider without such a row falls back to the shipped default price."""
    return _table_at(_price_rows(), at or timezone.now())


def _price_rows() -> list[tuple]:
    """Every price row (a handful per provider), newest first per provider."""
    return list(
        ProviderPrice.objects.order_by("provider", "-effective_from").values_list(
            "provider",
            "unit_price_usd",
            "input_price_per_million_usd",
            "output_price_per_million_usd",
            "bills_failures",
            "effective_from",
        )
    )


def _table_at(rows: list[tuple], at: datetime) -> dict[str, PriceInfo]:
    table: dict[str, PriceInfo] = {}
    for provider, unit, input_price, output_price, bills_failures, effective_from in rows:
        if provider not in table and effective_from <= at:
            table[provider] = PriceInfo(provider, unit, input_price, output_price, bills_failures)
    for provider in PROVIDERS:
        table.setdefault(provider, DEFAULT_PRICES[provider])
    return table


# How long a process reuses a price table it read (PRICE_TABLE_SECONDS): a price row created or edited
# in another process applies to this one's calls at most that much later. Rows becoming effective at a
# known time apply on time (the table is only reused before the next row's effective_from).
PRICE_TABLE_SECONDS = 5.0
_price_memo: tuple[float, datetime | None, datetime | None, dict[str, PriceInfo]] | None = None


def price_table_recent(*, at: datetime | None = None) -> dict[str, PriceInfo]:
    """price_table(at=at), reused within this process for up to PRICE_TABLE_SECONDS.

    For the report service, which needs the prices for every report it builds: one query per process
    every few seconds instead of one per report.
    """
    global _price_memo
    at = at or timezone.now()
    memo = _price_memo
    if memo is not None:
        loaded, valid_from, valid_until, table = memo
        if (
            time.monotonic() - loaded < PRICE_TABLE_SECONDS
            and (valid_from is None or valid_from <= at)
            and (valid_until is None or at < valid_until)
        ):
            return table
    loaded = time.monotonic()
    rows = _price_rows()
    starts = [row[-1] for row in rows]
    valid_from = max((start for start in starts if start <= at), default=None)
    valid_until = min((start for start in starts if start > at), default=None)
    table = _table_at(rows, at)
    _price_memo = (loaded, valid_from, valid_until, table)  # one assignment: threads see old or new
    return table


def price_table_forget(**_kwargs) -> None:
    """Drop this process's reused price table (on every price row saved or deleted here)."""
    global _price_memo
    _price_memo = None


def cache_subject(provider: str, *, lead_id: int, domain: str) -> str:
    return f"lead:{lead_id}" if PROVIDERS[provider].per_lead else domain


_FRESH_RESULTS = (
    "SELECT provider, subject, data, fetched_at FROM reports_providerresult"
    " WHERE expires_at > %s AND ({pairs})"
)


def fresh_results(*, subjects: dict[str, str], at: datetime) -> dict[str, dict]:
    """The fresh cache entries for {provider: subject}, in one query: {provider: {"data", "fetched_at"}}."""
    if not subjects:
        return {}
    # Plain SQL: every report asks, and compiling the query cost more than running it. The model's
    # own field converters turn the columns into what the ORM would return.
    pairs = " OR ".join(["(provider = %s AND subject = %s)"] * len(subjects))
    sql = _FRESH_RESULTS.format(pairs=pairs)
    params = [connection.ops.adapt_datetimefield_value(at)]
    params += [value for pair in subjects.items() for value in pair]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = [
            (provider, subject, _convert("data", data), _convert("fetched_at", fetched_at))
            for provider, subject, data, fetched_at in cursor.fetchall()
        ]
    return {
        provider: {"data": data, "fetched_at": fetched_at}
        for provider, subject, data, fetched_at in rows
        if subjects.get(provider) == subject
    }


def _convert(name: str, value):
    """A ProviderResult column read with plain SQL, as the ORM would return it."""
    column = ProviderResult._meta.get_field(name).cached_col
    for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
        value = converter(value, column, connection)
    return value


def fresh_cache_pairs(*, leads: Iterable[Lead], at: datetime | None = None) -> set[tuple[int, str]]:
    """The (lead_id, provider) pairs, among the providers that apply to each lead, whose data is fresh
    in the cache at `at` (default now): reports for them reuse it at $0.

    One query for a QuerySet (as subqueries) or for up to CACHE_QUERY_CHUNK leads given as objects.
    """
    return set(fresh_cache(leads=leads, at=at))


def fresh_cache(*, leads: Iterable[Lead], at: datetime | None = None) -> dict[tuple[int, str], datetime]:
    """fresh_cache_pairs with when each pair's cache entry expires: {(lead_id, provider): expires_at}."""
    at = at or timezone.now()
    domain_providers = [name for name, provider in PROVIDERS.items() if not provider.per_lead]
    lead_providers = [name for name, provider in PROVIDERS.items() if provider.per_lead]
    if isinstance(leads, QuerySet):
        rows = list(leads.values_list("id", "domain", "email"))
        lead_keys = leads.annotate(
            cache_key=Concat(Value("lead:"), Cast("id", CharField()), output_field=CharField())
        ).values("cache_key")
        found = _fresh_subjects(
            domain_providers,
            leads.exclude(domain="").values("domain"),
            lead_providers,
            lead_keys,
            at,
        )
    else:
        rows = [(lead.pk, lead.domain, lead.email) for lead in leads]
        found = {}
        for start in range(0, len(rows), CACHE_QUERY_CHUNK):
            chunk = rows[start : start + CACHE_QUERY_CHUNK]
            found |= _fresh_subjects(
                domain_providers,
                sorted({domain for _, domain, _ in chunk if domain}),
                lead_providers,
                [f"lead:{lead_id}" for lead_id, _, _ in chunk],
                at,
            )
    pairs = {}
    for lead_id, domain, email in rows:
        for provider in applicable_providers(has_website=bool(domain), has_email=bool(email)):
            expires_at = found.get((provider, cache_subject(provider, lead_id=lead_id, domain=domain)))
            if expires_at is not None:
                pairs[(lead_id, provider)] = expires_at
    return pairs


def _fresh_subjects(
    domain_providers, domains, lead_providers, lead_keys, at
) -> dict[tuple[str, str], datetime]:
    rows = ProviderResult.objects.filter(
        Q(provider__in=domain_providers, subject__in=domains)
        | Q(provider__in=lead_providers, subject__in=lead_keys),
        expires_at__gt=at,
    ).values_list("provider", "subject", "expires_at")
    return {(provider, subject): expires_at for provider, subject, expires_at in rows}


def provider_stats(*, since: datetime) -> dict[str, ProviderStats]:
    """Per provider, from the calls logged since `since` (cache reuses excluded): how many, the share of
    transient failures, mean latency and mean LLM token usage. A provider without history gets the
    defaults: in sandbox mode the sandbox's own parameters, in live mode typical live figures."""
    rows = (
        ProviderCall.objects.filter(created_at__gte=since)
        .exclude(status=ProviderCall.Status.CACHED)
        .values("provider")
        .annotate(
            calls=Count("id"),
            transient_failures=Count("id", filter=Q(status=ProviderCall.Status.FAILED, transient=True)),
            mean_latency=Avg("duration_ms"),
            mean_input=Avg("input_tokens", filter=Q(status=ProviderCall.Status.SUCCEEDED)),
            mean_output=Avg("output_tokens", filter=Q(status=ProviderCall.Status.SUCCEEDED)),
        )
    )
    history = {row["provider"]: row for row in rows}
    sandboxed = settings.PROVIDER_MODE == "sandbox"
    stats = {}
    for provider in PROVIDERS:
        is_llm = provider == Provider.LLM
        default_input = LLM_EXPECTED_INPUT_TOKENS if is_llm else 0.0
        default_output = LLM_EXPECTED_OUTPUT_TOKENS if is_llm else 0.0
        row = history.get(provider)
        if row and row["calls"]:
            stats[provider] = ProviderStats(
                calls=row["calls"],
                transient_failure_rate=row["transient_failures"] / row["calls"],
                mean_latency_ms=float(row["mean_latency"] or 0.0),
                mean_input_tokens=float(row["mean_input"])
                if row["mean_input"] is not None
                else default_input,
                mean_output_tokens=float(row["mean_output"])
                if row["mean_output"] is not None
                else default_output,
            )
            continue
        stats[provider] = ProviderStats(
            calls=0,
            transient_failure_rate=sandbox.failure_rate(provider)
            if sandboxed
            else LIVE_EXPECTED_FAILURE_RATE,
            mean_latency_ms=float(settings.SANDBOX_LATENCY_MS)
            if sandboxed
            else LIVE_EXPECTED_LATENCY_MS[provider],
            mean_input_tokens=default_input,
            mean_output_tokens=default_output,
        )
    return stats


def brand_default() -> BrandProfile | None:
    """The default brand profile, or None when no profile is marked default."""
    return BrandProfile.objects.filter(is_default=True).first()


def share_link_resolve(*, token: str) -> ShareLink | None:
    """The active link a token opens, with its report, or None (bad signature, unknown, expired or
    revoked: the caller answers all of these the same way)."""
    key = share_key_from_token(token)
    if key is None:
        return None
    return (
        ShareLink.objects.select_related("report")
        .filter(key=key, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


def share_links_of_report(*, report_id: int) -> QuerySet[ShareLink]:
    return ShareLink.objects.filter(report_id=report_id).order_by("-created_at", "-id")
