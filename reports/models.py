from decimal import Decimal

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
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Report #{self.pk} for lead {self.lead_id}"

    def get_absolute_url(self) -> str:
        return reverse("reports:detail", args=[self.pk])
