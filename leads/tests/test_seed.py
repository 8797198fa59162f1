import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from leads.models import Lead, domain_from_website
from leads.services import lead_seed

pytestmark = pytest.mark.django_db

TIMESTAMPS = {"id", "created_at", "updated_at", "last_reported_at"}


def fingerprint() -> str:
    fields = [f.attname for f in Lead._meta.concrete_fields if f.attname not in TIMESTAMPS]
    rows = Lead.objects.order_by("id").values_list(*fields)
    return hashlib.sha256(repr(list(rows)).encode()).hexdigest()


def test_same_seed_gives_identical_leads():
    lead_seed(count=300, seed=42)
    first = fingerprint()
    reported_first = Lead.objects.filter(last_reported_at__isnull=False).count()
    Lead.objects.all().delete()

    call_command("seed_leads", count=300, seed=42, stdout=StringIO(), stderr=StringIO())

    assert fingerprint() == first
    assert Lead.objects.filter(last_reported_at__isnull=False).count() == reported_first


def test_other_seed_gives_other_leads():
    lead_seed(count=50, seed=1)
    first = fingerprint()
    Lead.objects.all().delete()

    lead_seed(count=50, seed=2)

    assert fingerprint() != first


def test_seeded_leads_are_realistic_and_varied():
    now = timezone.now()
    lead_seed(count=2_000, seed=7)
    leads = list(Lead.objects.all())

    assert len(leads) == 2_000
    no_website = [lead for lead in leads if not lead.website]
    no_email = [lead for lead in leads if not lead.email]
    unreachable = [lead for lead in leads if lead.domain.endswith(".invalid")]
    malformed = [lead for lead in leads if lead.domain.startswith("-")]
    assert 0.11 < len(no_website) / 2_000 < 0.19
    assert 0.21 < len(no_email) / 2_000 < 0.29
    assert 5 <= len(unreachable) <= 30
    assert 5 <= len(malformed) <= 30
    assert all(lead.domain == domain_from_website(lead.website) for lead in leads)
    assert all(lead.domain == "" for lead in no_website)
    assert {lead.industry for lead in leads} == set(Lead.Industry.values)
    assert {lead.status for lead in leads} == set(Lead.Status.values)
    assert all(0 <= lead.score <= 100 for lead in leads)
    assert {lead.score >= 80 for lead in leads} == {True, False}
    assert len({lead.state for lead in leads}) > 20

    # Creation times spread over the past year, not the moment of insertion.
    assert all(now - timedelta(days=366) < lead.created_at <= now for lead in leads)
    assert sum(lead.created_at < now - timedelta(days=180) for lead in leads) > 700
    reported = [lead for lead in leads if lead.last_reported_at]
    assert 0.15 < len(reported) / 2_000 < 0.25
    assert all(lead.created_at <= lead.last_reported_at <= now for lead in reported)
    assert any(lead.last_reported_at < now - timedelta(days=30) for lead in reported)
    assert any(lead.last_reported_at >= now - timedelta(days=30) for lead in reported)


def test_command_reports_progress_on_stderr_and_the_result_on_stdout():
    stdout, stderr = StringIO(), StringIO()

    call_command("seed_leads", "--count", "12000", "--seed", "3", stdout=stdout, stderr=stderr)

    assert Lead.objects.count() == 12_000
    assert stdout.getvalue() == "Created 12000 leads (seed 3).\n"
    assert "12000/12000" in stderr.getvalue()
    assert "5000/12000" in stderr.getvalue()


def test_command_refuses_a_negative_count():
    with pytest.raises(CommandError, match="--count"):
        call_command("seed_leads", count=-1)
