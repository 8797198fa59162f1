import pytest
from django.urls import reverse

from reports.services import report_generate

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(lead_factory):
    return report_generate(lead=lead_factory(company_name="Viewable Dental")).report


@pytest.fixture
def fast_hashers(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_urls():
    assert reverse("reports:detail", args=[5]) == "/reports/5/"
    assert reverse("reports:pdf", args=[5]) == "/reports/5.pdf"


@pytest.mark.parametrize("name", ["reports:detail", "reports:pdf"])
def test_anonymous_and_non_staff_are_sent_to_login(client, django_user_model, report, name, fast_hashers):
    url = reverse(name, args=[report.pk])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))

    user = django_user_model.objects.create_user(username="sales", password="pw", is_staff=False)
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    report.refresh_from_db()
    assert not report.pdf


def test_staff_see_html_and_pdf(admin_client, report):
    response = admin_client.get(reverse("reports:detail", args=[report.pk]))
    assert response.status_code == 200
    assert b"Viewable Dental" in response.content
    assert "default-src 'none'" in response["Content-Security-Policy"]

    response = admin_client.get(reverse("reports:pdf", args=[report.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content).startswith(b"%PDF")
    report.refresh_from_db()
    assert report.pdf.name.endswith(".pdf")


def test_missing_report_is_404(admin_client):
    assert admin_client.get("/reports/999999/").status_code == 404
    assert admin_client.get("/reports/999999.pdf").status_code == 404


def test_post_not_allowed(admin_client, report):
    assert admin_client.post(reverse("reports:detail", args=[report.pk])).status_code == 405
