"""The engine's hot statements as PL/pgSQL functions, version 1 (batches/sql/engine_v1.sql), and the
`paused` batch status."""

from pathlib import Path

from django.db import migrations, models

SQL = (Path(__file__).resolve().parent.parent / "sql" / "engine_v1.sql").read_text()
FUNCTIONS = [
    "batch_claim_v1(bigint, text, integer, jsonb, timestamptz, timestamptz, date, numeric)",
    "batch_settle_v1(bigint, text, text, bigint, integer, text, text, jsonb, timestamptz, timestamptz, date)",
    "batch_lease_renew_v1(bigint, text, timestamptz, timestamptz)",
    "batch_lease_recover_v1(timestamptz, date)",
    "batch_lead_settle_money_v1(bigint, bigint, numeric, numeric, date)",
]


class Migration(migrations.Migration):
    dependencies = [("batches", "0004_recent_changes_index"), ("reports", "0003_report_lz4_compression")]

    operations = [
        migrations.RunSQL(SQL, reverse_sql=[f"DROP FUNCTION {function}" for function in FUNCTIONS]),
        migrations.AlterField(
            model_name="batchreport",
            name="status",
            field=models.CharField(
                choices=[
                    ("draft", "Draft"),
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("paused", "Paused"),
                    ("cancelling", "Cancelling"),
                    ("completed", "Completed"),
                    ("completed_with_errors", "Completed with errors"),
                    ("cancelled", "Cancelled"),
                    ("failed", "Failed"),
                ],
                default="draft",
                max_length=24,
            ),
        ),
        migrations.AddField(
            model_name="batchreportlead",
            name="warnings",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Sections a succeeded lead's report lacks for the lead's own reason: "
                "{provider, code, message}.",
            ),
        ),
        migrations.AddField(
            model_name="batchreport",
            name="stop_detail",
            field=models.CharField(blank=True, help_text="One readable line: what stopped it.", max_length=500),
        ),
        migrations.AlterField(
            model_name="batchreport",
            name="stop_reason",
            field=models.CharField(
                blank=True,
                help_text="Why the batch stopped or paused: budget_exhausted, daily_budget_exhausted, "
                "paused_by_user, provider_unavailable, cancelled_by_user.",
                max_length=50,
            ),
        ),
    ]
