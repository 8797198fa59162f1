"""Signed completion webhooks and the completion email.

Signature: each POST carries `X-Leadgen-Timestamp: <unix seconds>` and
`X-Leadgen-Signature: sha256=<hex>` where hex = HMAC-SHA256(key=endpoint secret,
message=f"{timestamp}.{raw request body}") over UTF-8. A receiver recomputes it over the raw body it
received, compares with `hmac.compare_digest`, and rejects old timestamps to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import timedelta

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from batches.models import BatchReport, WebhookDelivery, WebhookEndpoint
from leadgen import egress
from leadgen.display import usd

logger = logging.getLogger(__name__)

EVENT_FINISHED = "batch.finished"
SIGNATURE_HEADER = "X-Leadgen-Signature"
TIMESTAMP_HEADER = "X-Leadgen-Timestamp"


def webhook_signature(*, secret: str, timestamp: int | str, body: str) -> str:
    """The value of the X-Leadgen-Signature header for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_verify(
    *, secret: str, timestamp: str, body: str, signature: str, max_age_seconds: int = 300
) -> bool:
    """What a receiver does: check the signature and that the timestamp is recent."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return age <= max_age_seconds and hmac.compare_digest(expected, signature)


def completion_announce(*, batch_id: int) -> None:
    """Email the launcher and queue one webhook delivery per active endpoint (called once per finish)."""
    from django_q.tasks import async_task

    from batches.selectors import batch_snapshot

    snapshot = batch_snapshot(batch_id=batch_id)
    batch = BatchReport.objects.select_related("created_by").get(pk=batch_id)
    _email_launcher(batch, snapshot)
    body = json.dumps({"event": EVENT_FINISHED, "batch": snapshot}, separators=(",", ":"), sort_keys=True)
    for endpoint_id in WebhookEndpoint.objects.filter(is_active=True).values_list("pk", flat=True):
        async_task(
            "batches.tasks.webhook_deliver_task",
            endpoint_id,
            batch_id,
            EVENT_FINISHED,
            uuid.uuid4().hex,
            body,
            1,
        )


def _email_launcher(batch: BatchReport, snapshot: dict) -> None:
    user = batch.created_by
    if user is None or not user.email:
        return
    subject = f"Batch {batch.name!r} {batch.get_status_display().lower()}"
    lines = [
        f"Batch: {batch.name} (#{batch.pk})",
        f"Status: {batch.get_status_display()}"
        + (f" (stopped: {batch.stop_reason})" if batch.stop_reason else ""),
        f"Leads: {snapshot['total']} - succeeded {snapshot['succeeded']}, failed {snapshot['failed']}, "
        f"skipped {snapshot['skipped']}, cancelled {snapshot['cancelled']}",
        f"Cost: {usd(snapshot['actual_cost_usd'])} (estimated {usd(snapshot['estimated_cost_usd'])})",
    ]
    if batch.stop_detail:
        lines.append(f"Why it stopped: {batch.stop_detail}")
    if batch.stop_reason == "provider_unavailable":
        lines.append(
            "What to do: fix the provider's key or plan, then resume the batch; no lead spent an attempt."
        )
    try:
        send_mail(subject, "\n".join(lines), None, [user.email])
    except Exception:
        logger.warning("could not email the completion of batch %s", batch.pk, exc_info=True)


def webhook_deliver(
    *, endpoint_id: int, batch_id: int, event: str, event_id: str, body: str, attempt: int
) -> str:
    """One delivery attempt, logged; schedules the next attempt with backoff after a failure."""
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, is_active=True).first()
    if endpoint is None:
        return "inactive"
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Leadgen-Webhooks/1",
        "X-Leadgen-Event": event,
        "X-Leadgen-Delivery": event_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(secret=endpoint.secret, timestamp=timestamp, body=body),
    }
    started = time.monotonic()
    status_code = None
    error = ""
    refused = False
    try:
        status_code = _post(endpoint.url, body=body, headers=headers, started=started)
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except egress.EgressRefused as exc:
        # Refused by the egress policy: nothing was sent, and retrying cannot change that.
        error, refused = f"{egress.BLOCKED_ADDRESS}: {exc.message}", True
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    duration_ms = int((time.monotonic() - started) * 1000)
    last = refused or attempt >= settings.WEBHOOK_MAX_ATTEMPTS
    if not error:
        status = WebhookDelivery.Status.SUCCEEDED
    else:
        status = WebhookDelivery.Status.FAILED if last else WebhookDelivery.Status.RETRYING
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        batch_id=batch_id,
        event=event,
        event_id=event_id,
        attempt=attempt,
        status=status,
        status_code=status_code,
        error=error[:2000],
        duration_ms=duration_ms,
    )
    if status == WebhookDelivery.Status.RETRYING:
        _schedule_retry(endpoint_id, batch_id, event, event_id, body, attempt + 1)
    return status


def _post(url: str, *, body: str, headers: dict[str, str], started: float) -> int:
    """POST `body` to `url` under the egress policy within WEBHOOK_TIMEOUT_SECONDS in all (connection
    to the status line; the receiver's answer body is not read); returns the status code."""
    seconds = settings.WEBHOOK_TIMEOUT_SECONDS
    transport = egress.EgressSyncTransport(deadline=started + seconds)
    with (
        httpx.Client(transport=transport, trust_env=False, timeout=seconds) as client,
        client.stream("POST", url, content=body.encode(), headers=headers) as response,
    ):
        return response.status_code


def _schedule_retry(endpoint_id, batch_id, event, event_id, body, attempt) -> None:
    from django_q.models import Schedule
    from django_q.tasks import async_task, schedule

    args = ("batches.tasks.webhook_deliver_task", endpoint_id, batch_id, event, event_id, body, attempt)
    delay = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 2)
    if delay <= 0:
        async_task(*args)
        return
    schedule(
        *args,
        name=f"webhook {event_id} attempt {attempt}",
        schedule_type=Schedule.ONCE,
        repeats=1,
        next_run=timezone.now() + timedelta(seconds=delay),
    )
