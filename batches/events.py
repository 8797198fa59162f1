"""The one place that talks to the channel layer about batches.

Events are hints ("something changed, re-read the snapshot"), sent after the surrounding transaction
commits, coalesced to at most one progress event per second per batch; the terminal event always goes.
A failure to send is logged and never breaks the caller.
"""

from __future__ import annotations

import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import transaction
from django.db.models import F

from batches.models import BatchReport

logger = logging.getLogger(__name__)

GROUP_NAME_FORMAT = "batch-{id}"
PROGRESS = "batch.progress"
FINISHED = "batch.finished"
THROTTLE_SECONDS = 1
# After losing the shared throttle to another process, how long this one does not ask again.
LOST_QUIET_SECONDS = THROTTLE_SECONDS / 4

# Until when this process does not ask the shared throttle, per batch (every settle would ask): for the
# window after it won (no other progress event of the batch can go in it), and for LOST_QUIET_SECONDS
# after another process won (its window ends within THROTTLE_SECONDS; whoever asks first after that
# wins, so a progress event still goes at least every THROTTLE_SECONDS + LOST_QUIET_SECONDS while leads
# settle).
_quiet_until: dict[int, float] = {}


def batch_group(batch_id: int) -> str:
    return GROUP_NAME_FORMAT.format(id=batch_id)


def batch_event_emit(*, batch_id: int, finished: bool = False) -> bool:
    """Bump the batch's `seq` and send the event once the current transaction commits.

    Progress events are throttled per batch (shared cache, so across processes when Redis is
    configured); returns whether an event was scheduled.
    """
    if not finished and not _throttle_passes(batch_id):
        return False
    BatchReport.objects.filter(pk=batch_id).update(seq=F("seq") + 1)
    seq = BatchReport.objects.filter(pk=batch_id).values_list("seq", flat=True).first() or 0
    message = {"type": FINISHED if finished else PROGRESS, "batch_id": batch_id, "seq": seq}
    transaction.on_commit(lambda: _send(batch_id, message))
    return True


def _throttle_passes(batch_id: int) -> bool:
    """True for the first progress event of a batch in each THROTTLE_SECONDS window.

    With the cache unreachable (Redis restarting) the event goes: a hint too many costs a snapshot
    read, whereas an exception here would fail the settle that called it.
    """
    now = time.monotonic()
    if now < _quiet_until.get(batch_id, float("-inf")):
        return False
    try:
        won = cache.add(f"batch-event-throttle:{batch_id}", 1, timeout=THROTTLE_SECONDS)
    except Exception:
        logger.warning("event throttle unavailable for batch %s; sending anyway", batch_id, exc_info=True)
        return True
    _quiet_until[batch_id] = now + (THROTTLE_SECONDS if won else LOST_QUIET_SECONDS)
    return won


def throttle_reset() -> None:
    """Forget this process's throttle windows (tests clear the shared cache between cases)."""
    _quiet_until.clear()


def _send(batch_id: int, message: dict) -> None:
    from batches.snapshots import snapshots

    # This process's own readers (status API, rows) see the change at once; others within the memo's TTL.
    snapshots.forget(batch_id, seq=message["seq"])
    try:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(batch_group(batch_id), message)
    except Exception:
        logger.warning("could not send %s for batch %s", message["type"], batch_id, exc_info=True)
