import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from batches.events import batch_event_emit, batch_group
from batches.models import BatchReport

pytestmark = pytest.mark.django_db


@pytest.fixture
def listener(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    return layer, channel


def receive_all(layer, channel):
    messages = []

    async def drain():
        import asyncio

        while True:
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), 0.05))
            except TimeoutError:
                return

    async_to_sync(drain)()
    return messages


def test_events_go_after_commit_are_throttled_and_bump_seq(listener, django_capture_on_commit_callbacks):
    layer, channel = listener
    batch = BatchReport.objects.create(name="b", provider_mode="sandbox")
    async_to_sync(layer.group_add)(batch_group(batch.pk), channel)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert batch_event_emit(batch_id=batch.pk)
        assert not batch_event_emit(batch_id=batch.pk)  # coalesced
        assert batch_event_emit(batch_id=batch.pk, finished=True)  # the terminal event always goes
    assert receive_all(layer, channel) == []  # nothing before commit
    for callback in callbacks:
        callback()
    assert receive_all(layer, channel) == [
        {"type": "batch.progress", "batch_id": batch.pk, "seq": 1},
        {"type": "batch.finished", "batch_id": batch.pk, "seq": 2},
    ]
    batch.refresh_from_db()
    assert batch.seq == 2 and batch_group(batch.pk) == f"batch-{batch.pk}"


def test_a_broken_channel_layer_never_breaks_the_caller(settings, django_capture_on_commit_callbacks, caplog):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}  # fmt: skip
    batch = BatchReport.objects.create(name="b", provider_mode="sandbox")
    with django_capture_on_commit_callbacks(execute=True):
        batch_event_emit(batch_id=batch.pk, finished=True)
    assert "could not send batch.finished" in caplog.text


def test_an_unreachable_throttle_cache_sends_rather_than_breaking_the_caller(
    settings, django_capture_on_commit_callbacks, caplog
):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}  # fmt: skip
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    batch = BatchReport.objects.create(name="b", provider_mode="sandbox")
    with django_capture_on_commit_callbacks(execute=True):
        assert batch_event_emit(batch_id=batch.pk)
        assert batch_event_emit(batch_id=batch.pk)  # no throttle to coalesce with: every hint goes
    batch.refresh_from_db()
    assert batch.seq == 2
    assert "event throttle unavailable" in caplog.text


def test_a_process_that_lost_the_throttle_does_not_ask_again_for_a_quarter_of_its_window(
    listener, monkeypatch, django_capture_on_commit_callbacks
):
    """Another process's progress event holds the window: every settle here would ask the cache."""
    from django.core.cache import cache

    from batches import events

    clock = [1000.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: clock[0])
    batch = BatchReport.objects.create(name="b", provider_mode="sandbox")
    key = f"batch-event-throttle:{batch.pk}"
    assert cache.add(key, 1, timeout=events.THROTTLE_SECONDS)  # the other process won
    with django_capture_on_commit_callbacks(execute=False):
        assert not batch_event_emit(batch_id=batch.pk)
        cache.delete(key)  # its window is over
        clock[0] += events.LOST_QUIET_SECONDS * 0.9
        assert not batch_event_emit(batch_id=batch.pk)  # not asked: still quiet after the loss
        clock[0] += events.LOST_QUIET_SECONDS * 0.2
        assert batch_event_emit(batch_id=batch.pk)  # asked again, and won
        assert not batch_event_emit(batch_id=batch.pk)
