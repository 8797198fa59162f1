"""Lead filters, shared by the admin changelist, `GET /api/leads/` and batch selections.

The `*_q` functions hold the query logic once; the admin's list filters and `LeadFilter` both call them,
so a filter means the same thing wherever it is used.
"""

from datetime import timedelta

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from leadgen.filters import SearchFilter, UtcIsoDateTimeFilter, search_terms
from leads.models import Lead

RECENT_REPORT_DAYS = 30


class ScoreTier(models.TextChoices):
    A = "A", "A (80-100)"
    B = "B", "B (60-79)"
    C = "C", "C (0-59)"


class ReportAge(models.TextChoices):
    NEVER = "never", "Never reported"
    OLDER_30 = "older_30", "Older than 30 days"
    LAST_30 = "last_30", "In the last 30 days"


def score_tier_q(tier: str) -> Q:
    """A: score >= 80, B: 60-79, C: below 60."""
    return {
        ScoreTier.A: Q(score__gte=80),
        ScoreTier.B: Q(score__gte=60, score__lt=80),
        ScoreTier.C: Q(score__lt=60),
    }[ScoreTier(tier)]


def has_website_q(has_website: bool) -> Q:
    q = Q(website="")
    return ~q if has_website else q


def has_email_q(has_email: bool) -> Q:
    q = Q(email="")
    return ~q if has_email else q


def report_age_q(age: str) -> Q:
    """Based on `last_reported_at`: never reported, reported before the last 30 days, or within them."""
    age = ReportAge(age)
    if age == ReportAge.NEVER:
        return Q(last_reported_at__isnull=True)
    cutoff = timezone.now() - timedelta(days=RECENT_REPORT_DAYS)
    if age == ReportAge.OLDER_30:
        return Q(last_reported_at__lt=cutoff)
    return Q(last_reported_at__gte=cutoff)


def search_q(text: str) -> Q:
    """Every whitespace-separated term must appear in the company name, domain or email (as the admin).

    Raises ValidationError for a search beyond the bounds of `leadgen.filters.search_terms`.
    """
    q = Q()
    for term in search_terms(text):
        q &= Q(company_name__icontains=term) | Q(domain__icontains=term) | Q(email__icontains=term)
    return q


class StrictBooleanField(forms.NullBooleanField):
    """Empty means "not filtered"; anything but true/false/1/0 is an error, never silently ignored."""

    widget = forms.TextInput

    def to_python(self, value):
        if value in (None, ""):
            return None
        result = super().to_python(value)
        if result is None:
            raise ValidationError("Enter true or false.", code="invalid")
        return result


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class LeadFilter(django_filters.FilterSet):
    industry = django_filters.ChoiceFilter(choices=Lead.Industry.choices)
    state = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=Lead.Status.choices)
    source = django_filters.CharFilter()
    score_tier = django_filters.ChoiceFilter(
        choices=ScoreTier.choices, method="filter_score_tier", label="Score tier"
    )
    has_website = StrictBooleanFilter(method="filter_has_website", label="Has a website")
    has_email = StrictBooleanFilter(method="filter_has_email", label="Has an email")
    report_age = django_filters.ChoiceFilter(
        choices=ReportAge.choices, method="filter_report_age", label="Last report"
    )
    search = SearchFilter(method="filter_search", label="Company name, domain or email")
    created_after = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Created at or after (ISO 8601)"
    )
    created_before = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", label="Created before (ISO 8601)"
    )

    class Meta:
        model = Lead
        fields = []

    def filter_score_tier(self, queryset, name, value):
        return queryset.filter(score_tier_q(value))

    def filter_has_website(self, queryset, name, value):
        return queryset.filter(has_website_q(value))

    def filter_has_email(self, queryset, name, value):
        return queryset.filter(has_email_q(value))

    def filter_report_age(self, queryset, name, value):
        return queryset.filter(report_age_q(value))

    def filter_search(self, queryset, name, value):
        return queryset.filter(search_q(value))
