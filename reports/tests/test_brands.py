"""Brand profiles: applied to the report HTML and PDF, one default, and a PDF that is tagged (PDF/UA),
embeds its fonts and fits a typical report on two pages."""

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from pypdf import PdfReader

from reports.models import LOGO_MAX_BYTES, BrandProfile
from reports.services import report_generate, report_pdf_ensure
from reports.tests.brands import make_brand, png_bytes

pytestmark = pytest.mark.django_db

ACCENT_RGB = (194, 24, 91)  # #c2185b


@pytest.fixture
def brand():
    return make_brand()


@pytest.fixture
def branded_report(lead_factory, brand):
    # No email: every provider applies (Hunter too), the fullest typical sandbox report.
    return report_generate(
        lead=lead_factory(company_name="Bright Smile Dental", email=""), brand=brand
    ).report


def pdf_of(report) -> PdfReader:
    report = report_pdf_ensure(report=report)
    with report.pdf.open("rb") as pdf:
        return PdfReader(io.BytesIO(pdf.read()))


def pdf_text(reader: PdfReader) -> str:
    return " ".join(page.extract_text() for page in reader.pages)


def fill_colours(reader: PdfReader) -> set[tuple[int, int, int]]:
    """Every RGB colour the pages paint with (rg / RG operators), in 0-255."""
    colours = set()
    for page in reader.pages:
        content = page.get_contents().get_data().decode("latin-1")
        for red, green, blue in re.findall(r"([\d.]+) ([\d.]+) ([\d.]+) (?:rg|RG)\b", content):
            colours.add(tuple(round(float(value) * 255) for value in (red, green, blue)))
    return colours


def structure_tags(node, seen=None, depth=0) -> set[str]:
    seen = set() if seen is None else seen
    node = node.get_object()
    if depth > 60:
        return seen
    if hasattr(node, "get") and node.get("/S") is not None:
        seen.add(str(node["/S"]))
    kids = node.get("/K") if hasattr(node, "get") else None
    if kids is None:
        return seen
    for kid in kids if isinstance(kids, list) else [kids]:
        kid = kid.get_object()
        if hasattr(kid, "get"):
            structure_tags(kid, seen, depth + 1)
    return seen


def test_the_report_html_carries_the_brand(branded_report, brand):
    html = branded_report.html
    assert "Northwind Digital" in html
    assert "Jane Doe · jane@northwind.example · +1 555 0100" in html
    assert '<a href="https://northwind.example/call">Book a free call</a>' in html
    assert "Northwind Digital Ltd, 1 Main Street, Springfield" in html
    assert "#c2185b" in html
    # The logo is embedded (PDFs are rendered without fetching anything), with the agency as its text.
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="Northwind Digital">', html)
    assert branded_report.brand == brand


def test_without_a_brand_the_report_has_no_agency_look(lead_factory, brand):
    html = report_generate(lead=lead_factory(email="")).report.html
    assert "Northwind" not in html
    assert "#c2185b" not in html
    assert "Next step" not in html


def test_the_button_text_stays_readable_on_a_light_accent(lead_factory):
    light = make_brand(name="Sunny", accent_colour="#FFEB3B", logo=False)
    html = report_generate(lead=lead_factory(), brand=light).report.html
    assert ".cta a { background: #ffeb3b; color: #111111; }" in html
    dark = make_brand(name="Navy", accent_colour="#0b3d91", logo=False)
    html = report_generate(lead=lead_factory(), brand=dark).report.html
    assert ".cta a { background: #0b3d91; color: #ffffff; }" in html


def test_the_pdf_is_tagged_embeds_its_fonts_carries_the_brand_and_fits_two_pages(branded_report):
    reader = pdf_of(branded_report)
    root = reader.trailer["/Root"]

    assert bool(root["/MarkInfo"]["/Marked"])
    tags = structure_tags(root["/StructTreeRoot"])
    assert {"/H1", "/H2", "/Table", "/P", "/Figure"} <= tags
    assert root["/Lang"] == "en"

    fonts = [font.get_object() for page in reader.pages for font in page["/Resources"]["/Font"].values()]
    assert fonts
    for font in fonts:
        described = font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font
        descriptor = described["/FontDescriptor"].get_object()
        assert {"/FontFile", "/FontFile2", "/FontFile3"} & set(descriptor), font["/BaseFont"]

    text = pdf_text(reader)
    assert "Northwind Digital" in text
    assert "Jane Doe · jane@northwind.example · +1 555 0100" in text
    assert "Book a free call" in text
    assert ACCENT_RGB in fill_colours(reader)
    assert len(reader.pages) <= 2


def test_an_unbranded_pdf_does_not_paint_the_accent(lead_factory):
    reader = pdf_of(report_generate(lead=lead_factory(email="")).report)
    assert ACCENT_RGB not in fill_colours(reader)
    assert "/StructTreeRoot" in reader.trailer["/Root"]


def test_one_default_profile_the_newest_takes_the_mark():
    first = make_brand(name="First", is_default=True, logo=False)
    second = make_brand(name="Second", is_default=True, logo=False)
    first.refresh_from_db()
    assert (first.is_default, second.is_default) == (False, True)
    assert list(BrandProfile.objects.filter(is_default=True)) == [second]


def test_admin_adds_a_profile_with_a_logo_and_refuses_a_bad_colour_or_a_large_logo(admin_client):
    url = reverse("admin:reports_brandprofile_add")
    data = {
        "name": "Acme",
        "agency_name": "Acme Growth",
        "accent_colour": "#1f6feb",
        "contact_line": "hello@acme.example",
        "cta_label": "Get the full audit",
        "cta_url": "https://acme.example/audit",
        "footer": "Acme Growth LLC",
        "is_default": "on",
    }
    response = admin_client.post(
        url, {**data, "logo": SimpleUploadedFile("acme.png", png_bytes(), content_type="image/png")}
    )
    assert response.status_code == 302
    acme = BrandProfile.objects.get(name="Acme")
    assert acme.is_default and acme.logo.name.startswith("brands/acme")

    too_big = SimpleUploadedFile("big.png", png_bytes(size=(2400, 2400)) + b"\0" * LOGO_MAX_BYTES)
    response = admin_client.post(url, {**data, "name": "Big", "logo": too_big})
    assert response.status_code == 200
    assert "at most 256 KiB" in str(response.context["adminform"].form.errors["logo"])

    response = admin_client.post(url, {**data, "name": "Red", "accent_colour": "red"})
    assert response.status_code == 200
    assert "accent_colour" in response.context["adminform"].form.errors

    response = admin_client.post(url, {**data, "name": "Js", "cta_url": "javascript:alert(1)"})
    assert response.status_code == 200
    assert "cta_url" in response.context["adminform"].form.errors
    assert BrandProfile.objects.count() == 1
