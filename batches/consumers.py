"""The live progress socket: `/ws/batches/<id>/`.

Channel-layer events are hints only. Every message carries a snapshot read from the database, so a
dropped event, a missed group message or a restarted server costs nothing: the next tick resyncs.
"""

import asyncio
import contextlib
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import DatabaseError

from batches.events import batch_group
from batches.models import BatchReport
from batches.snapshots import encoded, snapshots

logger = logging.getLogger(__name__)

# Close codes of a socket that cannot go on (an ASGI server may send only 1000 and 3000-4999, so the
# application's own codes, after HTTP's 503 and 500): the database is away, or something else went
# wrong. Either way the page reconnects with backoff and resyncs from a fresh snapshot.
CLOSE_TRY_AGAIN_LATER = 4503
CLOSE_INTERNAL_ERROR = 4500

CLOSE_FORBIDDEN = 4003
CLOSE_NOT_FOUND = 4004

# Rate limits per socket (SPEC §6): at most one message per second, at least one every two seconds.
# The margins keep both bounds true as seen by the client despite scheduling and network jitter.
MIN_INTERVAL_SECONDS = 1.05
MAX_INTERVAL_SECONDS = 1.25
FINISHED_STATUSES = frozenset(BatchReport.FINISHED)


@database_sync_to_async
def _access(user, batch_id: int) -> int | None:
    """None when the user may follow the batch, else the close code."""
    if not (user and user.is_authenticated and user.is_active and user.has_perm("batches.view_batchreport")):
        return CLOSE_FORBIDDEN
    if not BatchReport.objects.filter(pk=batch_id).exists():
        return CLOSE_NOT_FOUND
    return None


class BatchProgressConsumer(AsyncJsonWebsocketConsumer):
    """Sends `{"type": "snapshot" | "progress" | "finished", "seq": int, "batch": <snapshot>}`.

    First a full snapshot; while the batch is not finished a progress message at least every
    MAX_INTERVAL_SECONDS and at most one per MIN_INTERVAL_SECONDS; the terminal message at once, read
    fresh so it equals `GET /api/batches/<id>/`. `seq` is the snapshot's own sequence number, made
    strictly increasing per socket. The socket stays open after the end so a retry-failed run shows up.
    """

    batch_id: int
    group_name: str = ""
    _ticker: asyncio.Task | None = None

    async def connect(self):
        self.batch_id = int(self.scope["url_route"]["kwargs"]["batch_id"])
        # Accept before closing so the browser sees the close code rather than a failed handshake.
        await self.accept()
        refused = await _access(self.scope.get("user"), self.batch_id)
        if refused:
            await self.close(code=refused)
            return
        self._seq = -1
        self._last_sent = 0.0
        self._last_snapshot: dict | None = None
        self._hint = asyncio.Event()
        self._terminal_hint_at: float | None = None
        self._resync_asked = False
        self._last_resync = 0.0
        self._finished_heard = asyncio.Event()
        self.group_name = batch_group(self.batch_id)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        self._ticker = asyncio.ensure_future(self._run())

    async def disconnect(self, code):
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # Client frames are requests at most: a binary frame or text that is not JSON means nothing,
        # and is dropped rather than ending the socket with an error.
        if text_data is None:
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content, **kwargs):
        # The protocol is server-to-client; a client may ask for a resync with {"type": "resync"}.
        # Resyncs are served at the message cadence (`_serve_resync`): those that arrive meanwhile are
        # answered together, so a flood of them costs no more reads than the batch's own messages.
        if isinstance(content, dict) and content.get("type") == "resync":
            self._resync_asked = True
            self._hint.set()

    async def batch_progress(self, event):
        self._hint.set()

    async def batch_finished(self, event):
        self._terminal_hint_at = time.monotonic()
        self._finished_heard.set()
        # The status API and the rows of this process read the same memo: fresh from now on too.
        snapshots.forget(self.batch_id, seq=event.get("seq"))
        self._hint.set()

    async def _run(self):
        """Follow the batch; a socket that cannot read it closes, so that its client reconnects rather
        than wait on a socket that has gone silent."""
        try:
            await self._follow()
        except DatabaseError:
            logger.warning(
                "batch %s: snapshot unavailable; closing the socket to be reconnected", self.batch_id
            )
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
        except Exception:
            logger.exception("batch %s: the progress socket failed", self.batch_id)
            await self.close(code=CLOSE_INTERNAL_ERROR)

    async def _follow(self):
        snapshot = await snapshots.get(self.batch_id, not_before=time.monotonic())
        await self._send("snapshot", snapshot)
        finished = snapshot["status"] in FINISHED_STATUSES
        if finished:
            await self._send("finished", snapshot)
        loop = asyncio.get_running_loop()
        while True:
            if finished:
                # Nothing to report until someone acts on the batch again (e.g. retry-failed).
                await self._hint.wait()
            else:
                timeout = max(0.0, self._last_sent + MAX_INTERVAL_SECONDS - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hint.wait(), timeout)
            if self._resync_asked:
                await self._serve_resync()
            hint_at = time.monotonic()
            not_before = self._terminal_hint_at or (hint_at if finished else None)
            self._hint.clear()
            self._terminal_hint_at = None
            snapshot = await snapshots.get(self.batch_id, not_before=not_before)
            if not finished and snapshot["status"] not in FINISHED_STATUSES:
                wait = self._last_sent + MIN_INTERVAL_SECONDS - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    snapshot = await snapshots.get(self.batch_id, not_before=self._terminal_hint_at)
            if snapshot["status"] in FINISHED_STATUSES:
                # The terminal message must equal the status API: read it fresh, and send it again
                # should the finished batch change later (the last message is always the current state).
                snapshot = await snapshots.get(self.batch_id, not_before=hint_at)
                if not finished or snapshot != self._last_snapshot:
                    await self._send("finished", snapshot)
                finished = True
                continue
            finished = False
            await self._send("progress", snapshot)

    async def _serve_resync(self) -> None:
        """Wait until MIN_INTERVAL_SECONDS after the last resync served, then ask for a fresh read.

        The end of the batch cuts the wait short: its message goes at once.
        """
        loop = asyncio.get_running_loop()
        wait = self._last_resync + MIN_INTERVAL_SECONDS - loop.time()
        if wait > 0 and self._terminal_hint_at is None:
            self._finished_heard.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished_heard.wait(), wait)
        self._resync_asked = False
        self._last_resync = loop.time()
        self._terminal_hint_at = self._terminal_hint_at or time.monotonic()

    async def _send(self, kind: str, snapshot: dict) -> None:
        self._seq = max(self._seq + 1, int(snapshot.get("seq") or 0))
        self._last_sent = asyncio.get_running_loop().time()
        self._last_snapshot = snapshot
        # The snapshot is encoded once per read and shared by every socket; only the envelope is ours.
        await self.send(text_data=f'{{"type": "{kind}", "seq": {self._seq}, "batch": {encoded(snapshot)}}}')
