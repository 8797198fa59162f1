"""django-q2 entry points for leads."""

from django_q.tasks import async_task

from leads import services


def lead_import_task(lead_import_id: int) -> bool:
    """One slice of an import's current phase; queues the next slice while rows remain."""
    more = services.lead_import_work(lead_import_id=lead_import_id)
    if more:
        async_task("leads.tasks.lead_import_task", lead_import_id)
    return more
