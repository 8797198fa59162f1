from urllib.parse import urlsplit

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
