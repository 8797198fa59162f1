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
    not_scalar = sorted(name for name, value in filters.items() if isinstance(value, dict | list))
    if not_scalar:
        message = "Give one value (a string, a number or true/false), not a list or an object."
        raise ServiceError(fields={name: [message] for name in not_scalar})
    data = {name: _as_form_value(value) for name, value in filters.items()}
    filterset = LeadFilter(data=data, queryset=Lead.objects.all())
    if not filterset.is_valid():
        raise ServiceError(fields={name: list(errors) for name, errors in filterset.errors.items()})
    return filterset.qs


def _as_form_value(value) -> str:
    # The form fields parse text, as from a query string: JSON booleans become their string forms and
    # numbers their digits, for each field to accept or refuse as it would the same query parameter.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def lead_import_error_file_chunks(*, lead_import: LeadImport, phase: str) -> Iterator[bytes]:
    """The error file of one phase of an import, as UTF-8 CSV: row, reason, then the row's cells as read.

    Cells go out as text: one that would start a formula is quoted so a spreadsheet does not run it
    (batches.exports.csv_text_cell, as in the batch export).
    """
    from batches.exports import csv_text_cell

    def cell(value) -> str:
        return csv_text_cell(str(value))

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
