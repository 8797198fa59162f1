"""Changelist filters for leads; the query logic lives in `leads.filters` and is shared with the API."""

from django.contrib import admin

from leads.filters import ReportAge, ScoreTier, has_email_q, has_website_q, report_age_q, score_tier_q


class ScoreTierFilter(admin.SimpleListFilter):
    title = "score tier"
    parameter_name = "score_tier"

    def lookups(self, request, model_admin):
        return ScoreTier.choices

    def queryset(self, request, queryset):
        if self.value() in ScoreTier.values:
            return queryset.filter(score_tier_q(self.value()))
        return queryset


class _YesNoFilter(admin.SimpleListFilter):
    q_for = None  # a staticmethod: bool -> Q

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in {"yes", "no"}:
            return queryset.filter(self.q_for(self.value() == "yes"))
        return queryset


class HasWebsiteFilter(_YesNoFilter):
    title = "has website"
    parameter_name = "has_website"
    q_for = staticmethod(has_website_q)


class HasEmailFilter(_YesNoFilter):
    title = "has email"
    parameter_name = "has_email"
    q_for = staticmethod(has_email_q)


class ReportAgeFilter(admin.SimpleListFilter):
    title = "last report"
    parameter_name = "report_age"

    def lookups(self, request, model_admin):
        return ReportAge.choices

    def queryset(self, request, queryset):
        if self.value() in ReportAge.values:
            return queryset.filter(report_age_q(self.value()))
        return queryset
