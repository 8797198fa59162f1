"""Reading lead files (CSV and XLSX) a row at a time, and mapping their columns to lead fields.

Nothing here holds a whole file: CSV is read through the `csv` module from the stored file, XLSX
through openpyxl's read-only mode, which parses the sheet as a stream. Each row comes out as its
sheet row number (the header is row 1, as a spreadsheet shows it) and its cells as stripped strings.
"""

import codecs
import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from zipfile import BadZipFile

from django.core.files.storage import default_storage

from leadgen.errors import ServiceError

FORMATS = {".csv": "csv", ".xlsx": "xlsx"}
MAX_FILE_BYTES = 50 * 1024 * 1024
SNIFF_BYTES = 64 * 1024

# Normalized header (lower case, single spaces) -> Lead field.
COLUMN_ALIASES = {
    "company": "company_name",
    "company name": "company_name",
    "companyname": "company_name",
    "organization": "company_name",
    "organisation": "company_name",
    "organization name": "company_name",
    "business": "company_name",
    "business name": "company_name",
    "website": "website",
    "web site": "website",
    "website url": "website",
    "url": "website",
    "domain": "website",
    "site": "website",
    "email": "email",
    "e mail": "email",
    "email address": "email",
    "phone": "phone",
    "phone number": "phone",
    "telephone": "phone",
    "tel": "phone",
    "contact": "contact_name",
    "contact name": "contact_name",
    "city": "city",
    "town": "city",
    "state": "state",
    "region": "state",
    "province": "state",
    "country": "country",
    "country code": "country",
    "industry": "industry",
    "employees": "employee_count",
    "employee count": "employee_count",
    "number of employees": "employee_count",
    "headcount": "employee_count",
    "score": "score",
    "lead score": "score",
    "source": "source",
}


def normalize_header(header: str) -> str:
    return " ".join(re.sub(r"[_\-./]+", " ", str(header or "")).lower().split())


def file_format(file_name: str) -> str:
    """`csv` or `xlsx` from the file name; ServiceError for anything else."""
    suffix = "." + file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    try:
        return FORMATS[suffix]
    except KeyError:
        raise ServiceError("Upload a .csv or .xlsx file.") from None


def map_columns(headers: list[str]) -> dict[str, str]:
    """Lead field -> the file's header for it. ServiceError when the file cannot be imported.

    A file needs a company column and a website or an email column (leads are matched on them);
    two columns for the same field are refused rather than one of them silently dropped.
    """
    columns: dict[str, str] = {}
    for header in headers:
        field = COLUMN_ALIASES.get(normalize_header(header))
        if field is None:
            continue
        if field in columns:
            raise ServiceError(
                f"The columns “{columns[field]}” and “{header}” both hold the "
                f"{field.replace('_', ' ')}: keep one."
            )
        columns[field] = header
    if "company_name" not in columns:
        raise ServiceError("The file needs a company column (company, company name or organization).")
    if "website" not in columns and "email" not in columns:
        raise ServiceError(
            "The file needs a website column (website, url or domain) or an email column: "
            "leads are matched on them."
        )
    return columns


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


class LeadTable:
    """One opened lead file: `headers`, then `rows()` yields (sheet row number, cells) per non-blank row."""

    def __init__(self, headers: list[str], rows: Iterator[tuple[int, list[str]]]):
        self.headers = headers
        self._rows = rows

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        width = len(self.headers)
        for number, cells in self._rows:
            if not any(cells):
                continue
            cells = cells[:width] + [""] * (width - len(cells))
            yield number, cells


def _csv_rows(binary) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    head = binary.read(SNIFF_BYTES)
    binary.seek(0)
    sample = head.decode("utf-8-sig", errors="ignore")
    try:
        dialect = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    encoding = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) or _is_utf8(head) else "cp1252"
    text = io.TextIOWrapper(binary, encoding=encoding, newline="")
    reader = csv.reader(text, delimiter=dialect.delimiter, quotechar='"')
    try:
        headers = [_cell_text(cell) for cell in next(reader)]
    except StopIteration:
        raise ServiceError("The file is empty.") from None

    def rows():
        try:
            for cells in reader:
                # line_num counts physical lines; a quoted cell may span several.
                yield reader.line_num, [_cell_text(cell) for cell in cells]
        except UnicodeDecodeError as error:
            # Text is decoded ahead of the reader, a few thousand bytes at a time: "near", not "at".
            line = reader.line_num
            raise ServiceError(
                f"The CSV file is not UTF-8 near line {line}: save it as CSV UTF-8."
            ) from error
        except csv.Error as error:
            raise ServiceError(f"The CSV file cannot be read at line {reader.line_num}: {error}") from error

    return headers, rows()


def _is_utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut at the end of the sample is still UTF-8.
        return error.start >= len(head) - 3
    return True


def _xlsx_rows(binary) -> tuple[list[str], Iterator[tuple[int, list[str]]], object]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(binary, read_only=True, data_only=True)
    except (BadZipFile, KeyError, ValueError, OSError) as error:
        raise ServiceError("The file is not a readable .xlsx workbook.") from error
    sheet = workbook.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    try:
        headers = [_cell_text(cell) for cell in next(values)]
    except StopIteration:
        workbook.close()
        raise ServiceError("The workbook's first sheet is empty.") from None
    while headers and not headers[-1]:
        headers.pop()

    def rows():
        for number, cells in enumerate(values, start=2):
            yield number, [_cell_text(cell) for cell in cells]

    return headers, rows(), workbook


@contextmanager
def open_table(name: str, fmt: str, *, storage=None) -> Iterator[LeadTable]:
    """The stored file `name` as a LeadTable, closed on exit."""
    storage = storage or default_storage
    try:
        binary = storage.open(name, "rb")
    except FileNotFoundError:
        raise ServiceError("The uploaded file is no longer in storage: upload it again.") from None
    with binary:
        yield _table(binary, fmt)


def _table(binary, fmt: str) -> LeadTable:
    if fmt == "csv":
        headers, rows = _csv_rows(binary)
        return LeadTable(headers, rows)
    headers, rows, workbook = _xlsx_rows(binary)

    def closing():
        try:
            yield from rows
        finally:
            workbook.close()

    return LeadTable(headers, closing())


def read_headers(upload, fmt: str) -> list[str]:
    """The header row of an uploaded file (rewound afterwards), or ServiceError."""
    upload.seek(0)
    try:
        if fmt == "csv":
            headers, _ = _csv_rows(io.BytesIO(upload.read(SNIFF_BYTES)))
        else:
            headers, _, workbook = _xlsx_rows(upload)
            workbook.close()
    except UnicodeDecodeError as error:
        raise ServiceError("The CSV file cannot be read: save it as CSV UTF-8.") from error
    finally:
        upload.seek(0)
    if not any(headers):
        raise ServiceError("The first row must hold the column names.")
    return headers
