from django.contrib import admin
from django.db import models

from batches.admin_actions import generate_reports, has_run_batch_permission
from leads.admin_filters import HasEmailFilter, HasWebsiteFilter, ReportAgeFilter, ScoreTierFilter
from leads.filters import search_q
from leads.models import Lead


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = [
        "company_name",
        "domain",
        "email",
        "industry",
        "city",
        "state",
        "score",
        "status",
        "source",
        "last_reported_at",
        "created_at",
    ]
    list_display_links = ["company_name"]
    # state and source have no choices: their options come from one indexed DISTINCT query each.
    list_filter = [
        "industry",
        "state",
        "status",
        "source",
        ScoreTierFilter,
        HasWebsiteFilter,
        HasEmailFilter,
        ReportAgeFilter,
    ]
    search_fields = ["company_name", "domain", "email"]
    actions = [generate_reports]
    has_run_batch_permission = has_run_batch_permission
    search_help_text = "Company name, domain or email; every word must match."
    date_hierarchy = "created_at"
    list_per_page = 100
    # Counting all 100,000 rows on every page load buys nothing: the filtered count is shown anyway.
    show_full_result_count = False
    readonly_fields = ["domain", "created_at", "updated_at"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["company_name", "website", "domain", "email", "phone", "contact_name"]}),
        ("Business", {"fields": ["industry", "city", "state", "country", "employee_count"]}),
        ("Pipeline", {"fields": ["score", "status", "source", "last_reported_at"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_search_results(self, request, queryset, search_term):
        """The same search as `GET /api/leads/?search=` (leads.filters.search_q)."""
        if not search_term.strip():
            return queryset, False
        return queryset.filter(search_q(search_term)), False
