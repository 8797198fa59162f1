"""Report HTML and JSON compressed with LZ4 instead of pglz on PostgreSQL (14+ built with LZ4).

Every report's HTML (~10 KB, an inline screenshot and CSS) is compressed as the batch engine inserts it;
LZ4 does that at a fraction of pglz's CPU. A server without LZ4 keeps pglz.
"""

from django.db import migrations

COLUMNS = [("reports_report", "html"), ("reports_report", "data"), ("reports_providerresult", "data")]


def _set_compression(schema_editor, method: str) -> None:
    quote = schema_editor.quote_name
    for table, column in COLUMNS:
        # A server built without LZ4 refuses the method: the column keeps the default.
        schema_editor.execute(
            f"DO $$ BEGIN ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} SET COMPRESSION {method};"
            " EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL; END $$"
        )


def use_lz4(apps, schema_editor):
    _set_compression(schema_editor, "lz4")


def use_default(apps, schema_editor):
    _set_compression(schema_editor, "default")


class Migration(migrations.Migration):
    dependencies = [("reports", "0002_default_prices")]

    operations = [migrations.RunPython(use_lz4, use_default, elidable=True)]
