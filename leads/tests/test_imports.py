"""Importing leads from CSV and XLSX: the dry run, matching, validation, the error file, resuming."""

import csv
import io
from datetime import timedelta

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from leadgen.errors import ConflictError, ServiceError
from leads import selectors, services
from leads.models import Lead, LeadImport, LeadImportRowError
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

HEADER = "Company Name,Website,E-mail,Phone,City,State,Country,Industry,Employees,Score,Notes\n"


def upload(text: str, name: str = "leads.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def run(lead_import: LeadImport, *, slice_seconds: float = 60) -> LeadImport:
    while services.lead_import_work(lead_import_id=lead_import.pk, slice_seconds=slice_seconds):
        pass
    lead_import.refresh_from_db()
    return lead_import


def counts(lead_import: LeadImport, prefix: str) -> dict[str, int]:
    return {
        key: getattr(lead_import, f"{prefix}_{key}") for key in ("new", "updated", "unchanged", "invalid")
    }


def error_file(lead_import: LeadImport, phase: str) -> list[list[str]]:
    data = b"".join(selectors.lead_import_error_file_chunks(lead_import=lead_import, phase=phase))
    return list(csv.reader(io.StringIO(data.decode())))


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_superuser(username="importer", password="pw")


@pytest.fixture
def existing():
    """Two leads the files below meet again: one to update, one unchanged."""
    return {
        "acme": LeadFactory(
            company_name="Acme Dental",
            website="https://acme-dental.example.com",
            email="hello@acme-dental.example.com",
            phone="555-0100",
            city="Austin",
            state="Texas",
            country="US",
            industry=Lead.Industry.DENTIST,
            employee_count=12,
            score=60,
        ),
        "bolt": LeadFactory(
            company_name="Bolt Plumbing",
            website="https://bolt-plumbing.example.com",
            email="",
            phone="555-0101",
            city="Dallas",
            state="Texas",
            country="US",
            industry=Lead.Industry.PLUMBER,
            employee_count=4,
            score=70,
        ),
    }


MIXED = HEADER + (
    # new
    "Corner Cafe,cornercafe.example.com,eat@cornercafe.example.com,555-0200,Houston,Texas,US,Restaurant,8,55,"
    "\n"
    # new, matched on nothing yet, email only
    "Solo Accounting,,books@solo.example.com,,Reno,Nevada,US,accounting,1,40,\n"
    # updates Acme (same domain through www. and a path): a new score and city
    "Acme Dental Group,https://www.acme-dental.example.com/contact,,,Round Rock,,,Dentist,,88,vip\n"
    # unchanged Bolt
    "Bolt Plumbing,bolt-plumbing.example.com,,555-0101,Dallas,Texas,US,Plumber,4,70,\n"
    # invalid: website the lead form refuses
    "Broken Site,http://exa mple.com,,,,,US,Dentist,,50,\n"
    # invalid: score out of range, unknown industry
    "Too High,toohigh.example.com,,,,,US,Astrology,,120,\n"
    # invalid: nothing to match on
    "Nameless,,,555-0300,,,US,Dentist,,50,\n"
    # invalid: the same domain as the first row
    "Corner Cafe Again,https://cornercafe.example.com,,,,,US,Restaurant,,50,\n"
)


def test_dry_run_counts_each_kind_and_writes_nothing(user, existing):
    before = {lead.pk: (lead.company_name, lead.score, lead.city) for lead in Lead.objects.all()}
    lead_import = run(services.lead_import_create(upload=upload(MIXED), user=user))

    assert lead_import.phase == LeadImport.Phase.DRY_RUN
    assert lead_import.status == LeadImport.Status.READY
    assert lead_import.rows_total == 8
    assert lead_import.rows_checked == 8
    assert counts(lead_import, "checked") == {"new": 2, "updated": 1, "unchanged": 1, "invalid": 4}
    assert lead_import.samples == {
        "new": [
            {"row": 2, "company": "Corner Cafe", "website": "https://cornercafe.example.com"},
            {"row": 3, "company": "Solo Accounting", "website": ""},
        ],
        "updated": [
            {
                "row": 4,
                "lead": existing["acme"].pk,
                "company": "Acme Dental Group",
                "changes": [
                    ["Company Name", "Acme Dental", "Acme Dental Group"],
                    [
                        "Website",
                        "https://acme-dental.example.com",
                        "https://www.acme-dental.example.com/contact",
                    ],
                    ["City", "Austin", "Round Rock"],
                    ["Score", "60", "88"],
                ],
            }
        ],
    }
    assert {lead.pk: (lead.company_name, lead.score, lead.city) for lead in Lead.objects.all()} == before


def test_confirm_writes_exactly_the_new_and_updated_rows(user, existing):
    lead_import = run(services.lead_import_create(upload=upload(MIXED), user=user))
    bolt_updated_at = Lead.objects.get(pk=existing["bolt"].pk).updated_at

    services.lead_import_confirm(lead_import=lead_import, user=user)
    lead_import = run(lead_import)

    assert lead_import.status == LeadImport.Status.DONE
    assert counts(lead_import, "imported") == {"new": 2, "updated": 1, "unchanged": 1, "invalid": 4}
    assert Lead.objects.count() == 4
    cafe = Lead.objects.get(domain="cornercafe.example.com")
    assert (cafe.company_name, cafe.website, cafe.industry, cafe.employee_count, cafe.score) == (
        "Corner Cafe",
        "https://cornercafe.example.com",
        Lead.Industry.RESTAURANT,
        8,
        55,
    )
    assert cafe.source == "import"
    solo = Lead.objects.get(email="books@solo.example.com")
    assert (solo.website, solo.domain, solo.industry) == ("", "", Lead.Industry.ACCOUNTING)
    acme = Lead.objects.get(pk=existing["acme"].pk)
    # Updated from the row; empty cells (email, phone, state, country, employees) kept what it had.
    assert (acme.company_name, acme.city, acme.score, acme.website) == (
        "Acme Dental Group",
        "Round Rock",
        88,
        "https://www.acme-dental.example.com/contact",
    )
    assert (acme.email, acme.phone, acme.state, acme.employee_count) == (
        "hello@acme-dental.example.com",
        "555-0100",
        "Texas",
        12,
    )
    assert acme.source == "google_maps"
    assert Lead.objects.get(pk=existing["bolt"].pk).updated_at == bolt_updated_at


def test_importing_the_same_file_again_updates_rather_than_duplicates(user, existing):
    first = run(services.lead_import_create(upload=upload(MIXED), user=user))
    run(services.lead_import_confirm(lead_import=first, user=user))
    leads = Lead.objects.count()

    again = run(services.lead_import_create(upload=upload(MIXED), user=user))
    run(services.lead_import_confirm(lead_import=again, user=user))

    assert Lead.objects.count() == leads
    assert counts(again, "imported") == {"new": 0, "updated": 0, "unchanged": 4, "invalid": 4}


def test_email_matches_when_there_is_no_website(user, existing):
    text = "Organization,Email,Score\nAcme by mail,HELLO@acme-dental.example.com,91\n"
    lead_import = run(services.lead_import_create(upload=upload(text), user=user))
    assert counts(lead_import, "checked") == {"new": 0, "updated": 1, "unchanged": 0, "invalid": 0}
    run(services.lead_import_confirm(lead_import=lead_import, user=user))
    acme = Lead.objects.get(pk=existing["acme"].pk)
    assert (acme.company_name, acme.score, acme.website) == (
        "Acme by mail",
        91,
        "https://acme-dental.example.com",
    )


@pytest.mark.parametrize(
    "headers",
    [
        "company,url,email,phone,city,state,country,industry,employees,score",
        "Company Name,Domain,Email,Phone,City,State,Country,Industry,Employee Count,Score",
        "ORGANIZATION,web-site,e_mail,telephone,town,region,country,industry,number_of_employees,lead score",
    ],
)
def test_common_column_names_are_accepted(user, headers):
    text = headers + '\nNew Co,newco.example.com,a@newco.example.com,555,Waco,Texas,us,Software,"1,200",90\n'
    lead_import = services.lead_import_create(upload=upload(text), user=user)
    assert set(lead_import.columns) == {
        "company_name",
        "website",
        "email",
        "phone",
        "city",
        "state",
        "country",
        "industry",
        "employee_count",
        "score",
    }
    run(services.lead_import_confirm(lead_import=run(lead_import), user=user))
    lead = Lead.objects.get(domain="newco.example.com")
    assert (lead.company_name, lead.email, lead.city, lead.country, lead.employee_count, lead.score) == (
        "New Co",
        "a@newco.example.com",
        "Waco",
        "US",
        1200,
        90,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Website,Email\nacme.com,a@acme.com\n", "needs a company column"),
        ("Company,Phone\nAcme,555\n", "needs a website column"),
        ("Company,Website,URL\nAcme,a.com,b.com\n", "“Website” and “URL” both hold the website"),
        ("", "The file is empty."),
    ],
)
def test_a_file_that_cannot_be_imported_is_refused_at_upload(user, text, message):
    with pytest.raises(ServiceError, match=message):
        services.lead_import_create(upload=upload(text), user=user)
    assert not LeadImport.objects.exists()


def test_other_file_types_are_refused(user):
    with pytest.raises(ServiceError, match=r"Upload a \.csv or \.xlsx file"):
        services.lead_import_create(upload=upload("Company,Website\n", name="leads.txt"), user=user)


def test_every_invalid_row_is_in_the_error_file_with_its_reason(user, existing):
    lead_import = run(services.lead_import_create(upload=upload(MIXED), user=user))
    rows = error_file(lead_import, LeadImport.Phase.DRY_RUN)

    assert rows[0] == ["row", "reason", *HEADER.strip().split(",")]
    by_row = {row[0]: row for row in rows[1:]}
    assert sorted(by_row, key=int) == ["6", "7", "8", "9"]
    assert by_row["6"][1] == "Website: Enter a valid URL."
    assert by_row["6"][2:4] == ["Broken Site", "http://exa mple.com"]
    assert "Score: “120” is not a whole number from 0 to 100." in by_row["7"][1]
    assert "Industry: Unknown industry “Astrology”" in by_row["7"][1]
    assert by_row["8"][1] == "A lead needs a website or an email, so that a later import can match it."
    assert by_row["9"][1].startswith("Same domain as row 2 (cornercafe.example.com)")


def test_websites_follow_the_lead_admin_form(user, monkeypatch):
    """The import asks the lead admin's form: a rule added there applies to files at once."""
    lead_admin = admin.site.get_model_admin(Lead)

    class StricterForm(lead_admin.form):
        def clean_website(self):
            website = self.cleaned_data["website"]
            if website.endswith(".invalid"):
                raise ValidationError("Sites under .invalid are refused.")
            return website

    monkeypatch.setattr(lead_admin, "form", StricterForm)
    text = (
        "Company,Website,Industry\n"
        "Good,good.example.com,Salon\n"
        "Bad,https://bad.invalid,Salon\n"
        "Not a URL,not a url at all,Salon\n"
    )
    lead_import = run(services.lead_import_create(upload=upload(text), user=user))

    assert counts(lead_import, "checked") == {"new": 1, "updated": 0, "unchanged": 0, "invalid": 2}
    reasons = {row[0]: row[1] for row in error_file(lead_import, LeadImport.Phase.DRY_RUN)[1:]}
    assert reasons == {"3": "Website: Sites under .invalid are refused.", "4": "Website: Enter a valid URL."}


def test_xlsx_files_import_like_csv(user, existing):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Company", "URL", "Email", "Industry", "Employees", "Score"])
    sheet.append(["Sheet Co", "sheet.example.com", "", "Salon", 25, 77.0])
    sheet.append([None, None, None, None, None, None])
    sheet.append(["Acme Dental", "acme-dental.example.com", None, "Dentist", None, 61])
    sheet.append(["Bad Score", "badscore.example.com", None, "Salon", 3, 101])
    data = io.BytesIO()
    workbook.save(data)
    file = SimpleUploadedFile("leads.xlsx", data.getvalue())

    lead_import = run(services.lead_import_create(upload=file, user=user))
    assert lead_import.file_format == "xlsx"
    assert counts(lead_import, "checked") == {"new": 1, "updated": 1, "unchanged": 0, "invalid": 1}
    assert [row[0] for row in error_file(lead_import, "dry_run")[1:]] == ["5"]
    run(services.lead_import_confirm(lead_import=lead_import, user=user))
    sheet_co = Lead.objects.get(domain="sheet.example.com")
    assert (sheet_co.industry, sheet_co.employee_count, sheet_co.score) == (Lead.Industry.SALON, 25, 77)
    assert Lead.objects.get(pk=existing["acme"].pk).score == 61


def many_rows(count: int, *, start: int = 0) -> str:
    lines = [f"Firm {n},firm{n}.example.com,,Software,{n % 101}\n" for n in range(start, start + count)]
    return "Company,Website,Email,Industry,Score\n" + "".join(lines)


def test_a_stalled_import_resumes_after_its_last_chunk(user, monkeypatch):
    monkeypatch.setattr(services, "IMPORT_CHUNK_ROWS", 10)
    lead_import = run(
        services.lead_import_create(upload=upload(many_rows(35) + "Dup,firm3.example.com,,,1\n"), user=user)
    )
    services.lead_import_confirm(lead_import=lead_import, user=user)

    # One slice writes one chunk, then the worker is gone.
    assert services.lead_import_work(lead_import_id=lead_import.pk, slice_seconds=0) is True
    lead_import.refresh_from_db()
    assert (lead_import.status, lead_import.rows_imported, Lead.objects.count()) == ("running", 10, 10)
    with pytest.raises(ConflictError):
        services.lead_import_resume(lead_import=lead_import, user=user)

    LeadImport.objects.filter(pk=lead_import.pk).update(updated_at=timezone.now() - timedelta(minutes=6))
    lead_import.refresh_from_db()
    services.lead_import_resume(lead_import=lead_import, user=user)
    lead_import = run(lead_import, slice_seconds=0)

    assert lead_import.status == LeadImport.Status.DONE
    assert lead_import.rows_imported == 36
    assert counts(lead_import, "imported") == {"new": 35, "updated": 0, "unchanged": 0, "invalid": 1}
    assert Lead.objects.count() == 35
    # The duplicate in the last chunk was caught although row 5 went in during an earlier slice.
    assert error_file(lead_import, "import")[1][:2] == [
        "37",
        "Same domain as row 5 (firm3.example.com): one lead, keep one row for it.",
    ]


def test_a_file_that_breaks_midway_fails_its_dry_run_with_the_line(user):
    good = many_rows(2_000).encode()
    broken = good + "Café,cafe.example.com,,Restaurant,1\n".encode("cp1252")
    file = SimpleUploadedFile("broken.csv", broken)
    lead_import = run(services.lead_import_create(upload=file, user=user))
    assert lead_import.status == LeadImport.Status.FAILED
    assert lead_import.phase == LeadImport.Phase.DRY_RUN
    assert "The CSV file is not UTF-8 near line" in lead_import.error
    assert Lead.objects.count() == 0


def test_confirm_only_once(user):
    lead_import = run(services.lead_import_create(upload=upload(many_rows(3)), user=user))
    services.lead_import_confirm(lead_import=lead_import, user=user)
    with pytest.raises(ConflictError, match="not waiting for confirmation"):
        services.lead_import_confirm(lead_import=lead_import, user=user)
    run(lead_import)
    assert Lead.objects.count() == 3
    assert not LeadImportRowError.objects.exists()


def test_the_task_runs_one_slice_and_queues_the_next_while_rows_remain(user, monkeypatch, settings):
    from django_q.models import OrmQ

    from leads.tasks import lead_import_task

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "orm": "default"}
    settings.Q_CLUSTER.pop("redis", None)
    monkeypatch.setattr(services, "IMPORT_CHUNK_ROWS", 2)
    monkeypatch.setattr(services, "IMPORT_SLICE_SECONDS", 0)
    lead_import = services.lead_import_create(upload=upload(many_rows(3)), user=user)
    queued = OrmQ.objects.count()

    assert lead_import_task(lead_import.pk) is True
    assert OrmQ.objects.count() == queued + 1
    assert lead_import_task(lead_import.pk) is False
    assert OrmQ.objects.count() == queued + 1
    lead_import.refresh_from_db()
    assert (lead_import.status, lead_import.rows_checked) == (LeadImport.Status.READY, 3)


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_the_same_new_leads_at_once_create_each_lead_once(django_user_model):
    import threading

    from django.db import connection

    user = django_user_model.objects.create_user(username="twice")
    text = many_rows(300)
    imports = [run(services.lead_import_create(upload=upload(text), user=user)) for _ in range(2)]
    for lead_import in imports:
        services.lead_import_confirm(lead_import=lead_import, user=user)
    start = threading.Barrier(2)

    def work(lead_import_id: int) -> None:
        try:
            start.wait()
            services.lead_import_work(lead_import_id=lead_import_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(lead_import.pk,)) for lead_import in imports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert Lead.objects.count() == 300
    results = sorted((li.imported_new, li.imported_unchanged) for li in LeadImport.objects.all())
    assert results == [(0, 300), (300, 0)]


@pytest.mark.django_db(transaction=True)
def test_the_same_import_worked_twice_at_once_counts_each_row_once(django_user_model, monkeypatch):
    """A task delivered twice: the second worker finds the position moved on and stops."""
    import threading

    from django.db import connection

    monkeypatch.setattr(services, "IMPORT_CHUNK_ROWS", 50)
    user = django_user_model.objects.create_user(username="twice")
    lead_import = run(services.lead_import_create(upload=upload(many_rows(300)), user=user))
    services.lead_import_confirm(lead_import=lead_import, user=user)
    start = threading.Barrier(2)

    def work() -> None:
        try:
            start.wait()
            while services.lead_import_work(lead_import_id=lead_import.pk):
                pass
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    lead_import.refresh_from_db()
    assert (lead_import.status, lead_import.rows_imported) == (LeadImport.Status.DONE, 300)
    assert counts(lead_import, "imported") == {"new": 300, "updated": 0, "unchanged": 0, "invalid": 0}
    assert Lead.objects.count() == 300
