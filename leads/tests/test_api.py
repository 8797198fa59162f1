import pytest
from rest_framework.test import APIClient

from leads.models import Lead
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

URL = "/api/leads/"


@pytest.fixture
def api(staff_viewer):
    client = APIClient()
    client.force_authenticate(staff_viewer)
    return client


def test_filters_return_exactly_the_matching_leads(api):
    dentist = Lead.Industry.DENTIST
    match_1 = LeadFactory(industry=dentist, score=80, email="")
    match_2 = LeadFactory(industry=dentist, score=100, email="")
    LeadFactory(industry=dentist, score=79, email="")  # tier B
    LeadFactory(industry=dentist, score=90)  # has an email
    LeadFactory(industry=Lead.Industry.PLUMBER, score=90, email="")  # other industry

    response = api.get(URL, {"industry": "dentist", "score_tier": "A", "has_email": "false"})

    assert response.status_code == 200
    assert response.data["count"] == 2
    assert {row["id"] for row in response.data["results"]} == {match_1.pk, match_2.pk}


def test_every_filter_of_the_admin_is_available(api, six_leads):
    cases = {
        "state=Texas&report_age=never": {"Alpha", "Foxtrot"},
        "has_website=false&report_age=older_30": {"Delta"},
        "source=referral&status=customer": {"Echo"},
        "search=charlie-site": {"Charlie"},
    }
    for query, expected in cases.items():
        response = api.get(f"{URL}?{query}")
        assert {row["company_name"].removesuffix(" Company") for row in response.data["results"]} == expected


def test_lead_fields_and_pagination(api, settings):
    lead = LeadFactory(website="https://www.Example-Dental.com/about", score=81)
    LeadFactory.create_batch(2)

    response = api.get(URL, {"page_size": 2})

    assert response.data["count"] == 3
    assert len(response.data["results"]) == 2
    assert response.data["next"] is not None
    row = api.get(f"{URL}{lead.pk}/").data
    assert row["domain"] == "example-dental.com"
    assert row["score"] == 81
    assert set(row) == {
        "id", "company_name", "website", "domain", "email", "phone", "contact_name", "industry", "city",
        "state", "country", "employee_count", "score", "source", "status", "last_reported_at",
        "created_at", "updated_at",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("query", "field"),
    [("score_tier=Z", "score_tier"), ("has_email=maybe", "has_email"), ("industry=bakery", "industry")],
)
def test_invalid_filter_values_are_a_400_with_field_errors(api, query, field):
    response = api.get(f"{URL}?{query}")

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_anonymous_is_refused():
    response = APIClient().get(URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_staff_without_view_permission_is_forbidden(django_user_model, fast_passwords):
    user = django_user_model.objects.create_user(username="noperm", password="pw", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)

    assert client.get(URL).status_code == 403


def test_token_authentication_with_view_permission(staff_viewer):
    from rest_framework.authtoken.models import Token

    LeadFactory()
    token = Token.objects.create(user=staff_viewer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = client.get(URL)

    assert response.status_code == 200
    assert response.data["count"] == 1


def test_the_api_is_read_only(admin_user):
    lead = LeadFactory()
    api = APIClient()
    api.force_authenticate(admin_user)

    assert api.post(URL, {"company_name": "X", "industry": "dentist"}).status_code == 405
    assert api.delete(f"{URL}{lead.pk}/").status_code == 405
