import datetime
from decimal import Decimal

from django.db import migrations

# In force from an early fixed date, so every call ever made has a price row.
EFFECTIVE_FROM = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)

DEFAULT_PRICES = [
    # provider, unit price, input per 1M tokens, output per 1M tokens
    ("website", "0", "0", "0"),
    ("pagespeed", "0.03", "0", "0"),
    ("semrush", "0.08", "0", "0"),
    ("screenshot", "0.02", "0", "0"),
    ("hunter", "0.10", "0", "0"),
    ("llm", "0", "0.15", "0.60"),
]


def add_default_prices(apps, schema_editor):
    ProviderPrice = apps.get_model("reports", "ProviderPrice")
    for provider, unit, input_price, output_price in DEFAULT_PRICES:
        ProviderPrice.objects.get_or_create(
            provider=provider,
            effective_from=EFFECTIVE_FROM,
            defaults={
                "unit_price_usd": Decimal(unit),
                "input_price_per_million_usd": Decimal(input_price),
                "output_price_per_million_usd": Decimal(output_price),
            },
        )


def remove_default_prices(apps, schema_editor):
    ProviderPrice = apps.get_model("reports", "ProviderPrice")
    ProviderPrice.objects.filter(effective_from=EFFECTIVE_FROM).delete()


class Migration(migrations.Migration):
    dependencies = [("reports", "0001_initial")]

    operations = [migrations.RunPython(add_default_prices, remove_default_prices)]
