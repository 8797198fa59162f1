"""POST /api/batches/ with an Idempotency-Key: one batch per (user, key), whatever the repeats or races."""

import threading

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from batches.models import BatchReport, BatchReportLead
from batches.tests.api_fixtures import ROLE_PERMISSIONS, make_user, token_client
from leads.models import Lead


@pytest.fixture
def runner_user(db):
    return make_user("runner", ROLE_PERMISSIONS["runner"])


@pytest.fixture
def runner_client(runner_user) -> APIClient:
    return token_client(runner_user)


@pytest.fixture
def lead_ids(db):
    return [
        Lead.objects.create(
            company_name=f"Idem {i}", website=f"https://idem{i}.example.com", industry=Lead.Industry.DENTIST
        ).pk
        for i in range(3)
    ]


def _post(client, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post("/api/batches/", body, format="json", **headers)


def test_repeat_with_same_key_and_body_returns_the_same_batch(runner_client, lead_ids):
    body = {"lead_ids": lead_ids, "name": "Once", "budget_usd": "25"}
    first = _post(runner_client, body, "key-1")
    assert first.status_code == 201
    # The same body written differently (budget spelled out, defaults given) is the same request.
    second = _post(runner_client, {**body, "budget_usd": "25.0000", "concurrency": 10}, "key-1")
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert BatchReport.objects.count() == 1
    batch = BatchReport.objects.get()
    assert batch.idempotency_key == "key-1"
    assert BatchReportLead.objects.filter(batch=batch).count() == 3


def test_same_key_with_a_different_body_is_422_and_creates_nothing(runner_client, lead_ids):
    assert _post(runner_client, {"lead_ids": lead_ids}, "key-2").status_code == 201
    response = _post(runner_client, {"lead_ids": lead_ids[:2]}, "key-2")
    assert response.status_code == 422
    assert response.json()["detail"] == "This Idempotency-Key was already used with a different request body."
    assert BatchReport.objects.count() == 1
    assert BatchReportLead.objects.count() == 3


def test_keys_are_per_user_and_optional(runner_client, lead_ids):
    other = token_client(make_user("other-runner", ROLE_PERMISSIONS["runner"]))
    body = {"lead_ids": lead_ids}
    mine = _post(runner_client, body, "shared-key")
    theirs = _post(other, body, "shared-key")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert _post(runner_client, body).status_code == 201
    assert _post(runner_client, body).status_code == 201
    assert BatchReport.objects.count() == 4


def test_bad_input_with_a_key_does_not_burn_the_key(runner_client, lead_ids):
    assert _post(runner_client, {"lead_ids": [*lead_ids, 999_999]}, "key-3").status_code == 400
    assert BatchReport.objects.count() == 0
    assert _post(runner_client, {"lead_ids": lead_ids}, "key-3").status_code == 201


def test_overlong_key_is_400(runner_client, lead_ids):
    response = _post(runner_client, {"lead_ids": lead_ids}, "k" * 256)
    assert response.status_code == 400
    assert list(response.json()) == ["Idempotency-Key"]
    assert BatchReport.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_identical_requests_create_one_batch(lead_ids):
    user = make_user("racer", ROLE_PERMISSIONS["runner"])
    key = Token.objects.create(user=user).key
    body = {"lead_ids": lead_ids, "name": "Race", "budget_usd": "50"}
    barrier = threading.Barrier(10)
    results: list[tuple[int, dict]] = []
    errors: list[BaseException] = []

    def launch():
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            barrier.wait(timeout=10)
            response = _post(client, body, "race-key")
            results.append((response.status_code, response.json()))
        except BaseException as exc:  # reported below; a thread must not swallow it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=launch) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    statuses = sorted(code for code, _ in results)
    assert statuses == [200] * 9 + [201]
    assert len({body["id"] for _, body in results}) == 1
    assert BatchReport.objects.count() == 1
    assert BatchReportLead.objects.count() == 3
