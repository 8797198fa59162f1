from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from reports.models import ProviderCall, Report
from reports.services import report_generate

pytestmark = pytest.mark.django_db


def test_generate_report_prints_where_and_cost(lead_factory):
    lead = lead_factory(website="")
    out = StringIO()
    call_command("generate_report", "--lead", str(lead.pk), stdout=out)
    report = Report.objects.get(lead=lead)
    cost = ProviderCall.objects.get(lead=lead).cost_usd
    text = out.getvalue()
    assert f"Report {report.pk} for lead {lead.pk}: /reports/{report.pk}/" in text
    assert f"/reports/{report.pk}.pdf" in text
    assert f"Cost: ${cost.quantize(Decimal('0.000001'))} (llm ${cost.quantize(Decimal('0.000001'))})" in text


def test_generate_report_errors(lead_factory):
    with pytest.raises(CommandError, match="No lead with id 999999"):
        call_command("generate_report", "--lead", "999999")
    lead = lead_factory(website="http://gone.invalid")
    with pytest.raises(CommandError, match="website failed \\(permanent, unreachable\\)"):
        call_command("generate_report", "--lead", str(lead.pk))


def test_admin_pages(admin_client, lead_factory):
    report = report_generate(lead=lead_factory()).report
    for name in ("providerprice", "providercall", "providerresult", "report"):
        assert admin_client.get(reverse(f"admin:reports_{name}_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:reports_providerprice_add")).status_code == 200
    assert admin_client.get(reverse("admin:reports_providercall_add")).status_code == 403
    page = admin_client.get(reverse("admin:reports_report_change", args=[report.pk]))
    assert page.status_code == 200
    assert f'href="/reports/{report.pk}.pdf"'.encode() in page.content
