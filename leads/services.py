"""Writes to leads."""

from collections.abc import Callable
from itertools import islice

from django.db import connection, transaction
from django.utils import timezone

from leads.demo_data import demo_leads
from leads.models import Lead

SEED_CHUNK_SIZE = 5_000


def lead_seed(*, count: int, seed: int, on_chunk: Callable[[int], None] | None = None) -> int:
    """Insert `count` demo leads generated from `seed` (see leads.demo_data); returns the number inserted.

    Rows go in with `bulk_create` in chunks, each chunk in its own transaction. `bulk_create` stamps
    `created_at` (auto_now_add) with the current time, so the generated creation times, spread over the
    past year, are written back afterwards.
    """
    leads = demo_leads(count=count, seed=seed, now=timezone.now())
    inserted = 0
    while chunk := list(islice(leads, SEED_CHUNK_SIZE)):
        created_at = [lead.created_at for lead in chunk]
        with transaction.atomic():
            Lead.objects.bulk_create(chunk)
            _write_created_at([(value, lead.pk) for lead, value in zip(chunk, created_at, strict=True)])
        inserted += len(chunk)
        if on_chunk:
            on_chunk(len(chunk))
    return inserted


def _write_created_at(rows: list[tuple]) -> None:
    # One prepared UPDATE run for many rows: bulk_update's CASE expressions cost ~0.2 ms a row in
    # Python, which alone would take 20 s for 100,000 leads.
    table = connection.ops.quote_name(Lead._meta.db_table)
    params = [(connection.ops.adapt_datetimefield_value(value), pk) for value, pk in rows]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET created_at = %s WHERE id = %s", params)  # noqa: S608
