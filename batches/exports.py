"""Streamed downloads of a batch: a CSV with one row per lead, and a ZIP of its reports.

Both are generators over `.iterator(chunk_size=...)` querysets that yield chunks of about `CHUNK_BYTES`,
so memory stays bounded whatever the batch size. Under ASGI (daphne) Django would read a synchronous
iterator to the end before sending anything, so `streaming_response` hands ASGI requests an
asynchronous iterator that pulls one chunk at a time.
"""

import csv
import unicodedata
import zipfile
from collections.abc import AsyncIterator, Iterable, Iterator

from asgiref.sync import sync_to_async
from django.core.files.storage import default_storage
from django.core.handlers.asgi import ASGIRequest
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from batches.models import BatchReport, BatchReportLead
from leadgen.display import error_line
from reports.models import ShareLink
from reports.sharing import share_urls

CHUNK_BYTES = 64 * 1024
ROWS_PER_QUERY = 2000
REPORTS_PER_QUERY = 50
CSV_HEADER = [
    "position",
    "lead_id",
    "company_name",
    "domain",
    "status",
    "attempts",
    "error_code",
    "error",
    "cost_usd",
    "duration_ms",
    "report_url",
    "warnings",
    "share_url",
]
# Spreadsheets run cells that start with these as formulas; lead-supplied text must stay text. The
# full-width forms are read as the same by some spreadsheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


class _Buffer:
    """A write-only file that holds what was written until `take()`: lets csv and zipfile feed a generator.

    It has `tell()` but no `seek()`, so zipfile writes entries with data descriptors, front to back.
    """

    def __init__(self):
        self._chunks: list[bytes] = []
        self._size = 0
        self._position = 0

    def write(self, data) -> int:
        data = data.encode() if isinstance(data, str) else bytes(data)
        self._chunks.append(data)
        self._size += len(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    @property
    def size(self) -> int:
        # Not __len__: an empty buffer would be falsy, and zipfile takes a falsy file for a closed one.
        return self._size

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return data


def report_url(report_id: int, *, request: HttpRequest | None = None) -> str:
    path = reverse("reports:detail", args=[report_id])
    return request.build_absolute_uri(path) if request is not None else path


def csv_text_cell(value: str) -> str:
    """`value` as a cell that stays text: a leading quote when its first visible character (after
    spaces and invisible control or format characters such as U+202E or U+200B) starts a formula."""
    visible = value.lstrip()
    while visible and unicodedata.category(visible[0]) in ("Cc", "Cf"):
        visible = visible[1:].lstrip()
    return (
        f"'{value}" if value.startswith(FORMULA_PREFIXES) or visible.startswith(FORMULA_PREFIXES) else value
    )


def batch_csv_chunks(*, batch: BatchReport, request: HttpRequest | None = None) -> Iterator[bytes]:
    """UTF-8 CSV: a header, then one row per lead of the batch in batch order."""
    buffer = _Buffer()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    # The newest active share link of each report: what the agency mails to the prospect.
    share_key = (
        ShareLink.objects.filter(
            report_id=OuterRef("report_id"), revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        .order_by("-created_at", "-id")
        .values("key")[:1]
    )
    rows = (
        BatchReportLead.objects.filter(batch=batch)
        .annotate(share_key=Subquery(share_key))
        .order_by("position")
        .values_list(
            "position",
            "lead_id",
            "lead__company_name",
            "lead__domain",
            "status",
            "attempts",
            "error_code",
            "last_error",
            "cost_usd",
            "duration_ms",
            "report_id",
            "warnings",
            "share_key",
        )
    )
    for (
        position,
        lead_id,
        company,
        domain,
        status,
        attempts,
        code,
        error,
        cost,
        duration,
        report_id,
        warnings,
        key,
    ) in rows.iterator(chunk_size=ROWS_PER_QUERY):
        writer.writerow(
            [
                position,
                lead_id,
                csv_text_cell(company),
                csv_text_cell(domain),
                status,
                attempts,
                code,
                csv_text_cell(error_line(error)),
                f"{cost:.4f}",
                "" if duration is None else duration,
                "" if report_id is None else report_url(report_id, request=request),
                csv_text_cell(
                    "; ".join(f"{w.get('provider', '')}: {w.get('message', '')}" for w in warnings or [])
                ),
                share_urls(key, request=request)["url"] if key else "",
            ]
        )
        if buffer.size >= CHUNK_BYTES:
            yield buffer.take()
    yield buffer.take()


def _entry_name(position: int, company: str, report_id: int, extension: str) -> str:
    return f"{position:05d}-{slugify(company)[:60] or 'lead'}-report-{report_id}.{extension}"


def batch_reports_zip_chunks(*, batch: BatchReport) -> Iterator[bytes]:
    """A ZIP with each report of the batch as HTML, plus its PDF where one has been rendered."""
    buffer = _Buffer()
    now = timezone.now().timetuple()[:6]
    reports = (
        BatchReportLead.objects.filter(batch=batch, report__isnull=False)
        .order_by("position")
        .values_list("position", "lead__company_name", "report_id", "report__html", "report__pdf")
    )
    with zipfile.ZipFile(buffer, mode="w") as archive:
        for position, company, report_id, html, pdf_name in reports.iterator(chunk_size=REPORTS_PER_QUERY):
            entry = zipfile.ZipInfo(_entry_name(position, company, report_id, "html"), date_time=now)
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, html.encode())
            if buffer.size >= CHUNK_BYTES:
                yield buffer.take()
            if pdf_name and default_storage.exists(pdf_name):
                entry = zipfile.ZipInfo(_entry_name(position, company, report_id, "pdf"), date_time=now)
                with default_storage.open(pdf_name, "rb") as source, archive.open(entry, "w") as target:
                    while data := source.read(CHUNK_BYTES):
                        target.write(data)
                        yield buffer.take()
    yield buffer.take()


async def _async_chunks(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    iterator = iter(chunks)
    done = object()
    while (chunk := await sync_to_async(next, thread_sensitive=True)(iterator, done)) is not done:
        yield chunk


def streaming_response(
    request: HttpRequest, chunks: Iterator[bytes], *, content_type: str, filename: str
) -> StreamingHttpResponse:
    content = _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
