"""django-q2 entry points for leads."""

from django.conf import settings
from django_q.tasks import async_task

from leads import services


def lead_import_task(lead_import_id: int) -> bool:
    """One slice of an import's current phase; queues the next slice while rows remain.

    A slice stays well inside django-q2's timeout, which would kill it and have the task redelivered.
    """
    slice_seconds = min(services.IMPORT_SLICE_SECONDS, settings.Q_CLUSTER["timeout"] / 2)
    more = services.lead_import_work(lead_import_id=lead_import_id, slice_seconds=slice_seconds)
    if more:
        async_task("leads.tasks.lead_import_task", lead_import_id)
    return more
