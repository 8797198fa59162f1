"""Writes to leads."""

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from itertools import islice

import tablib
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from leadgen.errors import ConflictError, ServiceError
from leads import import_files
from leads.demo_data import demo_leads
from leads.models import Lead, LeadImport, LeadImportRowError
from leads.resources import ROW_NUMBER, LeadResource

logger = logging.getLogger(__name__)

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


IMPORT_CHUNK_ROWS = 1_000
IMPORT_SLICE_SECONDS = 240
# A running import whose progress has not moved for this long may be resumed by hand.
IMPORT_STALE_AFTER = timedelta(minutes=5)
# Held by each writing chunk, so two imports cannot both create the lead for the same domain.
IMPORT_WRITE_LOCK = 7_017_001


def lead_import_create(*, upload, user) -> LeadImport:
    """Store an uploaded CSV or XLSX file and queue its dry run; ServiceError if it cannot be imported."""
    fmt = import_files.file_format(upload.name)
    if upload.size > import_files.MAX_FILE_BYTES:
        limit = import_files.MAX_FILE_BYTES // (1024 * 1024)
        raise ServiceError(f"The file is {upload.size / (1024 * 1024):.1f} MB; the limit is {limit} MB.")
    headers = import_files.read_headers(upload, fmt)
    columns = import_files.map_columns(headers)
    with transaction.atomic():
        lead_import = LeadImport.objects.create(
            file=upload,
            file_name=upload.name[:255],
            file_format=fmt,
            headers=headers,
            columns=columns,
            created_by=user,
        )
        _enqueue_work(lead_import.pk)
    return lead_import


def lead_import_confirm(*, lead_import: LeadImport, user) -> LeadImport:
    """Start writing an import whose dry run is done (once: a second confirm is refused)."""
    with transaction.atomic():
        started = LeadImport.objects.filter(
            pk=lead_import.pk, phase=LeadImport.Phase.DRY_RUN, status=LeadImport.Status.READY
        ).update(phase=LeadImport.Phase.IMPORT, status=LeadImport.Status.RUNNING, confirmed_at=timezone.now())
        if not started:
            raise ConflictError("This import is not waiting for confirmation.")
        _enqueue_work(lead_import.pk)
    lead_import.refresh_from_db()
    return lead_import


def lead_import_resumable(lead_import: LeadImport) -> bool:
    if lead_import.status == LeadImport.Status.FAILED:
        return True
    stale = lead_import.updated_at < timezone.now() - IMPORT_STALE_AFTER
    return lead_import.status == LeadImport.Status.RUNNING and stale


def lead_import_resume(*, lead_import: LeadImport, user) -> LeadImport:
    """Go on with a failed or stalled phase from the last chunk it committed."""
    if not lead_import_resumable(lead_import):
        raise ConflictError(
            "Only a failed import, or one that has not moved for five minutes, can be resumed."
        )
    with transaction.atomic():
        LeadImport.objects.filter(pk=lead_import.pk).update(status=LeadImport.Status.RUNNING, error="")
        _enqueue_work(lead_import.pk)
    lead_import.refresh_from_db()
    return lead_import


def _enqueue_work(lead_import_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task("leads.tasks.lead_import_task", lead_import_id))


class _Superseded(Exception):
    """Another worker moved the phase on (or it was stopped): this one has nothing left to do."""


def lead_import_work(*, lead_import_id: int, slice_seconds: float = IMPORT_SLICE_SECONDS) -> bool:
    """Run the current phase of an import for about `slice_seconds`; True while work remains.

    Rows are read from the stored file and imported in chunks of IMPORT_CHUNK_ROWS, each in one
    transaction with the phase's counts and position, so a worker holds one chunk at a time (and the
    match keys seen so far, a few dozen bytes a row) and a phase that stops (a failure, a killed
    worker) resumes after its last committed chunk. A failure is recorded on the import with its
    cause; it never leaves rows written without saying so.
    """
    lead_import = LeadImport.objects.get(pk=lead_import_id)
    if lead_import.status != LeadImport.Status.RUNNING:
        return False
    try:
        return _work(lead_import, deadline=time.monotonic() + slice_seconds)
    except _Superseded:
        return False
    except ServiceError as error:
        _fail(lead_import, str(error))
    except Exception as error:
        logger.exception("lead import %s failed", lead_import.pk)
        _fail(lead_import, f"{type(error).__name__}: {error}")
    return False


def _fail(lead_import: LeadImport, message: str) -> None:
    LeadImport.objects.filter(
        pk=lead_import.pk, phase=lead_import.phase, status=LeadImport.Status.RUNNING
    ).update(status=LeadImport.Status.FAILED, error=message)


def _work(lead_import: LeadImport, *, deadline: float) -> bool:
    write = lead_import.phase == LeadImport.Phase.IMPORT
    done = lead_import.rows_imported if write else lead_import.rows_checked
    # In the file's order (the JSON column does not keep its keys' order).
    position_of = {field: lead_import.headers.index(header) for field, header in lead_import.columns.items()}
    fields = sorted(position_of, key=position_of.get)
    positions = [position_of[field] for field in fields]
    resource = LeadResource(write=write, column_labels=lead_import.columns)
    resource.samples = {"new": [], "updated": [], **lead_import.samples}
    name, fmt = lead_import.file.name, lead_import.file_format
    if lead_import.rows_total is None:
        with import_files.open_table(name, fmt) as table:
            total = sum(1 for _ in table.rows())
        LeadImport.objects.filter(pk=lead_import.pk).update(rows_total=total)
    invalid = set(
        LeadImportRowError.objects.filter(lead_import=lead_import, phase=lead_import.phase).values_list(
            "row_number", flat=True
        )
    )
    with import_files.open_table(name, fmt) as table:
        rows = table.rows()
        for number, cells in islice(rows, done):
            if number not in invalid:
                resource.remember(_row(fields, positions, number, cells))
        chunk = list(islice(rows, IMPORT_CHUNK_ROWS))
        while chunk:
            dataset = tablib.Dataset(headers=[*fields, ROW_NUMBER])
            for number, cells in chunk:
                dataset.append([cells[position] for position in positions] + [number])
            _import_chunk(lead_import, resource, dataset, chunk, position=done)
            done += len(chunk)
            chunk = list(islice(rows, IMPORT_CHUNK_ROWS))
            if chunk and time.monotonic() > deadline:
                return True
    _finish_phase(lead_import)
    return False


def _row(fields: list[str], positions: list[int], number: int, cells: list[str]) -> dict:
    return {
        **{field: cells[position] for field, position in zip(fields, positions, strict=True)},
        ROW_NUMBER: number,
    }


def _import_chunk(lead_import: LeadImport, resource: LeadResource, dataset, chunk, *, position: int) -> None:
    phase = lead_import.phase
    write = phase == LeadImport.Phase.IMPORT
    prefix, progress = ("imported", "rows_imported") if write else ("checked", "rows_checked")
    with transaction.atomic():
        current = (
            LeadImport.objects.select_for_update()
            .filter(pk=lead_import.pk, phase=phase, status=LeadImport.Status.RUNNING)
            .values_list(progress, flat=True)
            .first()
        )
        if current != position:
            raise _Superseded
        if write:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [IMPORT_WRITE_LOCK])
        result = resource.import_data(dataset, raise_errors=False)
        if result.base_errors:
            raise ServiceError(f"Rows {chunk[0][0]}-{chunk[-1][0]}: {result.base_errors[0].error}")
        if result.error_rows:
            failed = result.error_rows[0]
            raise ServiceError(f"Row {chunk[failed.number - 1][0]}: {failed.errors[0].error}")
        LeadImportRowError.objects.bulk_create(
            LeadImportRowError(
                lead_import=lead_import,
                phase=phase,
                row_number=chunk[row.number - 1][0],
                reason=resource.reason(row.error),
                values=chunk[row.number - 1][1],
            )
            for row in result.invalid_rows
        )
        totals = result.totals
        samples = {} if write else {"samples": resource.samples}
        LeadImport.objects.filter(pk=lead_import.pk).update(
            **samples,
            **{
                progress: F(progress) + len(chunk),
                f"{prefix}_new": F(f"{prefix}_new") + totals["new"],
                f"{prefix}_updated": F(f"{prefix}_updated") + totals["update"],
                f"{prefix}_unchanged": F(f"{prefix}_unchanged") + totals["skip"],
                f"{prefix}_invalid": F(f"{prefix}_invalid") + totals["invalid"],
                "updated_at": timezone.now(),
            },
        )


def _finish_phase(lead_import: LeadImport) -> None:
    running = LeadImport.objects.filter(
        pk=lead_import.pk, phase=lead_import.phase, status=LeadImport.Status.RUNNING
    )
    if lead_import.phase == LeadImport.Phase.DRY_RUN:
        running.update(status=LeadImport.Status.READY, checked_at=timezone.now())
    else:
        running.update(status=LeadImport.Status.DONE, imported_at=timezone.now())
