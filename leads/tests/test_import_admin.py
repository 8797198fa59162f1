"""The lead import pages of the admin, through the test client: permissions, bad files, confirm, errors."""

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from leads import services
from leads.models import Lead, LeadImport

pytestmark = pytest.mark.django_db

FILE = (
    "Company,Website,Industry,Score\n"
    "New One,newone.example.com,Dentist,50\n"
    "Bad,newtwo.example.com,Dentist,x\n"
)


@pytest.fixture
def importer(client, django_user_model, fast_passwords):
    user = django_user_model.objects.create_user(username="importer", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_lead", "add_lead", "change_lead"], content_type__app_label="leads"
        )
    )
    client.force_login(user)
    return user


def post_file(client, text: str, name: str = "leads.csv"):
    return client.post(reverse("admin:leads_lead_import"), {"file": SimpleUploadedFile(name, text.encode())})


def finish(lead_import_id: int) -> LeadImport:
    while services.lead_import_work(lead_import_id=lead_import_id):
        pass
    return LeadImport.objects.get(pk=lead_import_id)


def test_changelist_links_to_the_import_for_those_who_may_add_and_change_leads(client, importer):
    response = client.get(reverse("admin:leads_lead_changelist"))
    assert reverse("admin:leads_lead_import") in response.text


def test_view_only_staff_see_no_import_and_are_refused(client, staff_viewer):
    client.force_login(staff_viewer)
    assert reverse("admin:leads_lead_import") not in client.get(reverse("admin:leads_lead_changelist")).text
    assert client.get(reverse("admin:leads_lead_import")).status_code == 403
    assert post_file(client, FILE).status_code == 403
    assert not LeadImport.objects.exists()


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        (FILE, "leads.pdf", "Upload a .csv or .xlsx file."),
        ("Website\nacme.com\n", "leads.csv", "The file needs a company column"),
        ("not a workbook", "leads.xlsx", "The file is not a readable .xlsx workbook."),
    ],
)
def test_a_bad_file_is_refused_with_a_400_and_the_reason(client, importer, text, name, message):
    response = post_file(client, text, name)
    assert response.status_code == 400
    assert message in response.text
    assert not LeadImport.objects.exists()


def test_upload_runs_the_dry_run_then_confirm_imports(client, importer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post_file(client, FILE)
    lead_import = LeadImport.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:leads_lead_import_status", args=[lead_import.pk])
    assert len(callbacks) == 1  # the dry run is queued once the upload is committed

    page = client.get(response.url)
    assert 'data-status="running"' in page.text
    assert '<meta http-equiv="refresh"' in page.text

    finish(lead_import.pk)
    page = client.get(response.url)
    assert 'data-status="ready"' in page.text
    assert '<td data-testid="dry-run-new">1</td>' in page.text
    assert '<td data-testid="dry-run-invalid">1</td>' in page.text
    assert 'name="_confirm"' in page.text
    assert not Lead.objects.exists()

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(response.url, {"_confirm": "1"})
    assert len(callbacks) == 1
    finish(lead_import.pk)
    page = client.get(response.url)
    assert 'data-status="done"' in page.text
    assert list(Lead.objects.values_list("domain", flat=True)) == ["newone.example.com"]

    again = client.post(response.url, {"_confirm": "1"}, follow=True)
    assert "This import is not waiting for confirmation." in again.text
    assert Lead.objects.count() == 1


def test_the_error_file_downloads_as_csv(client, importer):
    post_file(client, FILE)
    lead_import = finish(LeadImport.objects.get().pk)
    response = client.get(reverse("admin:leads_lead_import_errors", args=[lead_import.pk]) + "?phase=dry_run")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="leads-dry-run-errors.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows == [
        ["row", "reason", "Company", "Website", "Industry", "Score"],
        ["3", "Score: “x” is not a whole number from 0 to 100.", "Bad", "newtwo.example.com", "Dentist", "x"],
    ]
    bad_phase = reverse("admin:leads_lead_import_errors", args=[lead_import.pk]) + "?phase=other"
    assert client.get(bad_phase).status_code == 404


def test_cells_that_a_spreadsheet_would_run_stay_text_in_the_error_file(client, importer):
    post_file(client, 'Company,Website,Industry\n"=HYPERLINK(""http://x"")",,Dentist\n')
    lead_import = finish(LeadImport.objects.get().pk)
    response = client.get(reverse("admin:leads_lead_import_errors", args=[lead_import.pk]))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1][2] == '\'=HYPERLINK("http://x")'


def test_a_failed_import_says_what_was_written_and_can_be_resumed(client, importer, monkeypatch):
    monkeypatch.setattr(services, "IMPORT_CHUNK_ROWS", 1)
    post_file(client, FILE)
    lead_import = finish(LeadImport.objects.get().pk)
    services.lead_import_confirm(lead_import=lead_import, user=importer)
    assert services.lead_import_work(lead_import_id=lead_import.pk, slice_seconds=0) is True
    # The stored file disappears between two slices: the next slice cannot read it.
    lead_import.file.storage.delete(lead_import.file.name)
    assert services.lead_import_work(lead_import_id=lead_import.pk) is False

    page = client.get(reverse("admin:leads_lead_import_status", args=[lead_import.pk]))
    assert 'data-status="failed"' in page.text
    assert "<strong>1</strong> of 2 rows were imported before it stopped" in page.text
    assert 'name="_resume"' in page.text
    assert "The uploaded file is no longer in storage: upload it again." in page.text
    assert Lead.objects.count() == 1


def test_a_stalled_import_offers_resume_and_says_what_is_written(client, importer, monkeypatch):
    monkeypatch.setattr(services, "IMPORT_CHUNK_ROWS", 1)
    post_file(client, FILE)
    lead_import = finish(LeadImport.objects.get().pk)
    services.lead_import_confirm(lead_import=lead_import, user=importer)
    services.lead_import_work(lead_import_id=lead_import.pk, slice_seconds=0)
    url = reverse("admin:leads_lead_import_status", args=[lead_import.pk])
    assert 'name="_resume"' not in client.get(url).text

    LeadImport.objects.filter(pk=lead_import.pk).update(updated_at=timezone.now() - timedelta(minutes=6))
    page = client.get(url)
    assert "No progress for five minutes" in page.text
    assert "1 row written so far; the rest are not." in page.text
    response = client.post(url, {"_resume": "1"})
    assert response.status_code == 302
    assert finish(lead_import.pk).status == LeadImport.Status.DONE
    assert Lead.objects.count() == 1


def test_the_error_file_name_keeps_only_safe_characters(client, importer):
    post_file(client, FILE, name='my "best" leads; 2026.csv')
    lead_import = finish(LeadImport.objects.get().pk)
    response = client.get(reverse("admin:leads_lead_import_errors", args=[lead_import.pk]))
    assert response["Content-Disposition"] == 'attachment; filename="my-best-leads-2026-dry-run-errors.csv"'
