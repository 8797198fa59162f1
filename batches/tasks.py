"""django-q2 entry points: thin wrappers around the runner and the webhooks."""

from batches import engine, services, webhooks


def batch_run_task(batch_id: int) -> int:
    """One bounded slice of work on a batch (re-enqueues itself while work remains)."""
    return engine.run_slice(batch_id=batch_id)


def batch_recover_task() -> dict:
    """The scheduled recovery (see migration 0002_recovery_schedule)."""
    return engine.recover()


def batch_purge_stale_drafts_task() -> int:
    """The hourly purge of drafts nobody launched (see migration 0003_purge_drafts_schedule)."""
    return services.batch_purge_stale_drafts()


def webhook_deliver_task(
    endpoint_id: int, batch_id: int, event: str, event_id: str, body: str, attempt: int
) -> str:
    return webhooks.webhook_deliver(
        endpoint_id=endpoint_id, batch_id=batch_id, event=event, event_id=event_id, body=body, attempt=attempt
    )
