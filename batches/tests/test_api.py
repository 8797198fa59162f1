"""The batch API: who may call what, bad input, and what each endpoint answers."""

from datetime import timedelta
from decimal import Decimal

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from batches.models import BatchReport, BatchReportLead
from batches.selectors import batch_snapshot
from batches.tests.api_fixtures import (
    ROLE_PERMISSIONS,
    ROLES,
    add_lead_rows,
    make_batch,
    make_user,
    token_client,
)
from leads.models import Lead


@pytest.fixture
def viewer_client(db) -> APIClient:
    return token_client(make_user("viewer", ROLE_PERMISSIONS["viewer"]))


@pytest.fixture
def runner_user(db):
    return make_user("runner", ROLE_PERMISSIONS["runner"])


@pytest.fixture
def runner_client(runner_user) -> APIClient:
    return token_client(runner_user)


S = BatchReport.Status

# endpoint: (method, path template, body, status for a caller with the needed permission)
ENDPOINTS = {
    "list": ("get", "/api/batches/", None, 200),
    "retrieve": ("get", "/api/batches/{queued}/", None, 200),
    "leads": ("get", "/api/batches/{queued}/leads/", None, 200),
    "export_csv": ("get", "/api/batches/{finished}/export.csv", None, 200),
    "reports_zip": ("get", "/api/batches/{finished}/reports.zip", None, 200),
    "analytics": ("get", "/api/batches/analytics/", None, 200),
    "preview": ("post", "/api/batches/preview/", {"lead_ids": ["{lead}"]}, 200),
    "create": ("post", "/api/batches/", {"lead_ids": ["{lead}"], "name": "Matrix"}, 201),
    "cancel": ("post", "/api/batches/{queued}/cancel/", None, 200),
    "retry_failed": ("post", "/api/batches/{finished}/retry-failed/", None, 200),
}
READS = {"list", "retrieve", "leads", "export_csv", "reports_zip", "analytics"}
MAY_READ = {"batches_only", "viewer", "runner"}
MAY_RUN = {"run_only", "runner"}
# The reports themselves also need reports.view_report.
MAY_READ_REPORTS = {"viewer", "runner"}


def _expected(role: str, endpoint: str) -> int:
    if role == "anonymous":
        return 401
    allowed = MAY_READ if endpoint in READS else MAY_RUN
    if endpoint == "reports_zip":
        allowed = MAY_READ_REPORTS
    return ENDPOINTS[endpoint][3] if role in allowed else 403


@pytest.fixture
def world(db):
    queued = make_batch(status=S.QUEUED)
    add_lead_rows(queued, ["pending", "pending"])
    finished = make_batch(status=S.COMPLETED_WITH_ERRORS, finished_at=timezone.now())
    add_lead_rows(finished, ["succeeded", "failed"])
    lead = Lead.objects.create(
        company_name="Fresh Lead", website="https://fresh.example.com", industry=Lead.Industry.DENTIST
    )
    return {"queued": queued.pk, "finished": finished.pk, "lead": lead.pk}


def _fill(value, world):
    if isinstance(value, str):
        return int(value.format(**world)) if value == "{lead}" else value.format(**world)
    if isinstance(value, list):
        return [_fill(item, world) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, world) for key, item in value.items()}
    return value


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("role", ROLES)
def test_authorisation_matrix(world, role, endpoint):
    user = None if role == "anonymous" else make_user(role, ROLE_PERMISSIONS[role])
    client = token_client(user)
    method, path, body, _ = ENDPOINTS[endpoint]
    batches_before = BatchReport.objects.count()
    response = getattr(client, method)(path.format(**world), _fill(body, world), format="json")
    expected = _expected(role, endpoint)
    assert response.status_code == expected, getattr(response, "data", None)
    if expected == 401:
        assert response["WWW-Authenticate"] == "Token"
    if expected in (401, 403):
        assert BatchReport.objects.count() == batches_before
        assert set(response.json()) == {"detail"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ROLES)
async def test_authorisation_matrix_websocket(role):
    from asgiref.sync import sync_to_async

    from leadgen.asgi import application

    @sync_to_async
    def setup():
        batch = make_batch(status=S.QUEUED)
        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
        if role != "anonymous":
            client = Client()
            client.force_login(make_user(role, ROLE_PERMISSIONS[role]))
            headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
        return batch.pk, headers

    batch_id, headers = await setup()
    communicator = WebsocketCommunicator(application, f"/ws/batches/{batch_id}/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    if role in MAY_READ:
        message = await communicator.receive_json_from(timeout=5)
        assert message["type"] == "snapshot"
        assert message["batch"]["id"] == batch_id
        await communicator.disconnect()
    else:
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4003}
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db
def test_session_writes_need_csrf_token_writes_do_not(world, runner_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(runner_user)
    path = f"/api/batches/{world['queued']}/cancel/"
    refused = client.post(path)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert BatchReport.objects.get(pk=world["queued"]).status == S.QUEUED
    assert client.get(f"/api/batches/{world['queued']}/").status_code == 200

    token = "a" * 32
    client.cookies["csrftoken"] = token
    assert client.post(path, HTTP_X_CSRFTOKEN=token).status_code == 200

    key = Token.objects.create(user=runner_user).key
    other = APIClient(enforce_csrf_checks=True)
    response = other.post(
        f"/api/batches/{world['finished']}/retry-failed/", HTTP_AUTHORIZATION=f"Token {key}"
    )
    assert response.status_code == 200


@pytest.mark.django_db
def test_staff_create_api_tokens_in_the_admin(admin_client):
    user = make_user("integration", ROLE_PERMISSIONS["runner"])
    assert admin_client.get("/admin/authtoken/tokenproxy/add/").status_code == 200
    response = admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": user.pk})
    assert response.status_code == 302
    key = Token.objects.get(user=user).key
    assert APIClient().get("/api/batches/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert APIClient().get("/api/batches/", HTTP_AUTHORIZATION=f"Token {key}x").status_code == 401

    staff = get_user_model().objects.create_user("plain-staff", password=None, is_staff=True)
    plain = Client()
    plain.force_login(staff)
    assert plain.get("/admin/authtoken/tokenproxy/add/").status_code == 403


# ---------------------------------------------------------------------------------------------------------
# Bad input: 400 with field errors and nothing created.


@pytest.fixture
def leads(db):
    return [
        Lead.objects.create(
            company_name=f"Lead {i}", website=f"https://bad{i}.example.com", industry=Lead.Industry.PLUMBER
        ).pk
        for i in range(3)
    ]


BAD_BODIES = {
    "missing selection": ({}, {"lead_ids", "filters"}),
    "empty lead_ids": ({"lead_ids": []}, {"lead_ids"}),
    "both selections": ({"lead_ids": [0], "filters": {"industry": "plumber"}}, {"lead_ids", "filters"}),
    "lead_ids not a list": ({"lead_ids": "1,2"}, {"lead_ids"}),
    "lead id not a number": ({"lead_ids": ["x"]}, {"lead_ids"}),
    "negative lead id": ({"lead_ids": [-1]}, {"lead_ids"}),
    "unknown lead id": ({"lead_ids": [0, 999_999]}, {"lead_ids"}),
    "duplicate lead ids": ({"lead_ids": [0, 0]}, {"lead_ids"}),
    "too many leads": ({"lead_ids": [0, 1, 2]}, {"lead_ids"}),
    "selection by filters is empty": ({"filters": {"industry": "dentist"}}, {"filters"}),
    # Filter errors are keyed by the filter's name, as leads.selectors.lead_list reports them.
    "unknown filter field": ({"filters": {"colour": "red"}}, {"colour"}),
    "invalid filter value": ({"filters": {"score_tier": "Z"}}, {"score_tier"}),
    "filters not an object": ({"filters": ["industry"]}, {"filters"}),
    "budget not numeric": ({"lead_ids": [0], "budget_usd": "abc"}, {"budget_usd"}),
    "budget negative": ({"lead_ids": [0], "budget_usd": -1}, {"budget_usd"}),
    "budget NaN string": ({"lead_ids": [0], "budget_usd": "NaN"}, {"budget_usd"}),
    "budget Infinity string": ({"lead_ids": [0], "budget_usd": "Infinity"}, {"budget_usd"}),
    "budget -Infinity string": ({"lead_ids": [0], "budget_usd": "-Infinity"}, {"budget_usd"}),
    "budget zero": ({"lead_ids": [0], "budget_usd": "0"}, {"budget_usd"}),
    "budget too large": ({"lead_ids": [0], "budget_usd": "100000000"}, {"budget_usd"}),
    "concurrency zero": ({"lead_ids": [0], "concurrency": 0}, {"concurrency"}),
    "concurrency 51": ({"lead_ids": [0], "concurrency": 51}, {"concurrency"}),
    "concurrency not a number": ({"lead_ids": [0], "concurrency": "many"}, {"concurrency"}),
    "max_retries 11": ({"lead_ids": [0], "max_retries": 11}, {"max_retries"}),
    "skip_recent_days negative": ({"lead_ids": [0], "skip_recent_days": -1}, {"skip_recent_days"}),
}
CREATE_ONLY = {
    "estimate above the budget": ({"lead_ids": [0, 1], "budget_usd": "0.0001"}, {"budget_usd"}),
    "name too long": ({"lead_ids": [0], "name": "x" * 201}, {"name"}),
}


def _with_ids(body, leads):
    if "lead_ids" in body and isinstance(body["lead_ids"], list):
        body = {**body, "lead_ids": [leads[i] if i in (0, 1, 2) else i for i in body["lead_ids"]]}
    return body


def _assert_nothing_created():
    assert BatchReport.objects.count() == 0
    assert BatchReportLead.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/batches/", "/api/batches/preview/"])
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_input_is_400_with_field_errors_and_creates_nothing(runner_client, leads, settings, path, case):
    settings.BATCH_MAX_LEADS = 2
    body, fields = BAD_BODIES[case]
    response = runner_client.post(path, _with_ids(body, leads), format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) - {"detail"} == fields
    _assert_nothing_created()


@pytest.mark.parametrize("case", list(CREATE_ONLY))
def test_bad_launch_is_400_and_creates_nothing(runner_client, leads, case):
    body, fields = CREATE_ONLY[case]
    response = runner_client.post("/api/batches/", _with_ids(body, leads), format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) - {"detail"} == fields
    _assert_nothing_created()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_literals_are_400(runner_client, leads, literal):
    body = f'{{"lead_ids": [{leads[0]}], "budget_usd": {literal}}}'
    response = runner_client.post("/api/batches/", body, content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()
    _assert_nothing_created()


def test_malformed_json_is_400(runner_client, leads):
    response = runner_client.post("/api/batches/", "{not json", content_type="application/json")
    assert response.status_code == 400
    _assert_nothing_created()


# ---------------------------------------------------------------------------------------------------------
# What the endpoints answer.


def test_create_launches_and_returns_the_snapshot(runner_client, runner_user, leads):
    response = runner_client.post(
        "/api/batches/",
        {"lead_ids": leads, "name": "Plumbers", "concurrency": 5, "max_retries": 2, "budget_usd": "100"},
        format="json",
    )
    assert response.status_code == 201
    batch = BatchReport.objects.get()
    assert response.json() == batch_snapshot(batch_id=batch.pk)
    assert response["Location"] == f"http://testserver/api/batches/{batch.pk}/"
    assert (batch.name, batch.status, batch.created_by, batch.concurrency, batch.max_retries) == (
        "Plumbers",
        S.QUEUED,
        runner_user,
        5,
        2,
    )
    assert batch.budget_usd == Decimal("100")
    assert list(batch.leads.order_by("position").values_list("lead_id", flat=True)) == leads


def test_preview_returns_the_cost_preview_and_creates_nothing(runner_client, leads):
    response = runner_client.post(
        "/api/batches/preview/", {"lead_ids": leads, "budget_usd": "0.0001"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["lead_count"] == 3
    assert body["billable_leads"] == 3
    assert Decimal(body["total_usd"]) > 0
    assert body["budget"]["within_budget"] is False
    assert body["budget"]["budget_usd"] == "0.0001"
    assert {line["provider"] for line in body["providers"]} >= {"pagespeed", "llm"}
    _assert_nothing_created()


def test_preview_by_filters(runner_client, leads):
    response = runner_client.post(
        "/api/batches/preview/", {"filters": {"industry": "plumber"}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["lead_count"] == 3


def test_list_filters_and_paginates(viewer_client, runner_user):
    other = make_user("other", [])
    old = make_batch(user=runner_user, status=S.COMPLETED)
    BatchReport.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    running = make_batch(user=runner_user, status=S.RUNNING)
    theirs = make_batch(user=other, status=S.COMPLETED)

    def ids(**params):
        response = viewer_client.get("/api/batches/", params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [theirs.pk, running.pk, old.pk]
    assert ids(status="completed") == [theirs.pk, old.pk]
    assert ids(created_by=other.pk) == [theirs.pk]
    cutoff = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(created_after=cutoff) == [theirs.pk, running.pk]
    assert ids(created_before=cutoff) == [old.pk]
    # Offsets beyond what PostgreSQL accepts are converted to UTC first.
    far_offset = (timezone.now() - timedelta(days=1)).astimezone(timezone.get_fixed_timezone(-16 * 60 - 27))
    assert ids(created_before=far_offset.isoformat()) == [old.pk]
    page = viewer_client.get("/api/batches/", {"page_size": 2}).json()
    assert page["count"] == 3
    assert [row["id"] for row in page["results"]] == [theirs.pk, running.pk]
    assert page["next"].endswith("page=2&page_size=2")
    row = page["results"][1]
    assert row["created_by"] == runner_user.pk
    assert row["created_by_username"] == "runner"
    assert row["url"] == f"http://testserver/api/batches/{running.pk}/"
    assert row["status"] == "running"
    assert row["estimated_cost_usd"] == "0.0000"


@pytest.mark.parametrize(
    "params",
    [
        {"status": "nope"},
        {"created_after": "yesterday"},
        {"created_before": "0001-01-01T00:00:00+16:27"},
        {"created_by": "x"},
        {"created_by": "1.5"},
        {"created_by": str(2**64)},
    ],
)
def test_list_rejects_invalid_filter_values(viewer_client, params):
    response = viewer_client.get("/api/batches/", params)
    assert response.status_code == 400
    assert list(response.json()) == list(params)


def test_retrieve_returns_the_snapshot_and_404_for_unknown(viewer_client, world):
    response = viewer_client.get(f"/api/batches/{world['finished']}/")
    assert response.status_code == 200
    assert response.json() == batch_snapshot(batch_id=world["finished"])
    assert response.json()["total"] == 2
    missing = viewer_client.get("/api/batches/999999/")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not found."}


def test_leads_are_paginated_and_filtered_by_status(viewer_client):
    batch = make_batch(status=S.RUNNING)
    rows = add_lead_rows(batch, ["succeeded", "failed", "pending", "failed"])
    BatchReportLead.objects.filter(pk=rows[1].pk).update(
        attempts=4, error_code="http_503", last_error="pagespeed: 503", cost_usd=Decimal("0.1")
    )
    body = viewer_client.get(f"/api/batches/{batch.pk}/leads/", {"page_size": 3}).json()
    assert body["count"] == 4
    assert [row["position"] for row in body["results"]] == [0, 1, 2]
    failed = viewer_client.get(f"/api/batches/{batch.pk}/leads/", {"status": "failed"}).json()["results"]
    assert [row["id"] for row in failed] == [rows[1].pk, rows[3].pk]
    first = failed[0]
    assert first["lead_id"] == rows[1].lead_id
    assert first["company_name"] == rows[1].lead.company_name
    assert (first["status"], first["attempts"], first["error_code"], first["error"], first["cost_usd"]) == (
        "failed",
        4,
        "http_503",
        "pagespeed: 503",
        "0.1000",
    )
    assert first["report_url"] is None
    assert viewer_client.get(f"/api/batches/{batch.pk}/leads/", {"status": "bogus"}).status_code == 400
    assert viewer_client.get("/api/batches/999999/leads/").status_code == 404


def test_cancel_and_its_conflicts(runner_client, world):
    response = runner_client.post(f"/api/batches/{world['queued']}/cancel/")
    assert response.status_code == 200
    batch = BatchReport.objects.get(pk=world["queued"])
    assert response.json()["status"] == batch.status == S.CANCELLED
    assert response.json()["cancelled"] == 2
    again = runner_client.post(f"/api/batches/{world['queued']}/cancel/")
    assert again.status_code == 409
    assert set(again.json()) == {"detail"}
    assert runner_client.post("/api/batches/999999/cancel/").status_code == 404


def test_retry_failed_and_its_conflicts(runner_client, world):
    running = make_batch(status=S.RUNNING)
    add_lead_rows(running, ["failed", "processing"], lease_owner="w1", lease_expires_at=timezone.now())
    assert runner_client.post(f"/api/batches/{running.pk}/retry-failed/").status_code == 409
    clean = make_batch(status=S.COMPLETED)
    add_lead_rows(clean, ["succeeded"])
    response = runner_client.post(f"/api/batches/{clean.pk}/retry-failed/")
    assert response.status_code == 409
    assert set(response.json()) == {"detail"}

    response = runner_client.post(f"/api/batches/{world['finished']}/retry-failed/")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert response.json()["pending"] == 1
    assert response.json()["succeeded"] == 1
    assert runner_client.post("/api/batches/999999/retry-failed/").status_code == 404
