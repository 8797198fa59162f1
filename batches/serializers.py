"""API input validation (types and ranges) and the documented shapes of API output.

Input serializers only check what a value is; what it means (do the leads exist, does the estimate fit
the budget) is decided by `batches.services`, which the views call with `validated_data`.
Output serializers describe the dicts that the selectors build, so the OpenAPI schema is exact.
"""

from django.conf import settings
from rest_framework import serializers

from batches.exports import report_url
from batches.models import BatchReport, BatchReportLead

MONEY = {"max_digits": 12, "decimal_places": 4}
MAX_ID = 2**63 - 1
# Output money: 4 places like the rest of the API; the ledger keeps 6 places and up to 14 digits.
OUT_MONEY = {"max_digits": 16, "decimal_places": 4}


class SelectionSerializer(serializers.Serializer):
    """Which leads, and the budget options: the body of `POST /api/batches/preview/`."""

    lead_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        allow_empty=False,
        help_text="Lead ids, each once. Give either lead_ids or filters.",
    )
    filters = serializers.DictField(
        required=False,
        help_text=(
            "Lead filters with the names of GET /api/leads/ (industry, state, status, source, score_tier, "
            "has_website, has_email, report_age, search, created_after, created_before)."
        ),
    )
    budget_usd = serializers.DecimalField(
        **MONEY,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="Spend cap for the batch in USD; the estimate must not exceed it.",
    )
    skip_recent_days = serializers.IntegerField(
        min_value=0,
        max_value=3650,
        required=False,
        default=30,
        help_text="Leads reported within this many days are skipped unless include_recent is true.",
    )
    include_recent = serializers.BooleanField(required=False, default=False)
    concurrency = serializers.IntegerField(
        min_value=1, max_value=50, required=False, default=10, help_text="Leads in flight at once."
    )
    max_retries = serializers.IntegerField(
        min_value=0,
        max_value=10,
        required=False,
        default=3,
        help_text="Retries of a transiently failed lead (3 means up to 4 attempts).",
    )

    def validate(self, attrs):
        has_ids = "lead_ids" in attrs
        has_filters = "filters" in attrs
        if has_ids == has_filters:
            message = "Give exactly one of lead_ids or filters."
            raise serializers.ValidationError({"lead_ids": [message], "filters": [message]})
        return attrs

    def validate_lead_ids(self, value):
        if len(value) > settings.BATCH_MAX_LEADS:
            raise serializers.ValidationError(f"At most {settings.BATCH_MAX_LEADS} leads per batch.")
        return value


class BatchCreateSerializer(SelectionSerializer):
    """The body of `POST /api/batches/`: a selection plus how to run it."""

    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    brand = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ID,
        required=False,
        allow_null=True,
        help_text=(
            "Brand profile id for the batch's reports (admin: Reports > Brand profiles). Left out: the "
            "default profile; null: no branding."
        ),
    )


class AnalyticsQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=365, required=False, default=30)


class BatchListSerializer(serializers.ModelSerializer):
    created_by = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    created_by_username = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )
    brand = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The brand profile of its reports (null: unbranded)."
    )
    url = serializers.SerializerMethodField()
    budget_usd = serializers.DecimalField(**OUT_MONEY, read_only=True, allow_null=True)
    estimated_cost_usd = serializers.DecimalField(**OUT_MONEY, read_only=True)
    actual_cost_usd = serializers.DecimalField(**OUT_MONEY, read_only=True)

    class Meta:
        model = BatchReport
        fields = [
            "id",
            "url",
            "name",
            "status",
            "provider_mode",
            "created_by",
            "created_by_username",
            "concurrency",
            "max_retries",
            "budget_usd",
            "brand",
            "estimated_cost_usd",
            "actual_cost_usd",
            "stop_reason",
            "run",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_url(self, batch) -> str:
        request = self.context.get("request")
        path = f"/api/batches/{batch.pk}/"
        return request.build_absolute_uri(path) if request else path


class LeadWarningSerializer(serializers.Serializer):
    """A section a succeeded lead's report lacks for the lead's own reason."""

    provider = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()


class BatchLeadSerializer(serializers.ModelSerializer):
    lead_id = serializers.IntegerField(read_only=True)
    company_name = serializers.CharField(source="lead.company_name", read_only=True)
    domain = serializers.CharField(source="lead.domain", read_only=True)
    error = serializers.CharField(source="last_error", read_only=True)
    cost_usd = serializers.DecimalField(**OUT_MONEY, read_only=True)
    report_id = serializers.IntegerField(read_only=True, allow_null=True)
    report_url = serializers.SerializerMethodField()
    warnings = LeadWarningSerializer(many=True, read_only=True)

    class Meta:
        model = BatchReportLead
        fields = [
            "id",
            "lead_id",
            "company_name",
            "domain",
            "position",
            "status",
            "attempts",
            "error",
            "error_code",
            "cost_usd",
            "duration_ms",
            "report_id",
            "report_url",
            "warnings",
            "started_at",
            "finished_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_report_url(self, row) -> str | None:
        if row.report_id is None:
            return None
        return report_url(row.report_id, request=self.context.get("request"))


class RecentLeadSerializer(serializers.Serializer):
    lead_id = serializers.IntegerField()
    company_name = serializers.CharField()
    status = serializers.ChoiceField(choices=BatchReportLead.Status.choices)
    attempts = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    error_code = serializers.CharField(allow_blank=True)
    cost_usd = serializers.DecimalField(**OUT_MONEY)
    duration_ms = serializers.IntegerField(allow_null=True)
    report_url = serializers.CharField(allow_null=True)
    warnings = LeadWarningSerializer(many=True)


class BatchSnapshotSerializer(serializers.Serializer):
    """The batch snapshot: `GET /api/batches/<id>/`, the WebSocket messages and the live page."""

    id = serializers.IntegerField()
    name = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=BatchReport.Status.choices)
    provider_mode = serializers.CharField()
    total = serializers.IntegerField()
    pending = serializers.IntegerField()
    processing = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    progress_percent = serializers.FloatField()
    estimated_cost_usd = serializers.DecimalField(**OUT_MONEY)
    actual_cost_usd = serializers.DecimalField(**OUT_MONEY)
    budget_usd = serializers.DecimalField(**OUT_MONEY, allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    eta_seconds = serializers.IntegerField(
        allow_null=True,
        help_text="Best guess of the seconds left; null when no number is true (see eta_state).",
    )
    eta_low_seconds = serializers.IntegerField(allow_null=True, help_text="Low end of the time-left range.")
    eta_high_seconds = serializers.IntegerField(allow_null=True, help_text="High end of the time-left range.")
    eta_state = serializers.ChoiceField(
        choices=[
            "done",
            "finishing",
            "waiting_to_start",
            "paused",
            "cancelling",
            "waiting_for_retries",
            "warming_up",
            "estimate",
        ],
        help_text="What the time left rests on: a range (`estimate`) or what the batch waits for.",
    )
    eta_text = serializers.CharField(
        help_text='The time left as people read it: "4-6 min", "waiting for retries (next in 12 s)", '
        '"paused: hunter plan used up".'
    )
    throughput_per_minute = serializers.FloatField(allow_null=True)
    stop_reason = serializers.CharField(allow_blank=True)
    stop_detail = serializers.CharField(
        allow_blank=True, help_text='One readable line, e.g. "hunter: plan usage limit reached (HTTP 429)".'
    )
    recent = RecentLeadSerializer(many=True)
    seq = serializers.IntegerField()
    providers = serializers.DictField(
        child=serializers.ChoiceField(choices=["ok", "open", "unavailable"]),
        help_text="Provider name -> ok, open (its circuit is open: leads needing it wait) or unavailable "
        "(the batch paused for it).",
    )


class SkippedLineSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="recent_report: reported within skip_recent_days.")
    count = serializers.IntegerField()


class ProviderLineSerializer(serializers.Serializer):
    provider = serializers.CharField()
    calls = serializers.IntegerField(help_text="Calls that will be paid for.")
    cached_calls = serializers.IntegerField(help_text="Calls served from fresh cached data at $0.")
    unit_price_usd = serializers.DecimalField(**OUT_MONEY)
    cost_usd = serializers.DecimalField(**OUT_MONEY)


class BudgetCheckSerializer(serializers.Serializer):
    budget_usd = serializers.DecimalField(**OUT_MONEY, allow_null=True)
    daily_budget_usd = serializers.DecimalField(**OUT_MONEY)
    daily_remaining_usd = serializers.DecimalField(**OUT_MONEY)
    within_budget = serializers.BooleanField()
    warnings = serializers.ListField(child=serializers.CharField())


class CostPreviewSerializer(serializers.Serializer):
    """The cost preview: per provider, cache-aware, with expected retries and the budget check."""

    lead_count = serializers.IntegerField()
    billable_leads = serializers.IntegerField()
    skipped = SkippedLineSerializer(many=True)
    skipped_count = serializers.IntegerField()
    leads_without_website = serializers.IntegerField()
    providers = ProviderLineSerializer(many=True)
    cached_calls = serializers.IntegerField()
    total_usd = serializers.DecimalField(**OUT_MONEY)
    per_lead_usd = serializers.DecimalField(**OUT_MONEY)
    worst_case_usd = serializers.DecimalField(**OUT_MONEY)
    expected_retries = serializers.FloatField()
    estimated_duration_seconds = serializers.IntegerField()
    budget = BudgetCheckSerializer()


class AnalyticsBucketSerializer(serializers.Serializer):
    batches = serializers.IntegerField(help_text="Launched batches (drafts are not counted).")
    leads = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    success_rate_percent = serializers.FloatField(
        allow_null=True, help_text="succeeded / (succeeded + failed) x 100; null when no lead finished."
    )
    spend_usd = serializers.DecimalField(**OUT_MONEY)
    cost_per_successful_lead_usd = serializers.DecimalField(
        **OUT_MONEY, allow_null=True, help_text="spend / succeeded; null when nothing succeeded."
    )
    estimated_usd = serializers.DecimalField(
        **OUT_MONEY, help_text="Estimates of the batches that ran to completion."
    )
    actual_usd = serializers.DecimalField(**OUT_MONEY, help_text="What those same batches spent.")
    actual_vs_estimate_percent = serializers.FloatField(
        allow_null=True, help_text="actual_usd / estimated_usd x 100; null when nothing was estimated."
    )
    mean_abs_estimate_error_percent = serializers.FloatField(
        allow_null=True, help_text="Mean over those batches of |actual - estimate| / estimate x 100."
    )


class AnalyticsDaySerializer(AnalyticsBucketSerializer):
    date = serializers.DateField()


class AnalyticsProviderSerializer(serializers.Serializer):
    provider = serializers.CharField()
    calls = serializers.IntegerField(help_text="Every call logged for the batches of the range.")
    paid_calls = serializers.IntegerField()
    failed_calls = serializers.IntegerField()
    cached_calls = serializers.IntegerField(help_text="Cached data reused at $0.")
    spend_usd = serializers.DecimalField(**OUT_MONEY)


class AnalyticsDurationSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Finished leads (succeeded or failed) with a duration.")
    p50 = serializers.IntegerField(allow_null=True, help_text="Median lead duration in milliseconds.")
    p95 = serializers.IntegerField(allow_null=True, help_text="95th percentile in milliseconds.")


class AnalyticsBatchEstimateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    estimated_usd = serializers.DecimalField(**OUT_MONEY)
    actual_usd = serializers.DecimalField(**OUT_MONEY)
    error_percent = serializers.FloatField(help_text="(actual - estimate) / estimate x 100.")


class AnalyticsSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    since = serializers.DateField(help_text="First day of the range (UTC).")
    until = serializers.DateField(help_text="Last day of the range (UTC, today).")
    totals = AnalyticsBucketSerializer()
    by_day = AnalyticsDaySerializer(many=True, help_text="One entry per day, oldest first.")
    by_provider = AnalyticsProviderSerializer(many=True, help_text="Spend by provider, largest first.")
    lead_duration_ms = AnalyticsDurationSerializer()
    estimate_by_batch = AnalyticsBatchEstimateSerializer(
        many=True,
        help_text="Batches that ran to completion: their estimate against their spend, newest first.",
    )


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
