"""The OpenAPI schema: complete for the batch API, valid, and what the running API actually answers."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from batches.models import BatchReport
from batches.tests.api_fixtures import add_lead_rows, make_batch, make_report, make_user

BATCH_OPERATIONS = {
    ("/api/batches/", "get"): {200, 400, 401, 403, 404},
    ("/api/batches/", "post"): {200, 201, 400, 401, 403, 422},
    ("/api/batches/preview/", "post"): {200, 400, 401, 403},
    ("/api/batches/analytics/", "get"): {200, 400, 401, 403},
    ("/api/batches/{id}/", "get"): {200, 401, 403, 404},
    ("/api/batches/{id}/leads/", "get"): {200, 400, 401, 403, 404},
    ("/api/batches/{id}/cancel/", "post"): {200, 401, 403, 404, 409},
    ("/api/batches/{id}/retry-failed/", "post"): {200, 401, 403, 404, 409},
    ("/api/batches/{id}/export.csv", "get"): {200, 401, 403, 404},
    ("/api/batches/{id}/reports.zip", "get"): {200, 401, 403, 404},
}


@pytest.fixture(scope="module")
def openapi() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_schema_is_valid_openapi_3(openapi):
    validate_schema(openapi)
    assert openapi["openapi"].startswith("3.")


@pytest.mark.parametrize(("path", "method"), list(BATCH_OPERATIONS))
def test_every_batch_operation_is_documented_with_its_error_responses(openapi, path, method):
    operation = openapi["paths"][path][method]
    assert operation["summary"]
    assert operation["description"]
    assert {int(code) for code in operation["responses"]} == BATCH_OPERATIONS[(path, method)]
    for code, response in operation["responses"].items():
        assert response["content"], code
    assert {"tokenAuth", "cookieAuth"} <= {name for item in operation["security"] for name in item}


def test_request_bodies_headers_and_examples(openapi):
    create = openapi["paths"]["/api/batches/"]["post"]
    body = create["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/BatchCreateRequest"}
    assert set(body["examples"]) == {"LaunchByFilters", "LaunchByIds"}
    assert {"in": "header", "name": "Idempotency-Key"}.items() <= create["parameters"][0].items()
    assert "examples" in create["responses"]["422"]["content"]["application/json"]
    assert "examples" in create["responses"]["200"]["content"]["application/json"]
    request = openapi["components"]["schemas"]["BatchCreateRequest"]["properties"]
    assert set(request) == {
        "lead_ids",
        "filters",
        "budget_usd",
        "skip_recent_days",
        "include_recent",
        "concurrency",
        "max_retries",
        "name",
        "brand",
    }
    assert (request["concurrency"]["minimum"], request["concurrency"]["maximum"]) == (1, 50)
    snapshot = openapi["components"]["schemas"]["BatchSnapshot"]
    assert set(snapshot["required"]) == set(snapshot["properties"])
    leads = openapi["paths"]["/api/batches/{id}/leads/"]["get"]
    assert {p["name"] for p in leads["parameters"]} == {"id", "page", "page_size", "status"}
    listing = openapi["paths"]["/api/batches/"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "page",
        "page_size",
        "status",
        "created_by",
        "created_after",
        "created_before",
    }
    assert set(openapi["paths"]["/api/batches/{id}/export.csv"]["get"]["responses"]["200"]["content"]) == {
        "text/csv"
    }


@pytest.mark.django_db
def test_schema_and_offline_docs_are_served(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("reader", password=None))
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/batches/{id}/reports.zip" in schema.json()["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()


# ---------------------------------------------------------------------------------------------------------
# Property-based: generated requests (valid and invalid) against the running API, in-process over WSGI.


FUZZED_OPERATIONS = list(BATCH_OPERATIONS)


@pytest.fixture(scope="module")
def fuzz_schema(openapi):
    return schemathesis.openapi.from_dict(openapi)


@pytest.fixture
def wsgi_app(db):
    # Django's test client keeps the test's connection open across requests; do the same here.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(db):
    user = make_user("fuzzer", ["view_batchreport", "run_batch", "reports.view_report"])
    queued = make_batch(status=BatchReport.Status.QUEUED)
    add_lead_rows(queued, ["pending", "pending"])
    finished = make_batch(status=BatchReport.Status.COMPLETED_WITH_ERRORS, finished_at=timezone.now())
    done, _ = add_lead_rows(finished, ["succeeded", "failed"])
    done.report = make_report(done.lead)
    done.save()
    return {"token": Token.objects.create(user=user).key, "ids": [queued.pk, finished.pk]}


@pytest.mark.parametrize(("path", "method"), FUZZED_OPERATIONS)
def test_generated_requests_get_no_5xx_and_match_the_schema(fuzz_schema, wsgi_app, world, path, method):
    operation = fuzz_schema[path][method.upper()]
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )

    @given(case=strategy)
    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case):
        identifier = (case.path_parameters or {}).get("id")
        if isinstance(identifier, int) and identifier % 3:
            # Mostly existing rows, so that the success paths are exercised too, not only 404.
            case.path_parameters["id"] = world["ids"][identifier % 2]
        case.call_and_validate(
            app=wsgi_app,
            headers={"Authorization": f"Token {world['token']}"},
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )

    run()
