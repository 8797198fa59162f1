from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import FileExtensionValidator, RegexValidator, URLValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone


class Provider(models.TextChoices):
    WEBSITE = "website", "Website audit"
    PAGESPEED = "pagespeed", "PageSpeed Insights"
    SEMRUSH = "semrush", "SEMrush"
    SCREENSHOT = "screenshot", "ScreenshotOne"
    HUNTER = "hunter", "Hunter"
    LLM = "llm", "LLM summary"


class ProviderPrice(models.Model):
    """What one call to a provider costs from `effective_from` on (until a later row takes over).

    Past batches keep their prices because a call is billed at the row in force when it was made.
    """

    provider = models.CharField(max_length=20, choices=Provider.choices)
    unit_price_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    input_price_per_million_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    output_price_per_million_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    bills_failures = models.BooleanField(default=False, help_text="Failed calls cost the unit price too.")
    effective_from = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "effective_from"], name="price_provider_effective_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(unit_price_usd__gte=0)
                & models.Q(input_price_per_million_usd__gte=0)
                & models.Q(output_price_per_million_usd__gte=0),
                name="price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} from {self.effective_from:%Y-%m-%d %H:%M}"


class ProviderResult(models.Model):
    """Cached provider data for one subject (a domain, or a lead for per-lead providers).

    Fresh data is reused at $0, which is also what makes a retry after a crash never pay twice.
    """

    provider = models.CharField(max_length=20, choices=Provider.choices)
    subject = models.CharField(max_length=255, help_text="Domain, or lead:<id> for per-lead providers.")
    data = models.JSONField(default=dict)
    fetched_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))

    class Meta:
        verbose_name = "cached provider result"
        constraints = [
            models.UniqueConstraint(fields=["provider", "subject"], name="provider_result_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.subject}"


class ProviderCall(models.Model):
    """One HTTP call to a provider (or one reuse of cached data), with what it cost."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CACHED = "cached", "Cached (not paid)"

    provider = models.CharField(max_length=20, choices=Provider.choices)
    lead = models.ForeignKey("leads.Lead", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    batch_lead_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=50, blank=True)
    error = models.TextField(blank=True)
    transient = models.BooleanField(default=False, help_text="The failure may succeed when retried.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["provider", "created_at"], name="call_provider_created"),
            models.Index(fields=["created_at"], name="call_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(cost_usd__gte=0), name="call_cost_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.status} ({self.cost_usd})"


class Report(models.Model):
    """A website-audit report for one lead, rendered to HTML when built and to PDF on first download."""

    lead = models.ForeignKey("leads.Lead", on_delete=models.CASCADE, related_name="reports")
    provider_mode = models.CharField(max_length=10, default="sandbox")
    overall_score = models.PositiveSmallIntegerField(null=True, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    data = models.JSONField(default=dict, blank=True)
    html = models.TextField(blank=True)
    pdf = models.FileField(upload_to="reports/pdf/", blank=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    brand = models.ForeignKey(
        "BrandProfile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The profile the report was rendered with (its HTML keeps that look).",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Report #{self.pk} for lead {self.lead_id}"

    def get_absolute_url(self) -> str:
        return reverse("reports:detail", args=[self.pk])


HEX_COLOUR = RegexValidator(r"^#[0-9a-fA-F]{6}$", "Enter a colour as #RRGGBB, e.g. #1f6feb.")
LOGO_EXTENSIONS = ["png", "jpg", "jpeg", "gif", "webp"]
# Embedded in every report the profile renders (thousands per batch): a logo, not a photograph.
LOGO_MAX_BYTES = 256 * 1024


def validate_logo_size(logo) -> None:
    if logo.size > LOGO_MAX_BYTES:
        raise ValidationError(f"The logo must be at most {LOGO_MAX_BYTES // 1024} KiB.")


class BrandProfile(models.Model):
    """The agency's look on a report: name, logo, accent colour, contact line, call to action, footer.

    A batch records the profile it was launched with; its reports are rendered with it. At most one
    profile is the default, used when a batch names none.
    """

    name = models.CharField(max_length=100, unique=True, help_text="What the profile is called in lists.")
    agency_name = models.CharField(max_length=200, help_text="Shown at the top of every report.")
    logo = models.ImageField(
        upload_to="brands/",
        blank=True,
        validators=[FileExtensionValidator(LOGO_EXTENSIONS), validate_logo_size],
        help_text=f"PNG, JPEG, GIF or WebP, at most {LOGO_MAX_BYTES // 1024} KiB; embedded in each report.",
    )
    accent_colour = models.CharField(max_length=7, default="#1f6feb", validators=[HEX_COLOUR])
    contact_line = models.CharField(
        max_length=300, blank=True, help_text="e.g. “Jane Doe · jane@agency.example · +1 555 0100”."
    )
    cta_label = models.CharField("call-to-action label", max_length=80, blank=True)
    cta_url = models.URLField(
        "call-to-action URL",
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Where the call-to-action button leads (http or https).",
    )
    footer = models.TextField(max_length=1000, blank=True)
    is_default = models.BooleanField(
        default=False, help_text="Used for batches that name no profile. Only one profile is the default."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="brand_one_default"
            ),
            models.CheckConstraint(
                condition=models.Q(accent_colour__regex=r"^#[0-9a-fA-F]{6}$"), name="brand_accent_is_hex"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (default)" if self.is_default else self.name


class ShareLink(models.Model):
    """A link that opens one report without login, for its prospect, until it expires or is revoked.

    The URL carries `key` signed with SECRET_KEY (see reports.sharing): a guessed or altered token is
    refused before any lookup, and a leaked table of keys opens nothing without the secret.
    """

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="share_links")
    key = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["report", "-created_at"], name="share_report_created")]

    def __str__(self) -> str:
        return f"Share link of report #{self.report_id}"

    def is_active(self, *, at=None) -> bool:
        return self.revoked_at is None and self.expires_at > (at or timezone.now())
