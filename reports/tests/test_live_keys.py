"""Live mode checks the provider keys up front: the system check, the cost preview, the launch."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from batches.models import BatchReport
from batches.tests.api_fixtures import make_user, token_client
from leads.models import Lead
from reports.checks import provider_keys_check
from reports.providers import missing_keys

KEYS = ("PAGESPEED_API_KEY", "SEMRUSH_API_KEY", "SCREENSHOTONE_ACCESS_KEY", "HUNTER_API_KEY", "LLM_API_KEY")


@pytest.fixture
def live_with_keys(settings):
    settings.PROVIDER_MODE = "live"
    for key in KEYS:
        setattr(settings, key, f"{key.lower()}-value")
    return settings


def test_sandbox_needs_no_key(settings):
    for key in KEYS:
        setattr(settings, key, "")
    assert missing_keys() == {}
    assert provider_keys_check() == []


def test_live_mode_with_every_key_passes_the_check(live_with_keys):
    assert provider_keys_check() == []
    call_command("check", verbosity=0)


def test_live_mode_with_a_key_missing_fails_the_check_naming_it(live_with_keys):
    live_with_keys.HUNTER_API_KEY = ""
    live_with_keys.LLM_API_KEY = "   "

    [error] = provider_keys_check()

    assert error.id == "reports.E001"
    assert error.msg == "PROVIDER_MODE is live but HUNTER_API_KEY, LLM_API_KEY are not set."
    with pytest.raises(SystemCheckError, match="HUNTER_API_KEY, LLM_API_KEY"):
        call_command("check", verbosity=0)


@pytest.fixture
def runner_client(db):
    return token_client(make_user("runner", ["view_batchreport", "run_batch", "add_batchreport"]))


def leads_without_email(count: int) -> list[int]:
    return [
        Lead.objects.create(
            company_name=f"Dental {n}",
            website=f"https://dental{n}.example.com",
            industry=Lead.Industry.DENTIST,
        ).pk
        for n in range(count)
    ]


def test_preview_warns_about_the_keys_the_leads_need(live_with_keys, runner_client):
    live_with_keys.HUNTER_API_KEY = ""
    live_with_keys.SEMRUSH_API_KEY = ""

    response = runner_client.post(
        "/api/batches/preview/", {"lead_ids": leads_without_email(3)}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["budget"]["warnings"] == [
        "Live mode without SEMRUSH_API_KEY, HUNTER_API_KEY: set them before launching; "
        "the launch is refused until then."
    ]


def test_preview_ignores_a_missing_key_no_lead_needs(live_with_keys, runner_client):
    live_with_keys.HUNTER_API_KEY = ""
    lead = Lead.objects.create(
        company_name="Has Email", website="https://has-email.example.com", email="owner@has-email.example.com"
    )

    response = runner_client.post("/api/batches/preview/", {"lead_ids": [lead.pk]}, format="json")

    assert response.status_code == 200
    assert response.json()["budget"]["warnings"] == []


def test_launch_of_a_live_batch_with_a_key_missing_is_refused_and_creates_nothing(
    live_with_keys, runner_client
):
    live_with_keys.PAGESPEED_API_KEY = ""

    response = runner_client.post(
        "/api/batches/", {"name": "Live", "lead_ids": leads_without_email(2)}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Live mode without PAGESPEED_API_KEY: set the key or run the batch in the sandbox."
    }
    assert BatchReport.objects.count() == 0
