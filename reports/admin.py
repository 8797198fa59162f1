from django.contrib import admin, messages
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from leadgen.display import money_column
from reports.models import BrandProfile, ProviderCall, ProviderPrice, ProviderResult, Report, ShareLink
from reports.services import brand_profile_save, share_link_revoke, share_links_ensure
from reports.sharing import share_urls


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


@admin.register(BrandProfile)
class BrandProfileAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["name", "agency_name", "accent", "is_default", "updated_at"]
    list_filter = ["is_default"]
    search_fields = ["name", "agency_name"]
    fields = [
        "name",
        "is_default",
        "agency_name",
        "logo",
        "accent_colour",
        "contact_line",
        "cta_label",
        "cta_url",
        "footer",
    ]

    @admin.display(description="accent colour")
    def accent(self, obj: BrandProfile) -> str:
        return format_html(
            '<span style="display:inline-block;width:1em;height:1em;background:{};vertical-align:middle">'
            "</span> {}",
            obj.accent_colour,
            obj.accent_colour,
        )

    def save_model(self, request, obj, form, change):
        brand_profile_save(profile=obj)


def _share_link_status(link: ShareLink) -> str:
    if link.revoked_at is not None:
        return "revoked"
    return "active" if link.expires_at > timezone.now() else "expired"


def _share_link_html(link: ShareLink) -> str:
    urls = share_urls(link.key)
    return format_html('<a href="{}">HTML</a> / <a href="{}">PDF</a>', urls["url"], urls["pdf_url"])


class ShareLinkColumns:
    """The link and its status, as the inline and the share link list show them."""

    @admin.display(description="link")
    def link(self, obj: ShareLink) -> str:
        return _share_link_html(obj)

    @admin.display(description="status")
    def status(self, obj: ShareLink) -> str:
        return _share_link_status(obj)


class ShareLinkInline(ShareLinkColumns, admin.TabularInline):
    model = ShareLink
    extra = 0
    can_delete = False
    fields = ["link", "status", "created_at", "expires_at", "revoked_at", "created_by"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ShareLink)
class ShareLinkAdmin(ShareLinkColumns, admin.ModelAdmin):
    list_display = ["report", "link", "status", "created_at", "expires_at", "revoked_at", "created_by"]
    list_filter = ["created_at", "expires_at", "revoked_at"]
    list_select_related = ["report", "created_by"]
    search_fields = ["=report__id", "report__lead__company_name"]
    date_hierarchy = "created_at"
    actions = ["revoke_links"]
    fields = ["report", "link", "status", "created_at", "expires_at", "revoked_at", "created_by"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(permissions=["change"], description="Revoke selected share links")
    def revoke_links(self, request, queryset):
        links = list(queryset.filter(revoked_at__isnull=True))
        for link in links:
            share_link_revoke(link=link, user=request.user)
        self.message_user(request, f"Revoked {len(links)} share link(s).", messages.SUCCESS)


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
    inlines = [ShareLinkInline]
    actions = ["share_reports"]

    def has_share_permission(self, request):
        return request.user.has_perm("reports.add_sharelink")

    @admin.action(permissions=["share"], description="Create share links for selected reports")
    def share_reports(self, request, queryset):
        created = share_links_ensure(
            report_ids=list(queryset.values_list("pk", flat=True)), user=request.user
        )
        self.message_user(
            request,
            f"Created {created} share link(s); reports that had an active link keep it.",
            messages.SUCCESS,
        )

    @admin.display(description="Report")
    def links(self, obj: Report) -> str:
        return format_html(
            '<a href="{}">HTML</a> / <a href="{}">PDF</a>',
            reverse("reports:detail", args=[obj.pk]),
            reverse("reports:pdf", args=[obj.pk]),
        )
