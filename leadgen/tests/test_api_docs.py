import re

import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(client, django_user_model):
    """Signed in: the schema and the docs are not public."""
    client.force_login(django_user_model.objects.create_user("reader", password=None))
    return client


def test_schema_is_a_valid_openapi_3_document(client):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)  # raises on any deviation from the OpenAPI 3 JSON schema
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Leadgen API"


def test_schema_documents_the_lead_list_and_its_filters(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/leads/"]["get"]
    parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert {
        "industry", "state", "status", "source", "score_tier", "has_website", "has_email", "report_age",
        "search", "created_after", "created_before", "page", "page_size",
    } <= set(parameters)  # fmt: skip
    assert parameters["score_tier"]["enum"] == ["A", "B", "C"]
    assert parameters["report_age"]["enum"] == ["last_30", "never", "older_30"]
    assert parameters["has_email"]["type"] == "boolean"
    assert "PaginatedLeadList" in schema["components"]["schemas"]


def test_swagger_ui_loads_with_local_assets_only(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    external = re.findall(r"""(?:src|href)=["'](https?:)?//""", html)
    assert external == []
    assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
