"""Reads of leads that are more than a `.get()`."""

import csv
import io
from collections.abc import Iterator

from django.db.models import QuerySet

from leadgen.errors import ServiceError
from leads.filters import LeadFilter
from leads.models import Lead, LeadImport, LeadImportRowError


def lead_list(*, filters: dict | None = None) -> QuerySet[Lead]:
    """Leads matching `filters`, a plain dict with `LeadFilter`'s field names (e.g. a batch selection).

    Raises ServiceError with field errors for unknown filter names and for invalid values, so a
    selection never silently widens to more leads than asked for.
    """
    filters = filters or {}
    unknown = sorted(set(filters) - set(LeadFilter.base_filters))
    if unknown:
        raise ServiceError(fields={name: ["Unknown filter."] for name in unknown})
    data = {name: _as_form_value(value) for name, value in filters.items()}
    filterset = LeadFilter(data=data, queryset=Lead.objects.all())
    if not filterset.is_valid():
        raise ServiceError(fields={name: list(errors) for name, errors in filterset.errors.items()})
    return filterset.qs


def _as_form_value(value):
    # JSON booleans arrive as True/False; the form fields also accept their string forms.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value


def lead_import_error_file_chunks(*, lead_import: LeadImport, phase: str) -> Iterator[bytes]:
    """The error file of one phase of an import, as UTF-8 CSV: row, reason, then the row's cells as read.

    Cells go out as text: a leading `=`, `+`, `-` or `@` is quoted so a spreadsheet does not run it.
    """
    from batches.exports import FORMULA_PREFIXES

    def cell(value) -> str:
        text = str(value)
        return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "reason", *(cell(header) for header in lead_import.headers)])
    rows = (
        LeadImportRowError.objects.filter(lead_import=lead_import, phase=phase)
        .order_by("row_number")
        .values_list("row_number", "reason", "values")
    )
    for count, (number, reason, values) in enumerate(rows.iterator(chunk_size=2_000), start=1):
        writer.writerow([number, cell(reason), *(cell(value) for value in values)])
        if count % 500 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
