"""A runner: one bounded slice of work on a batch, with a pool of threads and a lease heartbeat.

What it keeps true:
- a runner holds at most `concurrency` leads (and the claim bounds the whole cluster to that), and at
  most RUNNER_THREADS, which fits its threads in the process's connection pool; its threads process
  and settle them while this thread claims more for the free ones;
- the leases of its leads in flight are renewed every third of BATCH_LEASE_SECONDS
  (`batch_lease_renew_v1`, called from one place, `_heartbeat`), so a lease expires only when its
  runner is gone or stuck: recovery is heartbeat-based, never elapsed time alone;
- a slice ends after RUNNER_SLICE_SECONDS (or when nothing is left to claim) once its leads in flight
  have settled, and queues its successor while the batch has work and may run: long batches are chains
  of bounded tasks that any worker on any host may pick up;
- the database going away (a restart, a failover) is waited out: claims pause, settles and renewals
  are tried again on a new connection (settles for up to a slice's length);
- any other unexpected error in a thread stops the claiming, lets the other leads in flight finish, and
  is raised; the leads stay with their leases until they are settled or recovered.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    transaction,
)
from django.utils import timezone

from batches.engine.claim import DONE, READ_AHEAD, STOP, PricedAhead, claim_leads, lease_seconds
from batches.engine.finish import batch_finish_if_done, runners_enqueue
from batches.engine.settle import process, settle
from batches.models import BatchReport, BatchReportLead

logger = logging.getLogger(__name__)

# Errors of a connection that the server dropped or refused: worth a new connection and another try.
DATABASE_GONE = (OperationalError, InterfaceError)

# How long the dispatcher waits for a result before trying to claim again while it has free threads.
WAIT_SECONDS = 0.25
# How long the dispatcher waits for a second result after the first before claiming, so that one claim
# serves two free threads. It waits only while results come this close together (the previous one
# arrived within this window): when leads take long, results are spread out and waiting would only
# leave the freed thread idle.
GATHER_SECONDS = 0.005

_RENEW = "SELECT batch_lease_renew_v1(%s::bigint, %s::text, %s::timestamptz, %s::timestamptz)"


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def run_slice(
    *, batch_id: int, max_seconds: float | None = None, workers: int | None = None, follow_up: bool = True
) -> int:
    """Work on the batch with up to `concurrency` threads for at most RUNNER_SLICE_SECONDS.

    Re-enqueues itself when work remains (`follow_up`). Returns the number of leads processed.
    """
    from reports.selectors import price_table

    close_old_connections()
    batch = (
        BatchReport.objects.filter(pk=batch_id)
        .select_related("brand")
        .only("status", "concurrency", "brand")
        .first()
    )
    if batch is None or batch.status not in BatchReport.CLAIMABLE:
        if batch is not None:
            batch_finish_if_done(batch_id=batch_id)
        return 0
    deadline = time.monotonic() + (max_seconds if max_seconds is not None else settings.RUNNER_SLICE_SECONDS)
    _freeze_startup_objects()
    prices = price_table()
    owner = new_owner()
    stop = threading.Event()
    heartbeat = threading.Thread(target=_heartbeat, args=(batch_id, owner, stop), daemon=True)
    heartbeat.start()
    # Each thread holds a pooled connection for the slice: RUNNER_THREADS keeps them inside the pool
    # (the claim bounds the batch's leads in flight across every runner to `concurrency` anyway).
    size = max(1, min(workers or batch.concurrency, batch.concurrency, settings.RUNNER_THREADS))
    try:
        processed = _dispatch(
            batch_id=batch_id, owner=owner, prices=prices, size=size, deadline=deadline, brand=batch.brand
        )
    finally:
        stop.set()
        heartbeat.join()
    if not batch_finish_if_done(batch_id=batch_id) and follow_up:
        with transaction.atomic():
            pending = BatchReportLead.objects.filter(batch_id=batch_id, status=BatchReportLead.Status.PENDING)
            runnable = BatchReport.objects.filter(pk=batch_id, status__in=BatchReport.CLAIMABLE)
            if pending.exists() and runnable.exists():
                runners_enqueue(batch_id=batch_id)
    return processed


def _dispatch(*, batch_id: int, owner: str, prices: dict, size: int, deadline: float, brand=None) -> int:
    """Keep up to `size` of the batch's leads in flight on a thread pool until the work or the time ends;
    their reports are rendered with `brand`."""
    claims: queue.SimpleQueue = queue.SimpleQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()
    threads = [
        threading.Thread(target=_worker, args=(claims, results), name=f"batch-{batch_id}-{n}", daemon=True)
        for n in range(size)
    ]
    for thread in threads:
        thread.start()
    in_flight = processed = 0
    ahead = PricedAhead(rows=size * READ_AHEAD)
    claiming = True
    error: BaseException | None = None
    last_result_at = float("-inf")
    try:
        while True:
            if claiming and time.monotonic() >= deadline:
                claiming = False
            if claiming and in_flight < size:
                try:
                    claimed = claim_leads(
                        batch_id=batch_id, owner=owner, prices=prices, limit=size - in_flight, ahead=ahead
                    )
                except DATABASE_GONE:
                    logger.warning("batch %s: database unavailable, claiming again shortly", batch_id)
                    _reconnect_later()
                    claimed = None
                if isinstance(claimed, list):
                    for claim in claimed:
                        claim.brand = brand
                        claims.put(claim)
                    in_flight += len(claimed)
                elif claimed in (STOP, DONE):
                    claiming = False
            if not in_flight:
                if not claiming:
                    break
                # Every slot is held by other runners, or the pending leads are backing off.
                time.sleep(random.uniform(0.05, 0.25))
                continue
            try:
                outcome = results.get(timeout=None if in_flight >= size or not claiming else WAIT_SECONDS)
            except queue.Empty:
                continue
            now = time.monotonic()
            gather = claiming and in_flight > 1 and now - last_result_at < GATHER_SECONDS
            last_result_at = now
            freed = 0
            while True:
                in_flight -= 1
                processed += 1
                freed += 1
                if isinstance(outcome, BaseException):
                    error = error or outcome
                    claiming = False
                try:
                    wait = GATHER_SECONDS if gather and freed == 1 and in_flight else 0
                    outcome = results.get(timeout=wait) if wait else results.get_nowait()
                except queue.Empty:
                    break
    finally:
        for _ in threads:
            claims.put(None)
        for thread in threads:
            thread.join()
    if error is not None:
        raise error
    return processed


def _worker(claims: queue.SimpleQueue, results: queue.SimpleQueue) -> None:
    """A pool thread: process and settle the claims handed to it until it gets None."""
    try:
        while (claim := claims.get()) is not None:
            try:
                results.put(_settle_surely(claim, process(claim)))
            except BaseException as exc:  # handed to the dispatcher, which stops claiming and re-raises
                results.put(exc)
    finally:
        connections.close_all()


def _settle_surely(claim, result) -> str | None:
    """Settle, trying again on a new connection while the database is away (for up to a runner slice).

    A settle that gets through after the lease expired finds it lost if recovery took the lead back
    meanwhile, and changes nothing: the lead's retry reuses what this attempt paid for.
    """
    give_up = time.monotonic() + settings.RUNNER_SLICE_SECONDS
    while True:
        try:
            return settle(claim, result)
        except DATABASE_GONE:
            if time.monotonic() >= give_up:
                raise
            logger.warning("batch row %s: database unavailable, settling again shortly", claim.row_id)
            _reconnect_later()


def _reconnect_later() -> None:
    """Drop this thread's broken connection; the next query opens a new one."""
    connections[DEFAULT_DB_ALIAS].close()
    time.sleep(random.uniform(0.5, 1.5))


def _heartbeat(batch_id: int, owner: str, stop: threading.Event) -> None:
    """Renew the leases of this runner's leads in flight, and say the batch has a live runner."""
    interval = max(lease_seconds() / 3.0, 0.2)
    try:
        while not stop.wait(interval):
            now = timezone.now()
            try:
                with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                    cursor.execute(_RENEW, [batch_id, owner, now, now + timedelta(seconds=lease_seconds())])
            except DATABASE_GONE:
                logger.warning("batch %s: database unavailable, renewing the leases shortly", batch_id)
                connections[DEFAULT_DB_ALIAS].close()
    finally:
        connections.close_all()


_frozen_in: int | None = None  # the process that has frozen its start-up objects


def _freeze_startup_objects() -> None:
    """Once per worker process: collect, then keep every object alive by now (Django's apps, models,
    modules and settings) out of the garbage collector's full collections, which would otherwise go
    through all of them every few hundred leads. What the runner allocates later is collected as usual."""
    global _frozen_in
    if _frozen_in != os.getpid():
        gc.collect()
        gc.freeze()
        _frozen_in = os.getpid()
