"""The per-process memo of batch snapshots: the sockets, the status API and the live page's rows share it.

What it keeps true:
- a snapshot handed out is never older than SNAPSHOT_TTL_SECONDS (the moment its read started), so N
  sockets and any number of status polls on one batch cost one snapshot read per TTL per process;
- concurrent readers of one batch share the read in flight (async readers a task, threads a lock);
- after `forget(batch_id)` (an event this process sent, or a terminal event it heard) no snapshot read
  before that moment is handed out: a status read after a finished event is fresh;
- an unknown batch is never remembered (BatchReport.DoesNotExist reaches every caller).

Each snapshot is encoded to JSON once, and its ETag computed once, however many callers send it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time

from channels.db import database_sync_to_async

from batches.selectors import batch_snapshot

SNAPSHOT_TTL_SECONDS = 0.5
# Fields that move with the clock alone: left out of the ETag, which changes when the batch does.
CLOCK_FIELDS = frozenset(
    {"eta_seconds", "eta_low_seconds", "eta_high_seconds", "eta_text", "throughput_per_minute"}
)


@database_sync_to_async
def _read_snapshot(batch_id: int) -> dict:
    return batch_snapshot(batch_id=batch_id)


class SnapshotMemo:
    """`get()` for coroutines, `get_sync()` for threads; both read and fill the same entries.

    `not_before` (a `time.monotonic()` value) asks for a read that started no earlier than that moment,
    e.g. after a terminal event arrived, so the answer cannot predate what the caller has heard of.
    """

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._values: dict[int, tuple[float, dict]] = {}
        self._in_flight: dict[int, tuple[float, asyncio.Task]] = {}
        self._floors: dict[int, float] = {}
        self._locks: dict[int, threading.Lock] = {}

    def _oldest(self, batch_id: int, not_before: float | None) -> float:
        oldest = time.monotonic() - self.ttl if not_before is None else not_before
        return max(oldest, self._floors.get(batch_id, float("-inf")))

    def _fresh(self, batch_id: int, oldest: float) -> dict | None:
        cached = self._values.get(batch_id)
        return cached[1] if cached and cached[0] >= oldest else None

    def _store(self, batch_id: int, started: float, snapshot: dict) -> None:
        cached = self._values.get(batch_id)
        if cached is None or cached[0] <= started:
            self._values[batch_id] = (started, snapshot)

    async def get(self, batch_id: int, *, not_before: float | None = None) -> dict:
        oldest = self._oldest(batch_id, not_before)
        snapshot = self._fresh(batch_id, oldest)
        if snapshot is not None:
            return snapshot
        in_flight = self._in_flight.get(batch_id)
        if (
            in_flight is None
            or in_flight[0] < oldest
            or in_flight[1].done()
            or in_flight[1].get_loop() is not asyncio.get_running_loop()
        ):
            started = time.monotonic()
            in_flight = (started, asyncio.ensure_future(self._read(batch_id, started)))
            self._in_flight[batch_id] = in_flight
        return await asyncio.shield(in_flight[1])

    def get_sync(self, batch_id: int, *, not_before: float | None = None) -> dict:
        """The snapshot for a thread (a request's view); zero queries while the memo holds a fresh one."""
        oldest = self._oldest(batch_id, not_before)
        snapshot = self._fresh(batch_id, oldest)
        if snapshot is not None:
            return snapshot
        lock = self._locks.get(batch_id) or self._locks.setdefault(batch_id, threading.Lock())
        with lock:
            snapshot = self._fresh(batch_id, oldest)
            if snapshot is not None:
                return snapshot
            started = time.monotonic()
            snapshot = batch_snapshot(batch_id=batch_id)
            self._store(batch_id, started, snapshot)
            return snapshot

    def forget(self, batch_id: int, *, seq: int | None = None) -> None:
        """From now on, hand out only snapshots of this batch read after this moment, unless the one
        remembered already has event `seq` (many sockets hearing one event cost one read)."""
        cached = self._values.get(batch_id)
        if seq is not None and cached is not None and cached[1].get("seq", -1) >= seq:
            return
        self._floors[batch_id] = time.monotonic()
        self._values.pop(batch_id, None)

    def clear(self) -> None:
        self._values.clear()
        self._in_flight.clear()
        self._floors.clear()

    async def _read(self, batch_id: int, started: float) -> dict:
        snapshot = await _read_snapshot(batch_id)
        self._store(batch_id, started, snapshot)
        return snapshot


snapshots = SnapshotMemo(ttl=SNAPSHOT_TTL_SECONDS)


class _Derived:
    __slots__ = ("etag", "snapshot", "text")

    def __init__(self, snapshot: dict):
        self.snapshot = snapshot
        self.text: str | None = None
        self.etag: str | None = None


# Keyed by the dict's identity (the memo hands the same dict to every caller of a tick); the entry keeps
# the dict alive, so an id is never reused while it is remembered.
_derived: dict[int, _Derived] = {}
_derived_lock = threading.Lock()
DERIVED_KEPT = 64


def _derived_of(snapshot: dict) -> _Derived:
    derived = _derived.get(id(snapshot))
    if derived is None or derived.snapshot is not snapshot:
        with _derived_lock:
            derived = _derived.get(id(snapshot))
            if derived is None or derived.snapshot is not snapshot:
                derived = _Derived(snapshot)
                _derived[id(snapshot)] = derived
                while len(_derived) > DERIVED_KEPT:
                    _derived.pop(next(iter(_derived)))
    return derived


def encoded(snapshot: dict) -> str:
    """The snapshot as JSON text, encoded once however many sockets and responses send it."""
    derived = _derived_of(snapshot)
    if derived.text is None:
        derived.text = json.dumps(snapshot)
    return derived.text


def snapshot_etag(snapshot: dict) -> str:
    """A strong ETag: the snapshot's `seq` and a digest of everything in it but the clock's fields.

    It changes whenever `seq` moves, and also when a lead changed without an event of its own (events
    are throttled), so a 304 never hides a change of the batch.
    """
    derived = _derived_of(snapshot)
    if derived.etag is None:
        facts = {key: value for key, value in snapshot.items() if key not in CLOCK_FIELDS}
        digest = hashlib.blake2b(json.dumps(facts, sort_keys=True).encode(), digest_size=8).hexdigest()
        derived.etag = f'"{snapshot.get("seq", 0)}-{digest}"'
    return derived.etag
