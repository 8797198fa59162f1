"""Shared set-up for the admin, live page, socket and browser tests."""

from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser

from django.contrib.auth.models import Permission
from django.utils import timezone

from batches.models import BatchReport, BatchReportLead
from leads.models import Lead, domain_from_website

BATCH_PERMISSIONS = ("view_batchreport", "run_batch")


def make_user(django_user_model, username: str, *, perms=(), is_staff: bool = True):
    """A user with the given `app_label.codename` permissions."""
    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=is_staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def bulk_leads(count: int, *, prefix: str = "Lead", **fields) -> list[Lead]:
    """`count` leads inserted with one bulk_create (no per-row save), e.g. 20,000 in about a second."""
    fields.setdefault("industry", Lead.Industry.DENTIST)
    leads = []
    for n in range(count):
        website = fields.get("website", f"https://{prefix.lower()}{n}.example.com")
        values = {
            "company_name": f"{prefix} {n}",
            "website": website,
            "domain": domain_from_website(website),
            "email": f"info@{prefix.lower()}{n}.example.com",
            "state": "Texas",
            **fields,
        }
        leads.append(Lead(**values))
    return Lead.objects.bulk_create(leads, batch_size=2000)


def make_batch(
    *,
    user,
    statuses: list[str],
    status: str = BatchReport.Status.RUNNING,
    provider_mode: str = "sandbox",
    name: str = "Texas dentists",
    error: str = "",
    error_code: str = "",
) -> BatchReport:
    """A batch in `status` whose lead rows have `statuses`, written directly (no engine involved)."""
    now = timezone.now()
    batch = BatchReport.objects.create(
        name=name,
        status=status,
        created_by=user,
        provider_mode=provider_mode,
        estimated_cost_usd=Decimal("1.2345"),
        # Nothing was paid through the call log, so the ledger stays consistent when the engine settles.
        actual_cost_usd=Decimal("0"),
        started_at=now - timedelta(minutes=1) if status != BatchReport.Status.DRAFT else None,
        finished_at=now if status in BatchReport.FINISHED else None,
    )
    leads = bulk_leads(len(statuses), prefix=f"B{batch.pk}")
    rows = []
    for position, (lead, lead_status) in enumerate(zip(leads, statuses, strict=True)):
        failed = lead_status == BatchReportLead.Status.FAILED
        processing = lead_status == BatchReportLead.Status.PROCESSING
        finished = lead_status in BatchReportLead.FINISHED
        rows.append(
            BatchReportLead(
                batch=batch,
                lead=lead,
                position=position,
                status=lead_status,
                attempts=0 if lead_status == BatchReportLead.Status.PENDING else (4 if failed else 1),
                last_error=error if failed else "",
                error_code=error_code if failed else "",
                cost_usd=Decimal("0.1300")
                if lead_status == BatchReportLead.Status.SUCCEEDED
                else Decimal("0"),
                duration_ms=1200 if finished else None,
                lease_owner="test-owner" if processing else "",
                lease_expires_at=now + timedelta(minutes=2) if processing else None,
                started_at=now if lead_status != BatchReportLead.Status.PENDING else None,
                finished_at=now if finished else None,
            )
        )
    BatchReportLead.objects.bulk_create(rows)
    return batch


class ElementIndex(HTMLParser):
    """Attributes of every element with an id, plus every <form> and <input> in document order."""

    def __init__(self, html: str):
        super().__init__()
        self.by_id: dict[str, dict] = {}
        self.forms: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        attrs["<tag>"] = tag
        if "id" in attrs:
            self.by_id[attrs["id"]] = attrs
        if tag == "form":
            self.forms.append({"attrs": attrs, "fields": []})
        elif tag in {"input", "select", "textarea", "button"} and self.forms and attrs.get("name"):
            self.forms[-1]["fields"].append(attrs)


def form_post_data(form: dict, *, submit: str) -> dict[str, str]:
    """What a browser posts for `form` when the submit button named `submit` is pressed."""
    data = {}
    for field in form["fields"]:
        kind = field.get("type", "text")
        name = field["name"]
        if kind == "submit":
            if name == submit:
                data[name] = field.get("value", "")
            continue
        if kind == "checkbox":
            if "checked" in field:
                data[name] = field.get("value", "on")
            continue
        data[name] = field.get("value", "")
    return data
