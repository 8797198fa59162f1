"""Prices and billing arithmetic (pure: no ORM here, so it is easy to test exhaustively).

`PriceInfo` is one provider's price in force at some moment (see `reports.selectors.price_table`);
`call_cost` is the one billing rule of the product: a successful call costs its unit price (the LLM: its
reported token usage times the per-million prices); a failed call costs nothing unless the price row says
the provider bills failures.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from reports.models import Provider

MILLION = Decimal(1_000_000)
# Money is stored with 6 decimal places (ProviderCall.cost_usd); costs are rounded to that once, here.
COST_QUANTUM = Decimal("0.000001")

# Hard bounds the LLM provider enforces: the prompt is cut to fit LLM_MAX_INPUT_TOKENS (counted
# conservatively as UTF-8 bytes, which no tokenizer exceeds) and `max_tokens` is sent as
# LLM_MAX_OUTPUT_TOKENS, so a lead's worst-case LLM cost is known before the call.
LLM_MAX_INPUT_TOKENS = 2000
LLM_MAX_OUTPUT_TOKENS = 600

# Expected token usage per LLM call: the mean of the sandbox's distribution (uniform 300-700 input,
# 150-350 output per lead), which is also close to a typical live prompt of this product.
LLM_EXPECTED_INPUT_TOKENS = 500.0
LLM_EXPECTED_OUTPUT_TOKENS = 250.0

# Typical live latencies, used by cost/duration estimates before any call history exists.
LIVE_EXPECTED_LATENCY_MS = {
    Provider.WEBSITE: 800.0,
    Provider.PAGESPEED: 12_000.0,
    Provider.SEMRUSH: 600.0,
    Provider.SCREENSHOT: 5_000.0,
    Provider.HUNTER: 700.0,
    Provider.LLM: 4_000.0,
}
LIVE_EXPECTED_FAILURE_RATE = 0.02


@dataclass(frozen=True)
class PriceInfo:
    provider: str
    unit_price_usd: Decimal = Decimal("0")
    input_price_per_million_usd: Decimal = Decimal("0")
    output_price_per_million_usd: Decimal = Decimal("0")
    bills_failures: bool = False


@dataclass(frozen=True)
class ProviderStats:
    calls: int
    transient_failure_rate: float
    mean_latency_ms: float
    mean_input_tokens: float
    mean_output_tokens: float


# The prices the product ships with (also written by migration 0002_default_prices). Used only when the
# price table has no row in force for a provider.
DEFAULT_PRICES: dict[str, PriceInfo] = {
    Provider.WEBSITE: PriceInfo(Provider.WEBSITE.value),
    Provider.PAGESPEED: PriceInfo(Provider.PAGESPEED.value, unit_price_usd=Decimal("0.03")),
    Provider.SEMRUSH: PriceInfo(Provider.SEMRUSH.value, unit_price_usd=Decimal("0.08")),
    Provider.SCREENSHOT: PriceInfo(Provider.SCREENSHOT.value, unit_price_usd=Decimal("0.02")),
    Provider.HUNTER: PriceInfo(Provider.HUNTER.value, unit_price_usd=Decimal("0.10")),
    Provider.LLM: PriceInfo(
        Provider.LLM.value,
        input_price_per_million_usd=Decimal("0.15"),
        output_price_per_million_usd=Decimal("0.60"),
    ),
}


def call_cost(
    price: PriceInfo, *, succeeded: bool, input_tokens: int = 0, output_tokens: int = 0, units: int = 1
) -> Decimal:
    """What one call costs. Token prices apply to successful calls only (a failed call reports no usage).

    `units` is for a provider billing per line of its answer (SEMrush): the unit price is per line.
    """
    if not succeeded:
        return price.unit_price_usd if price.bills_failures else Decimal("0")
    cost = (
        price.unit_price_usd * max(units, 1)
        + Decimal(input_tokens) * price.input_price_per_million_usd / MILLION
        + Decimal(output_tokens) * price.output_price_per_million_usd / MILLION
    )
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


def max_call_cost(price: PriceInfo) -> Decimal:
    """The most one call can cost (the LLM at its token bounds)."""
    return call_cost(
        price, succeeded=True, input_tokens=LLM_MAX_INPUT_TOKENS, output_tokens=LLM_MAX_OUTPUT_TOKENS
    )
