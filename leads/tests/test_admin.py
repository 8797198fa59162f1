from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from leads.models import Lead

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:leads_lead_changelist")

# Every list filter of the changelist, with exactly the leads of the `six_leads` fixture it shows.
CASES = [
    ("score_tier=A", {"Alpha", "Bravo"}),
    ("score_tier=B", {"Charlie", "Delta"}),
    ("score_tier=C", {"Echo", "Foxtrot"}),
    ("has_website=yes", {"Alpha", "Charlie", "Echo", "Foxtrot"}),
    ("has_website=no", {"Bravo", "Delta"}),
    ("has_email=yes", {"Alpha", "Bravo", "Echo"}),
    ("has_email=no", {"Charlie", "Delta", "Foxtrot"}),
    ("report_age=never", {"Alpha", "Foxtrot"}),
    ("report_age=last_30", {"Bravo", "Charlie"}),
    ("report_age=older_30", {"Delta", "Echo"}),
    ("industry__exact=dentist", {"Alpha", "Charlie", "Echo"}),
    ("state=Texas", {"Alpha", "Charlie", "Foxtrot"}),
    ("status__exact=new", {"Alpha", "Delta", "Foxtrot"}),
    ("source=yelp", {"Alpha", "Delta", "Foxtrot"}),
    ("q=charlie", {"Charlie"}),
    ("q=delta-site", set()),
    ("q=echo-site", {"Echo"}),
    ("q=bravo-mail", {"Bravo"}),
    ("q=company+alpha", {"Alpha"}),
    ("industry__exact=dentist&score_tier=B&has_email=no", {"Charlie"}),
    ("", {"Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"}),
]


def shown(response) -> set[str]:
    assert response.status_code == 200
    return {lead.company_name.removesuffix(" Company") for lead in response.context["cl"].result_list}


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_changelist_filter_shows_exactly_the_matching_leads(admin_client, six_leads, query, expected):
    assert shown(admin_client.get(f"{CHANGELIST}?{query}")) == expected


def test_changelist_lists_every_filter_with_its_choices(admin_client, six_leads):
    response = admin_client.get(CHANGELIST)
    specs = {spec.title: spec for spec in response.context["cl"].filter_specs}

    assert set(specs) == {
        "industry",
        "state",
        "status",
        "source",
        "score tier",
        "has website",
        "has email",
        "last report",
    }
    state_choices = {choice["display"] for choice in specs["state"].choices(response.context["cl"])}
    assert state_choices == {"All", "California", "Ohio", "Texas"}


def test_changelist_date_hierarchy_on_created_at(admin_client, six_leads):
    last_year = timezone.now() - timedelta(days=400)
    Lead.objects.filter(pk=six_leads["Echo"].pk).update(created_at=last_year)

    response = admin_client.get(f"{CHANGELIST}?created_at__year={last_year.year}")

    assert shown(response) == {"Echo"}


def test_changelist_page_shows_100_leads_and_does_not_count_the_whole_table(admin_client):
    from leads.services import lead_seed

    lead_seed(count=150, seed=5)

    response = admin_client.get(CHANGELIST)

    assert len(response.context["cl"].result_list) == 100
    assert response.context["cl"].result_count == 150
    assert response.context["cl"].show_full_result_count is False


def test_lead_change_page_shows_the_derived_domain(admin_client, six_leads):
    lead = six_leads["Alpha"]

    response = admin_client.get(reverse("admin:leads_lead_change", args=[lead.pk]))

    assert response.status_code == 200
    assert b"alpha-site.example.com" in response.content
