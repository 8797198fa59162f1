"""Cheap status reads: the status API, the per-lead list and the live page's rows read the process's
snapshot memo (shared with the sockets), answer ETag / If-None-Match with 304, and are fresh after a
finished event."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from batches import services
from batches.engine.finish import batch_finish_if_done
from batches.models import BatchReport, BatchReportLead
from batches.selectors import batch_snapshot
from batches.snapshots import SNAPSHOT_TTL_SECONDS, snapshots
from batches.tests.api_fixtures import ROLE_PERMISSIONS, make_user, token_client
from batches.tests.ui_fixtures import make_batch
from batches.tests.ui_fixtures import make_user as make_staff_user

pytestmark = pytest.mark.django_db

S = BatchReportLead.Status
RUNNING_ROWS = [S.SUCCEEDED, S.SUCCEEDED, S.FAILED, S.PROCESSING, S.PENDING]
# The tables authentication and permission checks read (token, user, permissions, groups).
AUTH_TABLES = ("authtoken_token", "auth_user", "auth_permission", "auth_group", "django_content_type")


@pytest.fixture
def runner(db):
    return make_user("runner", ROLE_PERMISSIONS["runner"])


@pytest.fixture
def api(runner):
    return token_client(runner)


@pytest.fixture
def batch(runner):
    return make_batch(user=runner, statuses=RUNNING_ROWS)


def _settle_one(batch: BatchReport, status: str = S.SUCCEEDED) -> None:
    """What a settle writes to a lead row, without its event (events are throttled)."""
    row = BatchReportLead.objects.filter(batch=batch, status=S.PROCESSING).first()
    row.status = status
    row.finished_at = row.updated_at = timezone.now()
    row.save(update_fields=["status", "finished_at", "updated_at"])


def test_a_status_read_served_from_the_memo_runs_no_query_beyond_auth(api, batch):
    first = api.get(f"/api/batches/{batch.pk}/")
    assert first.status_code == 200

    with CaptureQueriesContext(connection) as queries:
        second = api.get(f"/api/batches/{batch.pk}/")

    assert second.status_code == 200
    assert second.json() == first.json() == batch_snapshot(batch_id=batch.pk)
    tables = [q["sql"] for q in queries.captured_queries if not any(t in q["sql"] for t in AUTH_TABLES)]
    assert tables == []
    assert len(queries.captured_queries) <= 3  # the token with its user, the user's and groups' perms


def test_the_status_answers_etag_and_304_while_seq_has_not_moved(api, batch, runner):
    first = api.get(f"/api/batches/{batch.pk}/")
    etag = first["ETag"]
    assert etag.startswith(f'"{first.json()["seq"]}-')
    assert first["Cache-Control"] == "private, no-cache"

    snapshots.clear()  # even read afresh, the same batch has the same ETag
    again = api.get(f"/api/batches/{batch.pk}/", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    with CaptureQueriesContext(connection) as queries:
        assert api.get(f"/api/batches/{batch.pk}/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert not [q for q in queries.captured_queries if "batches_" in q["sql"]]

    services.batch_pause(batch=batch, user=runner)  # its event moves seq
    snapshots.clear()
    moved = api.get(f"/api/batches/{batch.pk}/", HTTP_IF_NONE_MATCH=etag)
    assert moved.status_code == 200
    assert moved.json()["seq"] > first.json()["seq"]
    assert moved["ETag"] != etag


def test_a_lead_change_without_an_event_changes_the_etag_once_the_memo_expires(api, batch):
    etag = api.get(f"/api/batches/{batch.pk}/")["ETag"]
    _settle_one(batch)

    assert api.get(f"/api/batches/{batch.pk}/", HTTP_IF_NONE_MATCH=etag).status_code == 304  # the memo
    time.sleep(SNAPSHOT_TTL_SECONDS)
    fresh = api.get(f"/api/batches/{batch.pk}/", HTTP_IF_NONE_MATCH=etag)

    assert fresh.status_code == 200
    assert fresh.json()["processing"] == 0
    assert fresh.json()["seq"] == batch.seq  # no event, yet the ETag moved with the lead


def test_a_status_read_after_a_finished_event_is_fresh(api, batch, django_capture_on_commit_callbacks):
    assert api.get(f"/api/batches/{batch.pk}/").json()["status"] == BatchReport.Status.RUNNING
    BatchReportLead.objects.filter(batch=batch, status__in=[S.PROCESSING, S.PENDING]).update(
        status=S.SUCCEEDED, finished_at=timezone.now()
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_finish_if_done(batch_id=batch.pk)
    snapshot = api.get(f"/api/batches/{batch.pk}/").json()

    assert snapshot["status"] == BatchReport.Status.COMPLETED_WITH_ERRORS
    assert snapshot == batch_snapshot(batch_id=batch.pk)


def test_unknown_batches_are_404_and_never_remembered(api, runner):
    assert api.get("/api/batches/999999999/").status_code == 404
    created = make_batch(user=runner, statuses=[S.PENDING])
    assert api.get(f"/api/batches/{created.pk}/").status_code == 200


def test_the_browsable_api_still_renders_the_snapshot(api, batch):
    response = api.get(f"/api/batches/{batch.pk}/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "ETag" in response


def test_the_per_lead_list_answers_304_without_reading_rows(api, batch):
    first = api.get(f"/api/batches/{batch.pk}/leads/?status=succeeded")
    assert first.status_code == 200
    assert first.json()["count"] == 2

    with CaptureQueriesContext(connection) as queries:
        again = api.get(f"/api/batches/{batch.pk}/leads/?status=succeeded", HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 304
    assert not [q for q in queries.captured_queries if "batches_" in q["sql"]]
    _settle_one(batch)
    snapshots.clear()
    changed = api.get(f"/api/batches/{batch.pk}/leads/?status=succeeded", HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200
    assert changed.json()["count"] == 3


def test_the_live_page_rows_answer_304_without_reading_rows(client, django_user_model, settings, batch):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.force_login(make_staff_user(django_user_model, "staff", perms=("batches.view_batchreport",)))
    first = client.get(f"/batches/{batch.pk}/rows/")
    assert first.status_code == 200
    assert len(first.json()["rows"]) == len(RUNNING_ROWS)

    with CaptureQueriesContext(connection) as queries:
        again = client.get(f"/batches/{batch.pk}/rows/", HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 304
    assert again["ETag"] == first["ETag"]
    assert not [q for q in queries.captured_queries if "batches_" in q["sql"]]
    assert client.get("/batches/999999999/rows/").status_code == 404
