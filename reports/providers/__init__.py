"""The six report providers, in the fixed order the product uses everywhere."""

from collections.abc import Iterable

from django.conf import settings

from reports.providers.base import BaseProvider, ProviderError
from reports.providers.hunter import HunterProvider
from reports.providers.llm import LlmProvider
from reports.providers.pagespeed import PageSpeedProvider
from reports.providers.screenshot import ScreenshotProvider
from reports.providers.semrush import SemrushProvider
from reports.providers.website import WebsiteProvider

PROVIDERS: dict[str, BaseProvider] = {
    provider.name: provider
    for provider in (
        WebsiteProvider(),
        PageSpeedProvider(),
        SemrushProvider(),
        ScreenshotProvider(),
        HunterProvider(),
        LlmProvider(),
    )
}
PROVIDER_ORDER: tuple[str, ...] = tuple(PROVIDERS)


def applicable_providers(*, has_website: bool, has_email: bool) -> list[str]:
    """The providers a lead needs, in the fixed order website, pagespeed, semrush, screenshot, hunter, llm."""
    return [
        name
        for name, provider in PROVIDERS.items()
        if provider.applies(has_website=has_website, has_email=has_email)
    ]


def get_provider(name: str) -> BaseProvider:
    return PROVIDERS[name]


def missing_keys(names: Iterable[str] | None = None) -> dict[str, str]:
    """{provider: its key setting} for the providers (all by default) whose API key is not set, in
    live mode; empty in the sandbox, which needs no key."""
    if settings.PROVIDER_MODE != "live":
        return {}
    wanted = set(PROVIDER_ORDER if names is None else names)
    return {
        name: provider.key_setting
        for name, provider in PROVIDERS.items()
        if name in wanted and provider.key_setting and not provider.api_key()
    }


__all__ = [
    "PROVIDERS",
    "PROVIDER_ORDER",
    "BaseProvider",
    "ProviderError",
    "applicable_providers",
    "get_provider",
    "missing_keys",
]
