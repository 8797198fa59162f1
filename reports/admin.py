from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from leadgen.display import money_column
from reports.models import ProviderCall, ProviderPrice, ProviderResult, Report


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ProviderPrice)
class ProviderPriceAdmin(admin.ModelAdmin):
    list_display = [
        "provider",
        money_column("unit_price_usd", "unit price"),
        money_column("input_price_per_million_usd", "per 1M input tokens"),
        money_column("output_price_per_million_usd", "per 1M output tokens"),
        "bills_failures",
        "effective_from",
    ]
    list_filter = ["provider", "bills_failures"]
    date_hierarchy = "effective_from"
    readonly_fields = ["created_at"]


@admin.register(ProviderCall)
class ProviderCallAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "provider",
        "status",
        "lead_id",
        "batch_lead_id",
        "attempt",
        "http_status",
        "duration_ms",
        money_column("cost_usd", "cost"),
        "error_code",
    ]
    list_filter = ["provider", "status", "transient", "error_code", "created_at"]
    search_fields = ["=lead__id", "=batch_lead_id", "error_code"]
    date_hierarchy = "created_at"
    list_select_related = False
    show_full_result_count = False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ProviderResult)
class ProviderResultAdmin(ReadOnlyAdmin):
    """Read-only; deleting an entry makes the next report fetch that data again."""

    list_display = ["provider", "subject", "fetched_at", "expires_at", money_column("cost_usd", "cost")]
    list_filter = ["provider"]
    search_fields = ["subject"]
    date_hierarchy = "fetched_at"


@admin.register(Report)
class ReportAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "lead",
        "overall_score",
        "provider_mode",
        money_column("cost_usd", "cost"),
        "created_at",
        "links",
    ]
    list_filter = ["provider_mode", "created_at"]
    search_fields = ["lead__company_name", "lead__domain"]
    list_select_related = ["lead"]
    date_hierarchy = "created_at"
    exclude = ["html"]
    readonly_fields = ["links"]

    @admin.display(description="Report")
    def links(self, obj: Report) -> str:
        return format_html(
            '<a href="{}">HTML</a> / <a href="{}">PDF</a>',
            reverse("reports:detail", args=[obj.pk]),
            reverse("reports:pdf", args=[obj.pk]),
        )
