"""Cost arithmetic for batches: the preview and a lead's worst case. Pure code, no ORM.

Inputs are plain data gathered by the selectors with a constant number of queries: one `LeadFacts` per
lead, the price table (`reports.pricing.PriceInfo` per provider), the provider statistics
(`reports.pricing.ProviderStats`) and the set of (lead id, provider) pairs whose data is cached.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal
from typing import NamedTuple, Protocol

from leadgen.display import usd

ZERO = Decimal("0")
MILLION = Decimal("1000000")
LEDGER_PLACES = Decimal("0.000001")
DISPLAY_PLACES = Decimal("0.0001")
LLM = "llm"

SKIP_RECENT_REPORT = "recent_report"


class LeadFacts(NamedTuple):
    lead_id: int
    has_website: bool
    has_email: bool
    last_reported_at: datetime | None


class Price(Protocol):
    provider: str
    unit_price_usd: Decimal
    input_price_per_million_usd: Decimal
    output_price_per_million_usd: Decimal
    bills_failures: bool


class Stats(Protocol):
    calls: int
    transient_failure_rate: float
    mean_latency_ms: float
    mean_input_tokens: float
    mean_output_tokens: float


def money(value: Decimal) -> str:
    """Money as the 4-place decimal string the API, the page and the socket show."""
    return str(Decimal(value).quantize(DISPLAY_PLACES, rounding=ROUND_HALF_UP))


def ledger(value: Decimal) -> Decimal:
    return Decimal(value).quantize(LEDGER_PLACES, rounding=ROUND_HALF_UP)


def call_price(price: Price, *, input_tokens: float = 0, output_tokens: float = 0) -> Decimal:
    """What one successful call costs: the unit price plus tokens at the per-million prices."""
    cost = price.unit_price_usd
    if input_tokens:
        cost += Decimal(str(input_tokens)) * price.input_price_per_million_usd / MILLION
    if output_tokens:
        cost += Decimal(str(output_tokens)) * price.output_price_per_million_usd / MILLION
    return cost


def worst_case_cost(
    *,
    providers: Iterable[str],
    prices: Mapping[str, Price],
    cached: Iterable[str] = (),
    max_input_tokens: int,
    max_output_tokens: int,
) -> Decimal:
    """The most one attempt of a lead can cost: every non-cached provider paid, the LLM at its token caps.

    Cached providers cost nothing. This is what the budget ledger reserves before a lead's paid calls.
    """
    cached = set(cached)
    total = ZERO
    for provider in providers:
        if provider in cached or provider not in prices:
            continue
        cost = call_price(prices[provider], input_tokens=max_input_tokens, output_tokens=max_output_tokens)
        total += cost.quantize(LEDGER_PLACES, rounding=ROUND_UP)
    return total


@dataclass(frozen=True)
class ProviderLine:
    provider: str
    calls: int
    cached_calls: int
    unit_price_usd: Decimal
    cost_usd: Decimal

    def as_dict(self) -> dict:
        return {
            "provider": self.provider,
            "calls": self.calls,
            "cached_calls": self.cached_calls,
            "unit_price_usd": money(self.unit_price_usd),
            "cost_usd": money(self.cost_usd),
        }


@dataclass(frozen=True)
class CostPreview:
    """What a batch is expected to cost and take, and whether it fits the budgets."""

    lead_count: int
    billable_leads: int
    skipped: dict[str, int]
    skipped_lead_ids: tuple[int, ...]
    leads_without_website: int
    providers: tuple[ProviderLine, ...]
    total_usd: Decimal
    per_lead_usd: Decimal
    worst_case_usd: Decimal
    expected_retries: float
    estimated_duration_seconds: int
    budget_usd: Decimal | None
    daily_budget_usd: Decimal
    daily_remaining_usd: Decimal
    within_budget: bool
    warnings: tuple[str, ...] = field(default=())
    # The settings of the API keys the batch's providers need and live mode lacks.
    missing_keys: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        return {
            "lead_count": self.lead_count,
            "billable_leads": self.billable_leads,
            "skipped": [{"reason": reason, "count": count} for reason, count in sorted(self.skipped.items())],
            "skipped_count": sum(self.skipped.values()),
            "leads_without_website": self.leads_without_website,
            "providers": [line.as_dict() for line in self.providers],
            "cached_calls": sum(line.cached_calls for line in self.providers),
            "total_usd": money(self.total_usd),
            "per_lead_usd": money(self.per_lead_usd),
            "worst_case_usd": money(self.worst_case_usd),
            "expected_retries": round(self.expected_retries, 1),
            "estimated_duration_seconds": self.estimated_duration_seconds,
            "budget": {
                "budget_usd": None if self.budget_usd is None else money(self.budget_usd),
                "daily_budget_usd": money(self.daily_budget_usd),
                "daily_remaining_usd": money(self.daily_remaining_usd),
                "within_budget": self.within_budget,
                "warnings": list(self.warnings),
            },
        }


def _expected_attempt_failures(rates: tuple[float, ...], max_retries: int) -> float:
    """Expected retries of one lead: attempt k fails while any provider has failed k times in a row.

    Providers that succeeded are cached, so a retry only repeats the ones that failed.
    """
    expected = 0.0
    for k in range(1, max_retries + 1):
        all_done = 1.0
        for rate in rates:
            all_done *= 1.0 - rate**k
        expected += 1.0 - all_done
    return expected


def preview_cost(
    *,
    leads: Iterable[LeadFacts],
    prices: Mapping[str, Price],
    stats: Mapping[str, Stats],
    cached_pairs: set[tuple[int, str]],
    applicable: Callable[..., list[str]],
    now: datetime,
    skip_recent_days: int,
    include_recent: bool,
    concurrency: int,
    max_retries: int,
    max_input_tokens: int,
    max_output_tokens: int,
    budget_usd: Decimal | None,
    daily_budget_usd: Decimal,
    daily_used_usd: Decimal,
    retry_base_seconds: float = 0.0,
    missing_keys: Mapping[str, str] | None = None,
) -> CostPreview:
    """The cost preview of running `leads`; O(number of leads), no I/O.

    `missing_keys` ({provider: key setting}) are the providers live mode has no key for: those the
    leads need (not served from the cache) are warned about and listed in the preview.

    Expected cost per provider = calls not served from the cache x price x P(the call eventually
    succeeds within max_retries + 1 attempts), plus the failed calls when the provider bills failures.
    """
    recent_cutoff = now - timedelta(days=skip_recent_days)
    applicable_for: dict[tuple[bool, bool], tuple[str, ...]] = {}
    calls: Counter[str] = Counter()
    cached_calls: Counter[str] = Counter()
    paid_sets: Counter[tuple[str, ...]] = Counter()
    skipped_ids: list[int] = []
    lead_count = 0
    without_website = 0

    for facts in leads:
        lead_count += 1
        if (
            not include_recent
            and facts.last_reported_at is not None
            and facts.last_reported_at >= recent_cutoff
        ):
            skipped_ids.append(facts.lead_id)
            continue
        key = (bool(facts.has_website), bool(facts.has_email))
        providers = applicable_for.get(key)
        if providers is None:
            providers = applicable_for[key] = tuple(applicable(has_website=key[0], has_email=key[1]))
        if not key[0]:
            without_website += 1
        paid = []
        for provider in providers:
            if (facts.lead_id, provider) in cached_pairs:
                cached_calls[provider] += 1
            else:
                calls[provider] += 1
                paid.append(provider)
        paid_sets[tuple(paid)] += 1

    def rate(provider: str) -> float:
        value = stats[provider].transient_failure_rate if provider in stats else 0.0
        return min(max(value, 0.0), 0.95)

    lines = []
    total = ZERO
    for provider in sorted(set(calls) | set(cached_calls), key=_provider_order(applicable_for)):
        price = prices.get(provider)
        stat = stats.get(provider)
        if price is None:
            unit = ZERO
            cost = ZERO
        else:
            tokens_in = stat.mean_input_tokens if stat and provider == LLM else 0
            tokens_out = stat.mean_output_tokens if stat and provider == LLM else 0
            unit = call_price(price, input_tokens=tokens_in, output_tokens=tokens_out)
            p = rate(provider)
            succeed = 1.0 - p ** (max_retries + 1)
            paid_per_call = succeed
            if price.bills_failures:
                paid_per_call += sum(p**k for k in range(1, max_retries + 2))
            cost = unit * calls[provider] * Decimal(str(round(paid_per_call, 9)))
        total += cost
        lines.append(
            ProviderLine(
                provider=provider,
                calls=calls[provider],
                cached_calls=cached_calls[provider],
                unit_price_usd=ledger(unit),
                cost_usd=ledger(cost),
            )
        )
    total = ledger(total)

    expected_retries = 0.0
    worst = ZERO
    for paid, count in paid_sets.items():
        expected_retries += count * _expected_attempt_failures(tuple(rate(p) for p in paid), max_retries)
        worst += count * worst_case_cost(
            providers=paid,
            prices=prices,
            max_input_tokens=max_input_tokens,
            max_output_tokens=max_output_tokens,
        )

    billable = lead_count - len(skipped_ids)
    attempt_seconds = _attempt_seconds(applicable_for.values(), stats)
    attempts = billable + expected_retries
    duration = math.ceil(attempts / max(concurrency, 1)) * attempt_seconds
    if expected_retries:
        duration += retry_base_seconds * 1.5
    daily_remaining = max(daily_budget_usd - daily_used_usd, ZERO)

    warnings = []
    within_budget = True
    if budget_usd is not None and total > budget_usd:
        within_budget = False
        warnings.append(f"The estimate ({usd(total)}) is above the batch budget ({usd(budget_usd)}).")
    if total > daily_remaining:
        warnings.append(
            f"The estimate ({usd(total)}) is above what is left of today's budget "
            f"({usd(daily_remaining)}); leads beyond it will be skipped."
        )
    elif daily_budget_usd > 0 and total > daily_budget_usd / 2:
        warnings.append(f"The estimate uses over 50% of the daily budget ({usd(daily_budget_usd)}).")
    needed_keys = tuple(
        (missing_keys or {})[line.provider]
        for line in lines
        if line.calls and line.provider in (missing_keys or {})
    )
    if needed_keys:
        warnings.append(
            f"Live mode without {', '.join(needed_keys)}: set {'it' if len(needed_keys) == 1 else 'them'} "
            "before launching; the launch is refused until then."
        )

    return CostPreview(
        lead_count=lead_count,
        billable_leads=billable,
        skipped={SKIP_RECENT_REPORT: len(skipped_ids)} if skipped_ids else {},
        skipped_lead_ids=tuple(skipped_ids),
        leads_without_website=without_website,
        providers=tuple(lines),
        total_usd=total,
        per_lead_usd=ledger(total / billable) if billable else ZERO,
        worst_case_usd=ledger(worst),
        expected_retries=expected_retries,
        estimated_duration_seconds=math.ceil(duration),
        budget_usd=budget_usd,
        daily_budget_usd=daily_budget_usd,
        daily_remaining_usd=ledger(daily_remaining),
        within_budget=within_budget,
        warnings=tuple(warnings),
        missing_keys=needed_keys,
    )


def _provider_order(applicable_for: dict) -> Callable[[str], tuple[int, str]]:
    order: dict[str, int] = {}
    for providers in sorted(applicable_for.values(), key=len, reverse=True):
        for provider in providers:
            order.setdefault(provider, len(order))
    return lambda provider: (order.get(provider, len(order)), provider)


def _attempt_seconds(provider_sets: Iterable[tuple[str, ...]], stats: Mapping[str, Stats]) -> float:
    """Seconds one attempt takes: the data providers run concurrently, then the LLM summarises."""
    slowest = 0.0
    for providers in provider_sets:
        data = max((stats[p].mean_latency_ms for p in providers if p != LLM and p in stats), default=0.0)
        llm = stats[LLM].mean_latency_ms if LLM in providers and LLM in stats else 0.0
        slowest = max(slowest, data + llm)
    return slowest / 1000.0
