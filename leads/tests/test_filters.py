import pytest

from leads.filters import LeadFilter
from leads.models import Lead

pytestmark = pytest.mark.django_db

CASES = [
    ({"score_tier": "A"}, {"Alpha", "Bravo"}),
    ({"score_tier": "B"}, {"Charlie", "Delta"}),
    ({"score_tier": "C"}, {"Echo", "Foxtrot"}),
    ({"has_website": "true"}, {"Alpha", "Charlie", "Echo", "Foxtrot"}),
    ({"has_website": "false"}, {"Bravo", "Delta"}),
    ({"has_email": "true"}, {"Alpha", "Bravo", "Echo"}),
    ({"has_email": "false"}, {"Charlie", "Delta", "Foxtrot"}),
    ({"report_age": "never"}, {"Alpha", "Foxtrot"}),
    ({"report_age": "last_30"}, {"Bravo", "Charlie"}),
    ({"report_age": "older_30"}, {"Delta", "Echo"}),
    ({"industry": "dentist"}, {"Alpha", "Charlie", "Echo"}),
    ({"state": "Texas"}, {"Alpha", "Charlie", "Foxtrot"}),
    ({"status": "new"}, {"Alpha", "Delta", "Foxtrot"}),
    ({"source": "yelp"}, {"Alpha", "Delta", "Foxtrot"}),
    ({"search": "charlie"}, {"Charlie"}),
    ({"search": "echo-site"}, {"Echo"}),
    ({"search": "bravo-mail"}, {"Bravo"}),
    ({"search": "company ALPHA"}, {"Alpha"}),
    ({"search": "company"}, {"Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"}),
    ({"industry": "dentist", "score_tier": "B", "has_email": "false"}, {"Charlie"}),
    ({}, {"Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"}),
]


def names(queryset):
    return {lead.company_name.removesuffix(" Company") for lead in queryset}


@pytest.mark.parametrize(("params", "expected"), CASES)
def test_lead_filter(six_leads, params, expected):
    filterset = LeadFilter(data=params, queryset=Lead.objects.all())
    assert filterset.is_valid(), filterset.errors
    assert names(filterset.qs) == expected


def test_created_range_filters(six_leads):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    Lead.objects.filter(pk=six_leads["Alpha"].pk).update(created_at=now - timedelta(days=40))
    Lead.objects.filter(pk=six_leads["Bravo"].pk).update(created_at=now - timedelta(days=20))
    cutoff = (now - timedelta(days=30)).isoformat()

    before = LeadFilter(data={"created_before": cutoff}, queryset=Lead.objects.all())
    after = LeadFilter(data={"created_after": cutoff}, queryset=Lead.objects.all())

    assert names(before.qs) == {"Alpha"}
    assert names(after.qs) == {"Bravo", "Charlie", "Delta", "Echo", "Foxtrot"}


@pytest.mark.parametrize(
    "params",
    [{"score_tier": "D"}, {"report_age": "yesterday"}, {"has_email": "maybe"}, {"created_after": "soon"}],
)
def test_lead_filter_rejects_invalid_values(params):
    filterset = LeadFilter(data=params, queryset=Lead.objects.all())
    assert not filterset.is_valid()
    assert set(filterset.errors) == set(params)
