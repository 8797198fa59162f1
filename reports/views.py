from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseNotFound
from django.shortcuts import get_object_or_404
from django.utils.text import slugify
from django.views.decorators.http import require_safe

from reports.models import Report
from reports.selectors import share_link_resolve
from reports.services import report_pdf_ensure

# Reports are self-contained: inline CSS and data: images only, and never a script.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
)

# Staff who may view reports (README "Who may see and do what"); staff without it get 403.
view_report_permission = permission_required("reports.view_report", raise_exception=True)


@require_safe
@staff_member_required
@view_report_permission
def report_detail(request: HttpRequest, pk: int) -> HttpResponse:
    report = get_object_or_404(Report.objects.only("html"), pk=pk)
    response = HttpResponse(report.html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = REPORT_CSP
    return response


@require_safe
@staff_member_required
@view_report_permission
def report_pdf(request: HttpRequest, pk: int) -> FileResponse:
    report = report_pdf_ensure(report=get_object_or_404(Report.objects.only("pdf"), pk=pk))
    return FileResponse(
        report.pdf.open("rb"), content_type="application/pdf", filename=f"report-{report.pk}.pdf"
    )


# What a share link's answers carry, found or not: kept out of search engines and of every cache (a
# revoked link must not be served from one), and the token is not sent on in a Referer header.
SHARE_HEADERS = {
    "X-Robots-Tag": "noindex, nofollow, noarchive",
    "Cache-Control": "no-store, private",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": REPORT_CSP,
}
SHARE_NOT_FOUND = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="robots" content="noindex, nofollow"><title>Link not available</title></head>'
    "<body><h1>Link not available</h1><p>This link does not open a report.</p></body></html>"
)


def _share_headers(response: HttpResponse) -> HttpResponse:
    for name, value in SHARE_HEADERS.items():
        response[name] = value
    return response


def _share_not_found() -> HttpResponse:
    """The one answer for a token that is malformed, unknown, expired or revoked: it tells none apart."""
    return _share_headers(HttpResponseNotFound(SHARE_NOT_FOUND, content_type="text/html; charset=utf-8"))


@require_safe
def shared_report(request: HttpRequest, token: str) -> HttpResponse:
    """The report a share link opens, for its prospect: no login, the report document alone."""
    link = share_link_resolve(token=token)
    if link is None:
        return _share_not_found()
    return _share_headers(HttpResponse(link.report.html, content_type="text/html; charset=utf-8"))


@require_safe
def shared_report_pdf(request: HttpRequest, token: str) -> HttpResponse:
    link = share_link_resolve(token=token)
    if link is None:
        return _share_not_found()
    report = report_pdf_ensure(report=link.report)
    name = slugify(report.data.get("company_name", "")) or "website"
    response = FileResponse(
        report.pdf.open("rb"), content_type="application/pdf", filename=f"{name}-website-audit.pdf"
    )
    return _share_headers(response)
