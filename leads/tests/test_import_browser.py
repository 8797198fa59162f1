"""Importing a lead file through the admin in a real browser, with daphne and a qcluster running it."""

import csv
import io

import pytest

from batches.tests.test_browser import browser, cpo, logged_in_page, servers  # noqa: F401 (fixtures)
from leads.models import Lead, LeadImport
from leads.tests.factories import LeadFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FILE = (
    "Company,URL,Email,City,State,Industry,Employees,Score\n"
    "Fresh Smiles,freshsmiles.example.com,hi@freshsmiles.example.com,Austin,Texas,Dentist,9,71\n"
    "Pipe Pros,https://pipepros.example.com,,Tulsa,Oklahoma,Plumber,3,64\n"
    "Known Dental Renamed,www.known-dental.example.com,,,,Dentist,,90\n"
    "Same Old,same-old.example.com,,Boise,Idaho,Salon,5,50\n"
    "Bad Site,http://bad site.example.com,,,,Dentist,,50\n"
    "Bad Score,badscore.example.com,,,,Dentist,,150\n"
)


@pytest.fixture(autouse=True)
def _media_shared_with_servers(monkeypatch, settings):
    # daphne stores the upload and the qcluster reads it: both must see the test's media folder.
    monkeypatch.setenv("MEDIA_ROOT", str(settings.MEDIA_ROOT))


def test_import_csv_dry_run_confirm_and_error_file(servers, browser, cpo, tmp_path):  # noqa: F811
    known = LeadFactory(
        company_name="Known Dental", website="https://known-dental.example.com", score=40, industry="dentist"
    )
    same = LeadFactory(
        company_name="Same Old",
        website="https://same-old.example.com",
        email="",
        city="Boise",
        state="Idaho",
        industry="salon",
        employee_count=5,
        score=50,
    )
    untouched = LeadFactory(company_name="Not In The File")
    path = tmp_path / "prospects.csv"
    path.write_text(FILE)
    page = logged_in_page(browser, servers)

    page.goto("/admin/leads/lead/")
    page.click("text=Import leads")
    page.set_input_files("#id_file", str(path))
    page.click("input[name=_upload]")
    page.wait_for_selector("#import-state[data-status=ready]", timeout=60_000)

    dry_run = {
        kind: page.text_content(f"[data-testid=dry-run-{kind}]") for kind in ("new", "updated", "unchanged")
    }
    assert dry_run == {"new": "2", "updated": "1", "unchanged": "1"}
    assert page.text_content("[data-testid=dry-run-invalid]") == "2"
    assert page.locator("#sample-new tbody tr").all_text_contents() == [
        "2Fresh Smileshttps://freshsmiles.example.com",
        "3Pipe Proshttps://pipepros.example.com",
    ]
    update = page.locator("#sample-updated tbody tr").all_inner_texts()
    assert len(update) == 1
    assert "Company: Known Dental → Known Dental Renamed" in update[0]
    assert "Score: 40 → 90" in update[0]
    assert page.locator("#sample-invalid tbody tr td:first-child").all_text_contents() == ["6", "7"]
    assert Lead.objects.count() == 3
    assert Lead.objects.get(pk=known.pk).score == 40

    with page.expect_download() as download:
        page.click("#dry-run-errors")
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert [row[:3] for row in rows[1:]] == [
        ["6", "URL: Enter a valid URL.", "Bad Site"],
        ["7", rows[2][1], "Bad Score"],
    ]
    assert rows[2][1] == "Score: “150” is not a whole number from 0 to 100."

    page.click("input[name=_confirm]")
    page.wait_for_selector("#import-state[data-status=done]", timeout=60_000)
    assert page.text_content("[data-testid=import-new]") == "2"
    assert page.text_content("[data-testid=import-updated]") == "1"
    assert page.text_content("[data-testid=import-invalid]") == "2"

    assert Lead.objects.count() == 5
    assert set(
        Lead.objects.exclude(pk__in=[known.pk, same.pk, untouched.pk]).values_list("domain", flat=True)
    ) == {
        "freshsmiles.example.com",
        "pipepros.example.com",
    }
    known.refresh_from_db()
    assert (known.company_name, known.score) == ("Known Dental Renamed", 90)
    assert Lead.objects.get(pk=same.pk).updated_at == same.updated_at
    assert LeadImport.objects.get().status == LeadImport.Status.DONE

    with page.expect_download() as download:
        page.click("#import-errors")
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert [row[0] for row in rows[1:]] == ["6", "7"]
