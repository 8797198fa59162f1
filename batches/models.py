from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.urls import reverse

from leadgen.egress import url_validator

ZERO = Decimal("0")


class BatchReport(models.Model):
    """A batch of reports over a frozen selection of leads, and its budget ledger."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLING = "cancelling", "Cancelling"
        COMPLETED = "completed", "Completed"
        COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    FINISHED = (Status.COMPLETED, Status.COMPLETED_WITH_ERRORS, Status.CANCELLED, Status.FAILED)
    # Runners work on these (claim while queued or running; finish the leads in flight while cancelling).
    # A paused batch is none of these: nothing starts, recovery leaves it alone, resume makes it run again.
    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.CANCELLING)
    CLAIMABLE = (Status.QUEUED, Status.RUNNING)

    name = models.CharField(max_length=200)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="batches"
    )
    provider_mode = models.CharField(max_length=10)
    concurrency = models.PositiveSmallIntegerField(default=10)
    max_retries = models.PositiveSmallIntegerField(default=3)
    budget_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    skip_recent_days = models.PositiveIntegerField(default=30)
    include_recent = models.BooleanField(default=False)
    brand = models.ForeignKey(
        "reports.BrandProfile",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="batches",
        help_text="The brand profile of its reports (the default profile when it was created).",
    )
    estimated_cost_usd = models.DecimalField(max_digits=12, decimal_places=4, default=ZERO)
    estimate = models.JSONField(default=dict, blank=True, help_text="The cost preview at launch.")
    # The ledger keeps the call log's 6 places so that actual == sum of call costs exactly; the
    # snapshot shows 4.
    actual_cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=ZERO)
    reserved_usd = models.DecimalField(max_digits=14, decimal_places=6, default=ZERO)
    run = models.PositiveIntegerField(default=1, help_text="Incremented by each retry-failed.")
    seq = models.PositiveBigIntegerField(default=0, help_text="Progress event sequence number.")
    stop_reason = models.CharField(
        max_length=50,
        blank=True,
        help_text="Why the batch stopped or paused: budget_exhausted, daily_budget_exhausted, "
        "paused_by_user, provider_unavailable, cancelled_by_user.",
    )
    stop_detail = models.CharField(
        max_length=500, blank=True, help_text="One readable line: what stopped it."
    )
    idempotency_key = models.CharField(max_length=255, blank=True)
    idempotency_fingerprint = models.CharField(max_length=64, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True, help_text="When completion was announced.")
    runner_heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of a runner (or of an enqueue) for this batch."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "batch"
        verbose_name_plural = "batches"
        ordering = ["-created_at", "-id"]
        permissions = [("run_batch", "Can preview, launch, cancel and retry report batches")]
        indexes = [
            models.Index(fields=["status", "created_at"], name="batch_status_created"),
            models.Index(fields=["created_by", "-created_at"], name="batch_user_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(concurrency__gte=1, concurrency__lte=50), name="batch_concurrency_1_50"
            ),
            models.CheckConstraint(condition=Q(max_retries__lte=10), name="batch_max_retries_at_most_10"),
            models.CheckConstraint(
                condition=Q(budget_usd__isnull=True) | Q(budget_usd__gte=0), name="batch_budget_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(actual_cost_usd__gte=0, reserved_usd__gte=0, estimated_cost_usd__gte=0),
                name="batch_money_not_negative",
            ),
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="batch_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("batches:detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class BatchReportLead(models.Model):
    """One lead's place in a batch: its status, attempts, lease and what it cost."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.CANCELLED)

    # No index of its own: every index of the table but two begins with the batch (claim and settle
    # rewrite a row twice per attempt, and each index is written again each time).
    batch = models.ForeignKey(BatchReport, on_delete=models.CASCADE, related_name="leads", db_index=False)
    lead = models.ForeignKey("leads.Lead", on_delete=models.PROTECT, related_name="batch_rows")
    position = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="All attempts, over every run.")
    run_attempts = models.PositiveSmallIntegerField(default=0, help_text="Attempts in the current run.")
    last_error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=ZERO)
    cost_breakdown = models.JSONField(default=dict, blank=True)
    warnings = models.JSONField(
        default=list,
        blank=True,
        help_text="Sections a succeeded lead's report lacks for the lead's own reason: "
        "{provider, code, message}.",
    )
    reserved_usd = models.DecimalField(max_digits=14, decimal_places=6, default=ZERO)
    reserved_on = models.DateField(null=True, blank=True)
    report = models.ForeignKey(
        "reports.Report", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Backoff: not before this time.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "batch lead"
        ordering = ["batch", "position"]
        indexes = [
            # Also the index of the batch's counts by status (its first two columns).
            models.Index(fields=["batch", "status", "position"], name="batch_lead_claim"),
            models.Index(fields=["batch", "-updated_at", "-id"], name="batch_lead_recent_changes"),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="processing"),
                name="batch_lead_lease_expiry",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["batch", "lead"], name="batch_lead_unique"),
            models.UniqueConstraint(fields=["batch", "position"], name="batch_position_unique"),
            models.CheckConstraint(
                condition=~Q(status="processing") | (~Q(lease_owner="") & Q(lease_expires_at__isnull=False)),
                name="batch_lead_processing_has_lease",
            ),
            models.CheckConstraint(
                condition=Q(status="processing") | Q(reserved_usd=0),
                name="batch_lead_reserved_only_in_flight",
            ),
            models.CheckConstraint(condition=Q(run_attempts__lte=F("attempts")), name="batch_lead_attempts"),
            models.CheckConstraint(
                condition=Q(cost_usd__gte=0, reserved_usd__gte=0), name="batch_lead_money_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.lead_id} {self.status}"


class DailySpend(models.Model):
    """The daily budget ledger: what was spent and what is reserved on one (UTC) day."""

    day = models.DateField(unique=True)
    spent_usd = models.DecimalField(max_digits=14, decimal_places=6, default=ZERO)
    reserved_usd = models.DecimalField(max_digits=14, decimal_places=6, default=ZERO)

    class Meta:
        verbose_name = "daily spend"
        verbose_name_plural = "daily spend"
        ordering = ["-day"]
        constraints = [
            models.CheckConstraint(
                condition=Q(spent_usd__gte=0, reserved_usd__gte=0), name="daily_spend_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.spent_usd} spent, {self.reserved_usd} reserved"


class WebhookEndpoint(models.Model):
    """A receiver of signed completion webhooks.

    Each POST carries `X-Leadgen-Timestamp: <unix seconds>` and
    `X-Leadgen-Signature: sha256=<hex HMAC-SHA256 of f"{timestamp}.{raw body}" keyed with secret>`.
    """

    name = models.CharField(max_length=100)
    # Checked by the egress policy on save (syntax, scheme, port, a written address) and on every send.
    url = models.URLField(max_length=500, validators=[url_validator])
    secret = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class WebhookDelivery(models.Model):
    """One attempt to deliver one event to one endpoint (all attempts of an event share `event_id`)."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        RETRYING = "retrying", "Failed, will retry"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    batch = models.ForeignKey(
        BatchReport, null=True, on_delete=models.SET_NULL, related_name="webhook_deliveries"
    )
    event = models.CharField(max_length=50)
    event_id = models.CharField(max_length=64, db_index=True)
    attempt = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "endpoint", "attempt"], name="webhook_attempt_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.attempt} to {self.endpoint_id}: {self.status}"
