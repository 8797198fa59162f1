"""Report HTML and PDF: lead-supplied text is escaped; the PDF opens and holds the company name."""

import io

import httpx
import pytest
from pypdf import PdfReader

from reports import sandbox
from reports.services import report_generate, report_pdf_ensure

pytestmark = pytest.mark.django_db

HOSTILE_NAME = "Acme <script>alert('name')</script> Dental"
HOSTILE_TITLE = "Home &lt;script&gt;alert('title')&lt;/script&gt;"


class HostilePage(httpx.AsyncBaseTransport):
    """The sandbox, except that the lead's homepage has a script tag in its title."""

    def __init__(self):
        self.inner = sandbox.SandboxTransport()

    async def handle_async_request(self, request):
        if request.extensions["leadgen_provider"] == "website":
            page = f"<html><head><title>{HOSTILE_TITLE}</title></head><body><h1>Hi</h1></body></html>"
            return httpx.Response(200, html=page)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def hostile_report(lead_factory):
    lead = lead_factory(company_name=HOSTILE_NAME)
    with sandbox.override_transport(HostilePage()):
        outcome = report_generate(lead=lead)
    assert outcome.error is None
    return outcome.report


def test_html_escapes_lead_text(hostile_report):
    html = hostile_report.html
    assert "<script" not in html
    assert "Acme &lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt; Dental" in html
    assert "Home &lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in html
    assert hostile_report.data["seo"]["title"] == "Home <script>alert('title')</script>"


def test_html_is_self_contained(hostile_report):
    html = hostile_report.html
    assert "http://" not in html.replace(hostile_report.lead.website, "")
    assert 'src="data:image/jpeg;base64,' in html
    assert "<link" not in html


def test_pdf_is_rendered_once_and_shows_the_escaped_text(hostile_report):
    report = report_pdf_ensure(report=hostile_report)
    name = report.pdf.name
    content = report.pdf.read()
    assert content.startswith(b"%PDF")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    assert "Acme <script>alert('name')</script> Dental" in text
    assert "Home <script>alert('title')</script>" in text

    again = report_pdf_ensure(report=type(report).objects.get(pk=report.pk))
    assert again.pdf.name == name
