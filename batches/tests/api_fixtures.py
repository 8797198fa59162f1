"""Users, tokens and batch rows for the API tests (batch rows are written directly, as the engine would)."""

from decimal import Decimal

from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from batches.models import BatchReport, BatchReportLead
from leads.models import Lead
from reports.models import Report

ROLES = ("anonymous", "no_perms", "batches_only", "viewer", "run_only", "runner")
ROLE_PERMISSIONS = {
    "no_perms": [],
    "batches_only": ["view_batchreport"],
    "viewer": ["view_batchreport", "reports.view_report"],
    "run_only": ["run_batch"],
    "runner": ["view_batchreport", "run_batch", "reports.view_report"],
}


def make_user(username: str, codenames: list[str]):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password=None)
    for name in codenames:  # `codename` of the batches app, or `app_label.codename`
        app_label, _, codename = name.rpartition(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label or "batches", codename=codename)
        )
    return user


def token_client(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def make_batch(*, user=None, status=BatchReport.Status.QUEUED, **fields) -> BatchReport:
    fields.setdefault("name", "Test batch")
    fields.setdefault("provider_mode", "sandbox")
    return BatchReport.objects.create(created_by=user, status=status, **fields)


def add_lead_rows(batch: BatchReport, statuses: list[str], **fields) -> list[BatchReportLead]:
    """One new lead per status, in order, appended to the batch."""
    start = BatchReportLead.objects.filter(batch=batch).count()
    rows = []
    for offset, status in enumerate(statuses):
        position = start + offset
        lead = Lead.objects.create(
            company_name=f"Company {batch.pk}-{position}",
            website=f"https://c{batch.pk}-{position}.example.com",
            industry=Lead.Industry.DENTIST,
        )
        rows.append(
            BatchReportLead.objects.create(batch=batch, lead=lead, position=position, status=status, **fields)
        )
    return rows


def make_report(lead: Lead, *, html: str = "<html><body>Report</body></html>") -> Report:
    return Report.objects.create(lead=lead, html=html, cost_usd=Decimal("0.1"))
