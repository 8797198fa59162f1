"""The live progress socket, through the real ASGI stack (origin check, session auth, routing)."""

import asyncio
import itertools
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections, transaction
from django.test import Client

from batches import consumers, events, services, snapshots
from batches.engine import run_slice
from batches.models import BatchReport
from batches.selectors import batch_snapshot
from batches.tests.ui_fixtures import bulk_leads, make_batch, make_user
from leadgen.asgi import application

VIEWER_PERMS = ("batches.view_batchreport",)


@pytest.fixture(autouse=True)
async def _fresh_memo_and_connections(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    snapshots.snapshots.clear()
    yield
    snapshots.snapshots.clear()
    # The consumer's queries ran in asgiref's shared thread; close its connection so the test
    # database can be dropped at the end.
    await sync_to_async(connections.close_all)()


def socket_headers(user=None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


def communicator(batch_id: int, headers) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/batches/{batch_id}/", headers=headers)


@pytest.fixture
def viewer(django_user_model):
    return make_user(django_user_model, "viewer", perms=VIEWER_PERMS)


async def assert_closed_with(comm: WebsocketCommunicator, code: int) -> None:
    connected, _ = await comm.connect()
    assert connected  # accepted first, so the client sees the close code
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": code}
    await comm.wait()


@pytest.mark.django_db(transaction=True)
async def test_anonymous_is_closed_with_4003(viewer):
    batch = await sync_to_async(make_batch)(user=viewer, statuses=["pending"])
    await assert_closed_with(communicator(batch.pk, socket_headers()), 4003)


@pytest.mark.django_db(transaction=True)
async def test_user_without_view_permission_is_closed_with_4003(viewer, django_user_model):
    other = await sync_to_async(make_user)(django_user_model, "staff_without_perm")
    headers = await sync_to_async(socket_headers)(other)
    batch = await sync_to_async(make_batch)(user=viewer, statuses=["pending"])
    await assert_closed_with(communicator(batch.pk, headers), 4003)


@pytest.mark.django_db(transaction=True)
async def test_unknown_batch_is_closed_with_4004(viewer):
    headers = await sync_to_async(socket_headers)(viewer)
    await assert_closed_with(communicator(999_999, headers), 4004)


@pytest.mark.django_db(transaction=True)
async def test_finished_batch_gets_snapshot_then_finished_equal_to_the_status_snapshot(viewer):
    batch = await sync_to_async(make_batch)(
        user=viewer, statuses=["succeeded", "failed"], status=BatchReport.Status.COMPLETED_WITH_ERRORS
    )
    headers = await sync_to_async(socket_headers)(viewer)
    comm = communicator(batch.pk, headers)
    connected, _ = await comm.connect()
    assert connected
    first = await comm.receive_json_from(timeout=5)
    second = await comm.receive_json_from(timeout=5)
    expected = await sync_to_async(batch_snapshot)(batch_id=batch.pk)

    assert first == {"type": "snapshot", "seq": expected["seq"], "batch": expected}
    assert second == {"type": "finished", "seq": expected["seq"] + 1, "batch": expected}
    assert await comm.receive_nothing(timeout=2.5)  # a finished batch has nothing more to say
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_terminal_event_is_sent_at_once(viewer):
    batch = await sync_to_async(make_batch)(user=viewer, statuses=["succeeded", "processing"])
    headers = await sync_to_async(socket_headers)(viewer)
    comm = communicator(batch.pk, headers)
    await comm.connect()
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    loop = asyncio.get_running_loop()

    def finish():
        with transaction.atomic():
            BatchReport.objects.filter(pk=batch.pk).update(status=BatchReport.Status.COMPLETED)
            batch.leads.filter(status="processing").update(
                status="succeeded", lease_owner="", lease_expires_at=None
            )
            events.batch_event_emit(batch_id=batch.pk, finished=True)

    await asyncio.sleep(0.2)
    sent_at = loop.time()
    await sync_to_async(finish)()
    message = await comm.receive_json_from(timeout=5)

    assert message["type"] == "finished"
    assert loop.time() - sent_at < 0.9  # well before the next periodic tick
    assert message["batch"] == await sync_to_async(batch_snapshot)(batch_id=batch.pk)
    await comm.disconnect()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_running_batch_streams_within_the_rate_limits_and_ends_on_the_status_snapshot(viewer, settings):
    """The real runner works through the batch in a thread while one socket listens for its whole life."""
    # One lead at a time, ~0.4 s each: comfortably more than the 10 s window the cadence is checked over.
    settings.SANDBOX_LATENCY_MS = 200
    settings.SANDBOX_FAILURE_RATE = 0.1
    lead_count = 40

    def launch() -> BatchReport:
        leads = bulk_leads(lead_count, prefix="Live")
        draft = services.batch_create_draft(user=viewer, lead_ids=[lead.pk for lead in leads], concurrency=1)
        return services.batch_launch(batch=draft, user=viewer, enqueue=False)

    batch = await sync_to_async(launch)()
    headers = await sync_to_async(socket_headers)(viewer)
    comm = communicator(batch.pk, headers)
    loop = asyncio.get_running_loop()
    connected, _ = await comm.connect()
    assert connected

    def run():
        try:
            while not BatchReport.objects.get(pk=batch.pk).is_finished:
                run_slice(batch_id=batch.pk, follow_up=False, max_seconds=60, workers=1)
        finally:
            connections.close_all()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    messages, times = [], []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        messages.append(await comm.receive_json_from(timeout=5))
        times.append(loop.time())
        if messages[-1]["type"] == "finished":
            break
    await asyncio.get_running_loop().run_in_executor(None, worker.join, 30)
    expected = await sync_to_async(batch_snapshot)(batch_id=batch.pk)
    await comm.disconnect()

    kinds = [m["type"] for m in messages]
    assert kinds[0] == "snapshot"
    assert kinds[-1] == "finished"
    assert set(kinds[1:-1]) == {"progress"}
    assert times[-1] - times[0] > 10, "the batch must run for more than 10 s to test the cadence"
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) <= 2.0
    assert min(gaps[:-1]) >= 1.0  # only the terminal message may come sooner
    seqs = [m["seq"] for m in messages]
    assert all(later > earlier for earlier, later in itertools.pairwise(seqs))
    assert messages[-1]["batch"] == expected
    assert expected["status"] in (BatchReport.Status.COMPLETED, BatchReport.Status.COMPLETED_WITH_ERRORS)
    assert expected["succeeded"] + expected["failed"] == lead_count
    percents = [m["batch"]["progress_percent"] for m in messages]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any(0 < p < 100 for p in percents)


@pytest.mark.django_db(transaction=True)
async def test_many_sockets_on_one_batch_share_the_snapshot_reads(viewer, monkeypatch):
    batch = await sync_to_async(make_batch)(
        user=viewer, statuses=["pending"] * 3, status=BatchReport.Status.QUEUED
    )
    headers = await sync_to_async(socket_headers)(viewer)
    reads = []
    real_read = snapshots._read_snapshot

    async def counting_read(batch_id):
        reads.append(batch_id)
        return await real_read(batch_id)

    monkeypatch.setattr(snapshots, "_read_snapshot", counting_read)
    sockets = [communicator(batch.pk, headers) for _ in range(10)]
    for comm in sockets:
        await comm.connect()
    window = 3.5
    started = reads.copy()
    await asyncio.sleep(window)
    received = [await comm.receive_json_from(timeout=1) for comm in sockets]
    for comm in sockets:
        await comm.disconnect()

    assert {m["type"] for m in received} == {"snapshot"}
    assert len(started) <= 10  # at most one initial read per socket
    ticks_each = int(window / consumers.MAX_INTERVAL_SECONDS)
    # Unshared, 10 sockets would read 10 x ticks_each times; shared, one read per TTL at most.
    tick_reads = len(reads) - len(started)
    assert ticks_each >= 2
    assert tick_reads <= window / snapshots.SNAPSHOT_TTL_SECONDS + 2 < 10 * ticks_each


@pytest.mark.django_db(transaction=True)
async def test_a_socket_that_cannot_read_the_batch_closes_so_its_client_reconnects(viewer, monkeypatch):
    """The database going away mid-batch (bench/drills/pg_restart.py does it for real) must not leave
    a socket open and silent: it closes with 4503 (try again later), and the page reconnects."""
    from django.db import OperationalError

    batch = await sync_to_async(make_batch)(
        user=viewer, statuses=["pending"] * 3, status=BatchReport.Status.RUNNING
    )
    headers = await sync_to_async(socket_headers)(viewer)
    real_read = snapshots._read_snapshot
    reads = itertools.count()

    async def read_then_fail(batch_id):
        if next(reads):
            raise OperationalError("the database system is shutting down")
        return await real_read(batch_id)

    monkeypatch.setattr(snapshots, "_read_snapshot", read_then_fail)
    comm = communicator(batch.pk, headers)
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4503}
    await comm.wait()


class StatementCounter:
    """Counts the snapshot reads (statements on the batch table) of asgiref's shared thread, where the
    consumer's database calls run."""

    def __init__(self):
        self.reads = 0

    def __call__(self, execute, sql, params, many, context):
        if 'FROM "batches_batchreport"' in sql:
            self.reads += 1
        return execute(sql, params, many, context)

    async def install(self) -> None:
        await sync_to_async(lambda: connections["default"].execute_wrappers.append(self))()

    async def remove(self) -> None:
        await sync_to_async(lambda: connections["default"].execute_wrappers.remove(self))()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [BatchReport.Status.COMPLETED, BatchReport.Status.RUNNING])
async def test_200_resyncs_in_a_second_cost_reads_at_the_message_cadence(viewer, status):
    batch = await sync_to_async(make_batch)(user=viewer, statuses=["succeeded", "pending"], status=status)
    headers = await sync_to_async(socket_headers)(viewer)
    comm = communicator(batch.pk, headers)
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    counter = StatementCounter()
    await counter.install()
    try:
        started = time.monotonic()
        for _ in range(200):
            await comm.send_json_to({"type": "resync"})
            await asyncio.sleep(0.005)
        await asyncio.sleep(max(0.0, 1.2 - (time.monotonic() - started)))
        reads = counter.reads
    finally:
        await counter.remove()
        await comm.disconnect()

    # One read per batch_snapshot() touches the batch table; the cadence allows about two in 1.2 s.
    per_snapshot = await sync_to_async(snapshot_statements_on_the_batch_table)(batch.pk)
    assert reads <= 3 * per_snapshot, (reads, per_snapshot)


@pytest.mark.django_db(transaction=True)
async def test_a_resync_still_sends_what_changed_without_an_event(viewer):
    batch = await sync_to_async(make_batch)(
        user=viewer, statuses=["succeeded"], status=BatchReport.Status.COMPLETED
    )
    headers = await sync_to_async(socket_headers)(viewer)
    comm = communicator(batch.pk, headers)
    connected, _ = await comm.connect()
    assert connected
    assert [(await comm.receive_json_from(timeout=5))["type"] for _ in range(2)] == ["snapshot", "finished"]
    await comm.send_json_to({"type": "resync"})  # served at once: no resync yet
    await comm.send_json_to({"type": "resync"})  # within the interval: merged into the next
    await sync_to_async(BatchReport.objects.filter(pk=batch.pk).update)(name="Renamed")
    await comm.send_json_to({"type": "resync"})

    message = await comm.receive_json_from(timeout=3)

    assert (message["type"], message["batch"]["name"]) == ("finished", "Renamed")
    await comm.disconnect()


def snapshot_statements_on_the_batch_table(batch_id: int) -> int:
    counter = StatementCounter()
    with connections["default"].execute_wrapper(counter):
        batch_snapshot(batch_id=batch_id)
    return counter.reads


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "frame", [{"text_data": "not json"}, {"bytes_data": b"\x00\x01"}, {"text_data": '["resync"]'}]
)
async def test_a_frame_that_is_not_a_json_message_is_ignored_and_the_socket_goes_on(viewer, frame):
    batch = await sync_to_async(make_batch)(
        user=viewer, statuses=["succeeded"], status=BatchReport.Status.COMPLETED
    )
    headers = await sync_to_async(socket_headers)(viewer)
    comm = communicator(batch.pk, headers)
    connected, _ = await comm.connect()
    assert connected
    assert [(await comm.receive_json_from(timeout=5))["type"] for _ in range(2)] == ["snapshot", "finished"]

    if "text_data" in frame:
        await comm.send_to(text_data=frame["text_data"])
    else:
        await comm.send_to(bytes_data=frame["bytes_data"])
    await sync_to_async(BatchReport.objects.filter(pk=batch.pk).update)(name="Still followed")
    await comm.send_json_to({"type": "resync"})

    message = await comm.receive_json_from(timeout=3)
    assert message["batch"]["name"] == "Still followed"
    await comm.disconnect()
