import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from batches.engine import batch_finish_if_done
from batches.models import BatchReport, WebhookDelivery, WebhookEndpoint
from batches.services import batch_create_draft, batch_launch
from batches.tests.engine import make_leads, make_user
from batches.webhooks import webhook_signature, webhook_verify

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "s3cret-for-tests"


class Receiver:
    """A local HTTP endpoint that answers with the scripted status codes and records what it got."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _sync_tasks(monkeypatch, settings):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    # The receivers are on loopback, which the egress policy refuses unless told.
    settings.EGRESS_ALLOWED_NETWORKS = ["127.0.0.1/32"]


def finished_batch(user):
    batch = batch_create_draft(user=user, lead_ids=[lead.pk for lead in make_leads(2)])
    batch = batch_launch(batch=batch, user=user, enqueue=False)
    BatchReport.objects.filter(pk=batch.pk).update(status="running")
    batch.leads.update(status="succeeded")
    return batch


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = '{"a":1}'
    expected = hmac.new(SECRET.encode(), b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert webhook_signature(secret=SECRET, timestamp=1700000000, body=body) == f"sha256={expected}"


def test_completion_webhook_is_signed_and_verifiable_by_the_receiver():
    user = make_user()
    with Receiver([200]) as receiver:
        endpoint = WebhookEndpoint.objects.create(name="crm", url=receiver.url, secret=SECRET)
        WebhookEndpoint.objects.create(name="off", url=receiver.url, secret="x", is_active=False)
        batch = finished_batch(user)
        assert batch_finish_if_done(batch_id=batch.pk)
        assert not batch_finish_if_done(batch_id=batch.pk)
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert webhook_verify(
        secret=SECRET,
        timestamp=headers["X-Leadgen-Timestamp"],
        body=body,
        signature=headers["X-Leadgen-Signature"],
    )
    assert not webhook_verify(
        secret="wrong",
        timestamp=headers["X-Leadgen-Timestamp"],
        body=body,
        signature=headers["X-Leadgen-Signature"],
    )
    payload = json.loads(body)
    assert payload["event"] == "batch.finished"
    assert (payload["batch"]["id"], payload["batch"]["status"], payload["batch"]["succeeded"]) == (
        batch.pk,
        "completed",
        2,
    )
    delivery = WebhookDelivery.objects.get()
    assert (delivery.endpoint, delivery.attempt, delivery.status, delivery.status_code) == (
        endpoint,
        1,
        "succeeded",
        200,
    )
    assert len(mail.outbox) == 1


def test_a_failing_receiver_is_retried_then_marked_failed():
    with Receiver([500, 503, 502]) as receiver:
        WebhookEndpoint.objects.create(name="crm", url=receiver.url, secret=SECRET)
        batch = finished_batch(make_user())
        batch_finish_if_done(batch_id=batch.pk)
    deliveries = list(
        WebhookDelivery.objects.order_by("attempt").values_list("attempt", "status", "status_code")
    )
    assert deliveries == [(1, "retrying", 500), (2, "retrying", 503), (3, "failed", 502)]
    assert len({event for event in WebhookDelivery.objects.values_list("event_id", flat=True)}) == 1
    assert len(receiver.requests) == 3


def test_a_receiver_recovering_on_the_second_attempt():
    with Receiver([503, 204]) as receiver:
        WebhookEndpoint.objects.create(name="crm", url=receiver.url, secret=SECRET)
        batch_finish_if_done(batch_id=finished_batch(make_user()).pk)
    statuses = list(WebhookDelivery.objects.order_by("attempt").values_list("status", flat=True))
    assert statuses == ["retrying", "succeeded"]
    assert receiver.requests[0][1] == receiver.requests[1][1]


def test_an_unreachable_receiver_is_logged_with_the_error():
    WebhookEndpoint.objects.create(name="gone", url="http://127.0.0.1:9/hook", secret=SECRET)
    batch_finish_if_done(batch_id=finished_batch(make_user()).pk)
    last = WebhookDelivery.objects.order_by("-attempt").first()
    assert (last.attempt, last.status, last.status_code) == (3, "failed", None)
    assert "ConnectError" in last.error
