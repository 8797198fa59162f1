"""Overload answers 503 with Retry-After (JSON on the API, plain text on pages), never a 500 or a traceback.

The connection pool is made small for these tests and every one of its connections is held, as a burst
of requests would hold them; the request under test then waits out DB_POOL_TIMEOUT (and, queued behind
another for the only web thread, ASGI_QUEUE_TIMEOUT).
"""

import asyncio
import logging

import pytest
from channels.testing import HttpCommunicator
from django.db import connections
from django.test import Client
from rest_framework.authtoken.models import Token

from batches.tests.api_fixtures import make_batch, make_user
from batches.tests.ui_fixtures import make_user as make_staff_user
from leadgen.asgi import application

POOL_WAIT = 0.3


@pytest.fixture
def small_pool(settings):
    """A pool of two connections with a short wait, all of them held by "other requests" while in use."""
    connection = connections["default"]
    options = connection.settings_dict["OPTIONS"]
    original = options["pool"]
    connection.close()
    connection.close_pool()
    options["pool"] = {"min_size": 0, "max_size": 2, "timeout": POOL_WAIT}
    settings.DB_POOL_TIMEOUT = settings.ASGI_QUEUE_TIMEOUT = POOL_WAIT
    held = []

    def exhaust():
        pool = connection.pool
        pool.open()
        held.extend(pool.getconn() for _ in range(2))

    yield exhaust
    for conn in held:
        conn._pool.putconn(conn)
    connection.close()
    connection.close_pool()
    options["pool"] = original


@pytest.fixture
def viewer_token(transactional_db):
    return Token.objects.create(user=make_user("viewer", ["view_batchreport"])).key


@pytest.fixture
def queued_batch(transactional_db):
    return make_batch()


@pytest.fixture
def exhausted_pool(viewer_token, queued_batch, small_pool):
    connections["default"].close()
    small_pool()


def _no_error_logged(caplog) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not any(r.exc_info for r in caplog.records)


def test_the_api_answers_503_json_with_retry_after_when_no_connection_can_be_had(
    viewer_token, small_pool, caplog
):
    batch = make_batch()
    connections["default"].close()
    small_pool()

    response = Client().get(f"/api/batches/{batch.pk}/", HTTP_AUTHORIZATION=f"Token {viewer_token}")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "The service is busy; try again in a few seconds."}
    assert response["Retry-After"] == "2"
    _no_error_logged(caplog)


def test_a_page_answers_a_plain_503_when_no_connection_can_be_had(
    transactional_db, django_user_model, small_pool, caplog, settings
):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = make_staff_user(django_user_model, "staff", perms=("batches.view_batchreport",))
    batch = make_batch(user=user)
    client = Client()
    client.force_login(user)
    connections["default"].close()
    small_pool()

    response = client.get(f"/batches/{batch.pk}/")

    assert response.status_code == 503
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Retry-After"] == "2"
    body = response.content.decode()
    assert body == "The service is busy; try again in a few seconds.\n"
    assert "Traceback" not in body
    _no_error_logged(caplog)


async def test_over_asgi_requests_beyond_the_web_threads_wait_their_turn_then_get_503(
    viewer_token, queued_batch, exhausted_pool, settings, caplog
):
    """Through the ASGI application daphne serves: one turn (ASGI_THREADS=1), held by a request that
    waits for the exhausted pool; the next request waits for the turn and gets the 503 itself."""
    settings.ASGI_THREADS = 1
    headers = [(b"authorization", f"Token {viewer_token}".encode()), (b"host", b"localhost")]
    path = f"/api/batches/{queued_batch.pk}/"

    first = HttpCommunicator(application, "GET", path, headers=headers)
    second = HttpCommunicator(application, "GET", path, headers=headers)
    answers = await asyncio.gather(first.get_response(timeout=10), second.get_response(timeout=10))

    for answer in answers:
        assert answer["status"] == 503
        assert {name.lower(): value for name, value in answer["headers"]}[b"retry-after"] == b"2"
        assert b'"detail"' in answer["body"]
    _no_error_logged(caplog)


async def test_a_freed_web_thread_goes_to_the_request_that_waited_longest():
    from leadgen.overload import _Threads

    threads = _Threads(1)
    held = await threads.acquire(1)
    order = []

    async def request(name):
        executor = await threads.acquire(5)
        order.append(name)
        await asyncio.sleep(0)
        threads.release(executor)

    waiting = asyncio.ensure_future(request("waited"))
    await asyncio.sleep(0.01)
    threads.release(held)
    late = asyncio.ensure_future(request("arrived after the release"))
    await asyncio.gather(waiting, late)

    assert order == ["waited", "arrived after the release"]


async def test_a_request_that_waits_out_the_queue_gives_up_without_losing_a_thread():
    from leadgen.overload import _Threads

    threads = _Threads(1)
    held = await threads.acquire(1)
    with pytest.raises(TimeoutError):
        await threads.acquire(0.05)
    threads.release(held)

    assert await threads.acquire(0.05) is held
