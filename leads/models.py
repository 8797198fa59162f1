from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from leadgen.egress import url_validator


def domain_from_website(website: str) -> str:
    """The bare host of a website URL: lower case, no scheme, port, path or leading `www.`."""
    if not website:
        return ""
    value = website.strip()
    if "://" not in value:
        value = f"http://{value}"
    host = (urlsplit(value).hostname or "").lower().rstrip(".")
    return host.removeprefix("www.")


class Lead(models.Model):
    class Industry(models.TextChoices):
        DENTIST = "dentist", "Dentist"
        LAW_FIRM = "law_firm", "Law firm"
        RESTAURANT = "restaurant", "Restaurant"
        PLUMBER = "plumber", "Plumber"
        REAL_ESTATE = "real_estate", "Real estate"
        ACCOUNTING = "accounting", "Accounting"
        FITNESS = "fitness", "Fitness"
        MEDICAL = "medical", "Medical clinic"
        AUTO_REPAIR = "auto_repair", "Auto repair"
        SALON = "salon", "Salon"
        ROOFING = "roofing", "Roofing"
        SOFTWARE = "software", "Software"

    class Status(models.TextChoices):
        NEW = "new", "New"
        CONTACTED = "contacted", "Contacted"
        QUALIFIED = "qualified", "Qualified"
        CUSTOMER = "customer", "Customer"
        DISQUALIFIED = "disqualified", "Disqualified"

    company_name = models.CharField(max_length=200)
    # The egress policy's syntax rules (scheme, port, a written address); the host is resolved and
    # vetted when the audit fetches it.
    website = models.URLField(max_length=500, blank=True, validators=[url_validator])
    domain = models.CharField(max_length=255, blank=True, db_index=True, editable=False)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=50, blank=True)
    contact_name = models.CharField(max_length=200, blank=True)
    industry = models.CharField(max_length=32, choices=Industry.choices)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=2, default="US")
    employee_count = models.PositiveIntegerField(null=True, blank=True)
    score = models.PositiveSmallIntegerField(default=50)
    source = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    last_reported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["industry", "score"], name="lead_industry_score"),
            models.Index(fields=["state"], name="lead_state"),
            models.Index(fields=["status"], name="lead_status"),
            models.Index(fields=["source"], name="lead_source"),
            models.Index(fields=["score"], name="lead_score"),
            models.Index(fields=["last_reported_at"], name="lead_last_reported"),
            models.Index(Lower("company_name"), name="lead_company_lower"),
            models.Index(fields=["-created_at", "-id"], name="lead_created_id"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(score__lte=100), name="lead_score_at_most_100"),
        ]

    def __str__(self) -> str:
        return self.company_name

    def save(self, *args, **kwargs):
        self.domain = domain_from_website(self.website)
        if kwargs.get("update_fields") is not None and "website" in kwargs["update_fields"]:
            kwargs["update_fields"] = {*kwargs["update_fields"], "domain"}
        super().save(*args, **kwargs)


class LeadImport(models.Model):
    """One uploaded lead file, taken through a dry run and, once confirmed, the import itself.

    Both phases read the stored file in chunks; each chunk commits with the counts and the row
    position it reached, so a stopped phase resumes from its last chunk and says how far it got.
    """

    class Phase(models.TextChoices):
        DRY_RUN = "dry_run", "Dry run"
        IMPORT = "import", "Import"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        READY = "ready", "Waiting for confirmation"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    file = models.FileField(upload_to="lead-imports/%Y/%m/")
    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=8)
    headers = models.JSONField(default=list)
    columns = models.JSONField(default=dict, help_text="Lead field -> the file's column for it.")
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.DRY_RUN)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    rows_checked = models.PositiveIntegerField(default=0)
    checked_new = models.PositiveIntegerField(default=0)
    checked_updated = models.PositiveIntegerField(default=0)
    checked_unchanged = models.PositiveIntegerField(default=0)
    checked_invalid = models.PositiveIntegerField(default=0)
    samples = models.JSONField(
        default=dict, blank=True, help_text="The dry run's first new and updated rows, with the changes."
    )
    rows_imported = models.PositiveIntegerField(default=0)
    imported_new = models.PositiveIntegerField(default=0)
    imported_updated = models.PositiveIntegerField(default=0)
    imported_unchanged = models.PositiveIntegerField(default=0)
    imported_invalid = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    imported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_phase_display().lower()}, {self.get_status_display().lower()})"


class LeadImportRowError(models.Model):
    """An invalid row of an import's file, with its reason and its cells as read, for the error file."""

    lead_import = models.ForeignKey(LeadImport, on_delete=models.CASCADE, related_name="row_errors")
    phase = models.CharField(max_length=16, choices=LeadImport.Phase.choices)
    row_number = models.PositiveIntegerField()
    reason = models.TextField()
    values = models.JSONField(default=list)

    class Meta:
        ordering = ["row_number"]
        indexes = [models.Index(fields=["lead_import", "phase", "row_number"], name="lead_import_error_row")]

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.reason}"
