"""The changelist runs a constant number of queries, whether the table holds 100 or 100,000 leads."""

import pytest
from django.urls import reverse

from leads.models import Lead
from leads.services import lead_seed

# Session, user, filtered count, the page, the date hierarchy's range and its dates, and one DISTINCT
# query each for the state and source filters' options.
MAX_QUERIES = 8
QUERY = "?industry__exact=dentist&has_email=yes&report_age=never&q=dental"


def changelist_query_count(client, django_assert_max_num_queries) -> int:
    with django_assert_max_num_queries(MAX_QUERIES) as captured:
        response = client.get(reverse("admin:leads_lead_changelist") + QUERY)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) > 0
    return len(captured)


@pytest.mark.slow
@pytest.mark.django_db
def test_changelist_query_count_is_the_same_at_100_and_100000_leads(
    admin_client, django_assert_max_num_queries
):
    lead_seed(count=100, seed=11)
    admin_client.get(reverse("admin:leads_lead_changelist"))  # warm the session
    at_100 = changelist_query_count(admin_client, django_assert_max_num_queries)

    lead_seed(count=99_900, seed=12)
    assert Lead.objects.count() == 100_000
    at_100k = changelist_query_count(admin_client, django_assert_max_num_queries)

    assert at_100k == at_100
