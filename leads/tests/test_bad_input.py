"""Odd input to the lead filters (the API, batch selections, the admin): a 4xx with the reason, never 500."""

import json

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from leadgen.filters import SEARCH_MAX_LENGTH, SEARCH_MAX_WORDS
from leads.models import Lead

pytestmark = pytest.mark.django_db

MANY_WORDS = " ".join(f"w{n}" for n in range(1100))


@pytest.fixture
def api(django_user_model):
    user = django_user_model.objects.create_user(username="runner", password=None)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_lead", "run_batch", "view_batchreport"])
    )
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def lead():
    return Lead.objects.create(
        company_name="Harbor Dental", website="https://harbor-dental.example", email="hi@harbor.example"
    )


def test_a_search_of_more_words_than_the_limit_is_refused_with_the_reason(api, lead):
    words = " ".join(["harbor"] * (SEARCH_MAX_WORDS + 1))

    response = api.get("/api/leads/", {"search": words})

    assert response.status_code == 400
    assert response.json() == {"search": [f"Search for at most {SEARCH_MAX_WORDS} words (11 given)."]}


def test_a_search_of_1100_words_is_refused_for_its_length(api, lead):
    response = api.get("/api/leads/", {"search": MANY_WORDS})

    assert response.status_code == 400
    assert response.json() == {
        "search": [f"Search for at most {SEARCH_MAX_LENGTH} characters ({len(MANY_WORDS)} given)."]
    }


def test_a_search_within_the_limits_still_finds(api, lead):
    words = " ".join(["harbor"] * SEARCH_MAX_WORDS)

    response = api.get("/api/leads/", {"search": words})

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [lead.pk]


def test_the_preview_refuses_a_search_of_1100_words(api, lead):
    response = api.post("/api/batches/preview/", {"filters": {"search": MANY_WORDS}}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["search"]
    assert "at most" in response.json()["search"][0]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("created_after", {"a": 1}),
        ("created_after", ["2025-01-01T00:00:00Z"]),
        ("industry", ["dentist", "plumber"]),
        ("search", {"$ne": ""}),
        ("has_website", [True]),
    ],
)
def test_a_filter_value_that_is_a_list_or_an_object_is_a_400(api, lead, name, value):
    response = api.post("/api/batches/preview/", {"filters": {name: value}}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        name: ["Give one value (a string, a number or true/false), not a list or an object."]
    }


@pytest.mark.parametrize(
    ("name", "value"), [("created_after", 5), ("industry", 1.5), ("created_before", True)]
)
def test_a_scalar_of_the_wrong_type_is_a_400_under_its_name(api, lead, name, value):
    response = api.post("/api/batches/preview/", {"filters": {name: value}}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == [name]


def test_a_body_over_the_upload_limit_is_a_413_in_json(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"lead_ids": list(range(1, 5000))})

    response = api.post("/api/batches/preview/", body, content_type="application/json")

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "The request body is larger than the limit of 10000 bytes."}


@pytest.mark.parametrize(
    "changelist", ["/admin/leads/lead/", "/admin/batches/batchreport/", "/admin/auth/user/"]
)
def test_the_admin_refuses_a_search_of_1100_words_with_the_reason(admin_client, lead, changelist):
    response = admin_client.get(changelist, {"q": MANY_WORDS})

    assert response.status_code == 400
    assert f"Search for at most {SEARCH_MAX_LENGTH} characters" in response.content.decode()
    assert admin_client.get(changelist, {"q": "harbor"}).status_code == 200


def test_admin_autocomplete_refuses_a_long_term_in_json(admin_client):
    response = admin_client.get("/admin/autocomplete/", {"term": " ".join(["harbor"] * 12)})

    assert response.status_code == 400
    assert response.json() == {"error": f"Search for at most {SEARCH_MAX_WORDS} words (12 given)."}
