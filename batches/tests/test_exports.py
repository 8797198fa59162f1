import csv
import io
import zipfile
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.db import connections
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from batches.exports import CHUNK_BYTES, CSV_HEADER
from batches.models import BatchReport, BatchReportLead
from batches.tests.api_fixtures import (
    ROLE_PERMISSIONS,
    add_lead_rows,
    make_batch,
    make_report,
    make_user,
    token_client,
)
from leads.models import Lead
from reports.models import Report


@pytest.fixture
def viewer_client(db) -> APIClient:
    return token_client(make_user("viewer", ROLE_PERMISSIONS["viewer"]))


BIG = 10_000


@pytest.fixture
def big_batch(db):
    """A finished 10,000-lead batch where every lead has a (small, shared-looking) report."""
    batch = make_batch(status=BatchReport.Status.COMPLETED)
    leads = Lead.objects.bulk_create(
        [
            Lead(
                company_name=f"Lead {i} Dental",
                website=f"https://l{i}.example.com",
                domain=f"l{i}.example.com",
            )
            for i in range(BIG)
        ],
        batch_size=2000,
    )
    reports = Report.objects.bulk_create(
        [
            Report(lead=lead, html=f"<html><body><h1>Lead {i}</h1></body></html>")
            for i, lead in enumerate(leads)
        ],
        batch_size=2000,
    )
    BatchReportLead.objects.bulk_create(
        [
            BatchReportLead(
                batch=batch,
                lead=lead,
                position=i,
                status=BatchReportLead.Status.SUCCEEDED,
                attempts=1,
                cost_usd=Decimal("0.2031"),
                duration_ms=1500,
                report=report,
            )
            for i, (lead, report) in enumerate(zip(leads, reports, strict=True))
        ],
        batch_size=2000,
    )
    return batch


def _chunks(response) -> list[bytes]:
    assert response.streaming is True
    return list(response.streaming_content)


def test_csv_of_10000_leads_is_streamed_in_bounded_chunks_and_complete(big_batch, viewer_client):
    response = viewer_client.get(f"/api/batches/{big_batch.pk}/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="batch-{big_batch.pk}.csv"'
    chunks = _chunks(response)
    assert len(chunks) > 10
    assert max(len(chunk) for chunk in chunks) < CHUNK_BYTES + 1024
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == BIG + 1
    rows = list(csv.reader(lines))
    assert rows[0] == CSV_HEADER
    first = dict(zip(CSV_HEADER, rows[1], strict=True))
    row = BatchReportLead.objects.get(batch=big_batch, position=0)
    assert first == {
        "position": "0",
        "lead_id": str(row.lead_id),
        "company_name": "Lead 0 Dental",
        "domain": "l0.example.com",
        "status": "succeeded",
        "attempts": "1",
        "error_code": "",
        "error": "",
        "cost_usd": "0.2031",
        "duration_ms": "1500",
        "report_url": f"http://testserver{reverse('reports:detail', args=[row.report_id])}",
        "warnings": "",
        "share_url": "",
    }
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(BIG)]


def test_zip_of_10000_reports_is_streamed_with_one_entry_per_report(big_batch, viewer_client):
    response = viewer_client.get(f"/api/batches/{big_batch.pk}/reports.zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="batch-{big_batch.pk}-reports.zip"'
    chunks = _chunks(response)
    assert len(chunks) > 10
    # The last chunk holds the central directory (about 90 bytes per entry), written at the end.
    assert max(len(chunk) for chunk in chunks[:-1]) < CHUNK_BYTES + 4096
    assert len(chunks[-1]) < 100 * BIG
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    names = archive.namelist()
    assert len(names) == BIG
    assert len(set(names)) == BIG
    assert archive.testzip() is None
    row = BatchReportLead.objects.get(batch=big_batch, position=42)
    assert archive.read(f"00042-lead-42-dental-report-{row.report_id}.html") == row.report.html.encode()


@pytest.mark.django_db
def test_exports_cover_every_lead_row_and_rendered_pdfs(viewer_client):
    batch = make_batch(status=BatchReport.Status.COMPLETED_WITH_ERRORS)
    done, failed, _ = add_lead_rows(batch, ["succeeded", "failed", "skipped"])
    Lead.objects.filter(pk=failed.lead_id).update(company_name='=HYPERLINK("http://evil")')
    failed.attempts, failed.error_code, failed.last_error = 4, "timeout", "pagespeed: timed out, 3 times"
    failed.save()
    report = make_report(done.lead, html="<html>done</html>")
    report.pdf.save("done.pdf", ContentFile(b"%PDF-1.7 fake"), save=True)
    done.report = report
    done.save()

    rows = list(
        csv.reader(
            b"".join(_chunks(viewer_client.get(f"/api/batches/{batch.pk}/export.csv"))).decode().splitlines()
        )
    )
    assert len(rows) == 4
    assert rows[2][CSV_HEADER.index("company_name")] == '\'=HYPERLINK("http://evil")'
    assert rows[2][CSV_HEADER.index("error")] == "pagespeed: timed out, 3 times"
    assert rows[2][CSV_HEADER.index("report_url")] == ""
    assert rows[3][CSV_HEADER.index("status")] == "skipped"

    archive = zipfile.ZipFile(
        io.BytesIO(b"".join(_chunks(viewer_client.get(f"/api/batches/{batch.pk}/reports.zip"))))
    )
    stem = f"00000-company-{batch.pk}-0-report-{report.pk}"
    assert archive.namelist() == [f"{stem}.html", f"{stem}.pdf"]
    assert archive.read(f"{stem}.pdf") == b"%PDF-1.7 fake"


@pytest.mark.django_db
def test_downloads_ignore_accept_and_format_and_answer_errors_as_json(viewer_client):
    batch = make_batch(status=BatchReport.Status.COMPLETED)
    add_lead_rows(batch, ["succeeded"])
    for path in ("export.csv", "reports.zip"):
        response = viewer_client.get(f"/api/batches/{batch.pk}/{path}?format=csv", HTTP_ACCEPT="text/csv")
        assert response.status_code == 200
        assert response.streaming
        missing = viewer_client.get(f"/api/batches/999999/{path}", HTTP_ACCEPT="application/zip")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "Not found."}


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_download_is_an_async_stream(async_client):
    from asgiref.sync import sync_to_async

    @sync_to_async
    def setup():
        user = make_user("asgi-viewer", ROLE_PERMISSIONS["viewer"])
        batch = make_batch(status=BatchReport.Status.COMPLETED)
        add_lead_rows(batch, ["succeeded", "failed"])
        return batch.pk, Token.objects.create(user=user).key

    batch_id, key = await setup()
    response = await async_client.get(
        f"/api/batches/{batch_id}/export.csv", headers={"Authorization": f"Token {key}"}
    )
    assert response.status_code == 200
    assert response.is_async is True
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert len(body.decode().splitlines()) == 3
    await sync_to_async(connections.close_all)()


def test_csv_lists_a_succeeded_leads_warnings_in_one_cell(big_batch, viewer_client):
    BatchReportLead.objects.filter(batch=big_batch, position=1).update(
        warnings=[
            {
                "provider": "pagespeed",
                "code": "failed_document_request",
                "message": "could not load the site",
            },
            {"provider": "screenshot", "code": "host_returned_error", "message": "=the site answered 500"},
        ]
    )
    lines = b"".join(_chunks(viewer_client.get(f"/api/batches/{big_batch.pk}/export.csv"))).decode()
    row = dict(zip(CSV_HEADER, list(csv.reader(lines.splitlines()))[2], strict=True))
    assert row["warnings"] == "pagespeed: could not load the site; screenshot: =the site answered 500"


def test_the_csv_error_column_is_one_readable_line(viewer_client):
    batch = make_batch(status=BatchReport.Status.COMPLETED)
    add_lead_rows(
        batch,
        ["failed"],
        error_code="http_429",
        last_error="llm: <html><body><h1>429 Too Many Requests</h1>\n<hr>nginx</body></html>",
    )

    response = viewer_client.get(f"/api/batches/{batch.pk}/export.csv")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["error"] == "llm: 429 Too Many Requests"
