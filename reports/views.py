from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_safe

from reports.models import Report
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
