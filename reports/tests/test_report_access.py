"""Who may read a report (README "Who may see and do what"), and a PDF rendered once however many ask."""

import threading

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse

from reports.models import Report
from reports.services import report_generate


def staff(django_user_model, username: str, *, view_report: bool):
    user = django_user_model.objects.create_user(username=username, password=None, is_staff=True)
    if view_report:
        permission = Permission.objects.get(content_type__app_label="reports", codename="view_report")
        user.user_permissions.add(permission)
    return user


@pytest.fixture
def report(lead_factory):
    return report_generate(lead=lead_factory(company_name="Guarded Dental")).report


def pdf_files(settings) -> list[str]:
    folder = settings.MEDIA_ROOT / "reports" / "pdf"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["reports:detail", "reports:pdf"])
def test_staff_without_the_view_report_permission_are_refused(
    client, django_user_model, report, name, settings
):
    client.force_login(staff(django_user_model, "plain-staff", view_report=False))

    response = client.get(reverse(name, args=[report.pk]))

    assert response.status_code == 403
    assert b"Guarded Dental" not in response.content
    report.refresh_from_db()
    assert not report.pdf
    assert pdf_files(settings) == []


@pytest.mark.django_db
def test_staff_with_the_view_report_permission_read_the_report_and_its_pdf(client, django_user_model, report):
    client.force_login(staff(django_user_model, "reader", view_report=True))

    page = client.get(reverse("reports:detail", args=[report.pk]))
    pdf = client.get(reverse("reports:pdf", args=[report.pk]))

    assert page.status_code == 200
    assert b"Guarded Dental" in page.content
    assert pdf.status_code == 200
    assert b"".join(pdf.streaming_content).startswith(b"%PDF")


@pytest.mark.django_db(transaction=True)
def test_concurrent_pdf_downloads_render_it_once(django_user_model, report, settings):
    reader = staff(django_user_model, "reader", view_report=True)
    readers = 4
    barrier = threading.Barrier(readers)
    answers: list[tuple[int, bytes]] = []

    def download():
        client = Client()
        client.force_login(reader)
        try:
            barrier.wait(timeout=30)
            response = client.get(reverse("reports:pdf", args=[report.pk]))
            answers.append((response.status_code, b"".join(response.streaming_content)))
        finally:
            connection.close()

    threads = [threading.Thread(target=download) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert [status for status, _ in answers] == [200] * readers
    assert len({body for _, body in answers}) == 1  # the one file, served to all
    assert pdf_files(settings) == [f"report-{report.pk}.pdf"]
    assert Report.objects.get(pk=report.pk).pdf.name == f"reports/pdf/report-{report.pk}.pdf"
