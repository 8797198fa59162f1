"""System checks of the reports app: live mode needs every provider's key before anything runs."""

from django.core import checks


@checks.register(checks.Tags.compatibility)
def provider_keys_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """An error naming the provider keys that are not set when PROVIDER_MODE is live."""
    from reports.providers import missing_keys

    missing = missing_keys()
    if not missing:
        return []
    return [
        checks.Error(
            f"PROVIDER_MODE is live but {', '.join(missing.values())} "
            f"{'is' if len(missing) == 1 else 'are'} not set.",
            hint="Set the keys in the environment, or run with PROVIDER_MODE=sandbox.",
            id="reports.E001",
        )
    ]
