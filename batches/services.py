"""Every write on batches. Admin, API, commands and tasks translate their input and call these."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from batches import events
from batches.costs import SKIP_RECENT_REPORT, CostPreview
from batches.engine import batch_finish_if_done, runner_count, runners_enqueue
from batches.models import BatchReport, BatchReportLead
from batches.selectors import batch_leads_queryset, cost_preview_for_leads
from leadgen.display import usd
from leadgen.errors import ConflictError, IdempotencyConflict, ServiceError
from leads.models import Lead

STALE_DRAFT_AGE = timedelta(hours=24)

__all__ = [
    "IdempotencyConflict",
    "batch_cancel",
    "batch_create_and_launch",
    "batch_create_draft",
    "batch_discard_draft",
    "batch_launch",
    "batch_pause",
    "batch_preview",
    "batch_preview_selection",
    "batch_purge_stale_drafts",
    "batch_resume",
    "batch_retry_failed",
    "batch_share_links_create",
    "batch_update_draft",
]

Batch = BatchReport.Status
LeadStatus = BatchReportLead.Status
MAX_CONCURRENCY = 50
MAX_RETRIES = 10
UNSET = object()
PAUSED_BY_USER = "paused_by_user"
CANCELLED_BY_USER = "cancelled_by_user"


def _clean_budget(value) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ServiceError(fields={"budget_usd": ["Enter a finite number."]})
    if isinstance(value, bool):
        raise ServiceError(fields={"budget_usd": ["Enter a number."]})
    try:
        budget = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ServiceError(fields={"budget_usd": ["Enter a number."]}) from None
    if not budget.is_finite():
        raise ServiceError(fields={"budget_usd": ["Enter a finite number."]})
    if budget <= 0:
        raise ServiceError(fields={"budget_usd": ["The budget must be greater than zero."]})
    if budget >= Decimal("100000000"):
        raise ServiceError(fields={"budget_usd": ["The budget is too large."]})
    return budget.quantize(Decimal("0.0001"))


def _clean_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ServiceError(fields={name: [f"Enter a whole number from {low} to {high}."]})
    try:
        number = int(value)
    except ValueError:
        raise ServiceError(fields={name: [f"Enter a whole number from {low} to {high}."]}) from None
    if not low <= number <= high:
        raise ServiceError(fields={name: [f"Must be from {low} to {high}."]})
    return number


def _clean_options(*, concurrency, max_retries, budget_usd, skip_recent_days) -> dict:
    return {
        "concurrency": _clean_int("concurrency", concurrency, 1, MAX_CONCURRENCY),
        "max_retries": _clean_int("max_retries", max_retries, 0, MAX_RETRIES),
        "budget_usd": _clean_budget(budget_usd),
        "skip_recent_days": _clean_int("skip_recent_days", skip_recent_days, 0, 3650),
    }


def _clean_brand(value):
    """The brand profile a batch is rendered with: UNSET is the default profile (if any), None none."""
    from reports.models import BrandProfile
    from reports.selectors import brand_default

    if value is UNSET:
        return brand_default()
    if value is None:
        return None
    if isinstance(value, BrandProfile):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ServiceError(fields={"brand": ["Give a brand profile id (an integer)."]})
    brand = BrandProfile.objects.filter(pk=value).first()
    if brand is None:
        raise ServiceError(fields={"brand": [f"Unknown brand profile: {value}."]})
    return brand


def _selection_ids(*, lead_ids, filters, queryset) -> list[int]:
    """The selected lead ids in order, validated (exactly one way of selecting, not empty, not too many)."""
    given = [
        name
        for name, value in (("lead_ids", lead_ids), ("filters", filters), ("queryset", queryset))
        if value is not None
    ]
    if len(given) != 1:
        raise ServiceError(fields={"lead_ids": ["Give exactly one of lead_ids or filters."]})
    limit = settings.BATCH_MAX_LEADS
    if lead_ids is not None:
        if not isinstance(lead_ids, list | tuple) or any(
            isinstance(i, bool) or not isinstance(i, int) for i in lead_ids
        ):
            raise ServiceError(fields={"lead_ids": ["Give a list of lead ids (integers)."]})
        if not lead_ids:
            raise ServiceError(fields={"lead_ids": ["Select at least one lead."]})
        counts = Counter(lead_ids)
        duplicates = sorted(i for i, n in counts.items() if n > 1)
        if duplicates:
            raise ServiceError(fields={"lead_ids": [f"Duplicate lead ids: {duplicates[:20]}."]})
        if len(lead_ids) > limit:
            raise ServiceError(
                fields={"lead_ids": [f"At most {limit} leads per batch ({len(lead_ids)} given)."]}
            )
        found = set(Lead.objects.filter(pk__in=lead_ids).values_list("pk", flat=True))
        unknown = [i for i in lead_ids if i not in found]
        if unknown:
            raise ServiceError(fields={"lead_ids": [f"Unknown lead ids: {unknown[:20]}."]})
        return list(lead_ids)
    if filters is not None:
        from leads.selectors import lead_list

        if not isinstance(filters, dict):
            raise ServiceError(fields={"filters": ["Give the filters as an object."]})
        queryset = lead_list(filters=filters)
        field = "filters"
    else:
        field = "lead_ids"
    if not queryset.query.order_by and not queryset.query.is_sliced:
        queryset = queryset.order_by("pk")
    ids = list(
        queryset.values_list("pk", flat=True)[: limit + 1]
        if not queryset.query.is_sliced
        else queryset.values_list("pk", flat=True)
    )
    if not ids:
        raise ServiceError(fields={field: ["The selection is empty."]})
    if len(ids) > limit:
        raise ServiceError(fields={field: [f"At most {limit} leads per batch; narrow the selection."]})
    return ids


@transaction.atomic
def batch_create_draft(
    *,
    user,
    lead_ids: list[int] | None = None,
    filters: dict | None = None,
    queryset: QuerySet[Lead] | None = None,
    name: str = "",
    concurrency: int = 10,
    max_retries: int = 3,
    budget_usd: Decimal | None = None,
    skip_recent_days: int = 30,
    include_recent: bool = False,
    brand=UNSET,
) -> BatchReport:
    """A draft batch whose selection is frozen as pending BatchReportLead rows.

    `brand`: a brand profile id for its reports; left out, the default profile; None, no branding.
    """
    options = _clean_options(
        concurrency=concurrency,
        max_retries=max_retries,
        budget_usd=budget_usd,
        skip_recent_days=skip_recent_days,
    )
    options["brand"] = _clean_brand(brand)
    ids = _selection_ids(lead_ids=lead_ids, filters=filters, queryset=queryset)
    name = (name or "").strip()[:200] or f"Batch of {len(ids)} leads, {timezone.now():%Y-%m-%d %H:%M}"
    batch = BatchReport.objects.create(
        name=name,
        created_by=user if user is not None and user.is_authenticated else None,
        provider_mode=settings.PROVIDER_MODE,
        include_recent=bool(include_recent),
        **options,
    )
    BatchReportLead.objects.bulk_create(
        [BatchReportLead(batch=batch, lead_id=lead_id, position=i) for i, lead_id in enumerate(ids, start=1)],
        batch_size=2000,
    )
    return batch


def _require_draft(batch: BatchReport) -> None:
    if batch.status != Batch.DRAFT:
        raise ConflictError(f"Batch {batch.pk} is {batch.get_status_display().lower()}, not a draft.")


@transaction.atomic
def batch_update_draft(
    *,
    batch: BatchReport,
    user,
    name=UNSET,
    concurrency=UNSET,
    max_retries=UNSET,
    budget_usd=UNSET,
    include_recent=UNSET,
    brand=UNSET,
) -> BatchReport:
    """Change a draft's options; only those given change (`brand`: a profile id, or None for none)."""
    batch = BatchReport.objects.select_for_update().get(pk=batch.pk)
    _require_draft(batch)
    if name is not UNSET:
        batch.name = (name or "").strip()[:200] or batch.name
    if concurrency is not UNSET:
        batch.concurrency = _clean_int("concurrency", concurrency, 1, MAX_CONCURRENCY)
    if max_retries is not UNSET:
        batch.max_retries = _clean_int("max_retries", max_retries, 0, MAX_RETRIES)
    if budget_usd is not UNSET:
        batch.budget_usd = _clean_budget(budget_usd)
    if include_recent is not UNSET:
        batch.include_recent = bool(include_recent)
    if brand is not UNSET:
        batch.brand = _clean_brand(brand)
    batch.save()
    return batch


def batch_preview(*, batch: BatchReport) -> CostPreview:
    """The cost preview of a batch's frozen selection, with its options. No side effects."""
    return cost_preview_for_leads(
        leads=batch_leads_queryset(batch=batch),
        budget_usd=batch.budget_usd,
        skip_recent_days=batch.skip_recent_days,
        include_recent=batch.include_recent,
        concurrency=batch.concurrency,
        max_retries=batch.max_retries,
    )


def batch_preview_selection(
    *,
    user,
    lead_ids: list[int] | None = None,
    filters: dict | None = None,
    budget_usd=None,
    skip_recent_days: int = 30,
    include_recent: bool = False,
    concurrency: int = 10,
    max_retries: int = 3,
) -> CostPreview:
    """The preview of a selection that is not saved (the API's preview): same validation, creates nothing."""
    options = _clean_options(
        concurrency=concurrency,
        max_retries=max_retries,
        budget_usd=budget_usd,
        skip_recent_days=skip_recent_days,
    )
    ids = _selection_ids(lead_ids=lead_ids, filters=filters, queryset=None)
    return cost_preview_for_leads(
        leads=Lead.objects.filter(pk__in=ids), include_recent=bool(include_recent), **options
    )


@transaction.atomic
def batch_launch(*, batch: BatchReport, user, enqueue: bool = True) -> BatchReport:
    """draft -> queued: price it, skip recently reported leads, then start runners after commit.

    Raises ServiceError when the estimate is above the batch budget, or in live mode when a provider
    the leads need has no API key. `enqueue=False` is for callers that run the batch in-process (the
    run_batch command); recovery still covers it if that process dies.
    """
    batch = BatchReport.objects.select_for_update().get(pk=batch.pk)
    _require_draft(batch)
    preview = batch_preview(batch=batch)
    if preview.missing_keys:
        # Every lead needing the provider would pause the batch at once: refuse before anything runs.
        raise ServiceError(
            f"Live mode without {', '.join(preview.missing_keys)}: set the key"
            f"{'' if len(preview.missing_keys) == 1 else 's'} or run the batch in the sandbox."
        )
    if not preview.within_budget:
        raise ServiceError(
            fields={
                "budget_usd": [
                    f"The estimate ({usd(preview.total_usd)}) is above the budget "
                    f"({usd(preview.budget_usd)})."
                ]
            }
        )
    now = timezone.now()
    if preview.skipped_lead_ids:
        BatchReportLead.objects.filter(batch=batch, lead_id__in=preview.skipped_lead_ids).update(
            status=LeadStatus.SKIPPED,
            error_code=SKIP_RECENT_REPORT,
            last_error=f"Reported within the last {batch.skip_recent_days} days.",
            finished_at=now,
            updated_at=now,
        )
    batch.status = Batch.QUEUED
    batch.queued_at = now
    batch.estimated_cost_usd = preview.total_usd.quantize(Decimal("0.0001"))
    batch.estimate = preview.as_dict()
    batch.save(update_fields=["status", "queued_at", "estimated_cost_usd", "estimate", "updated_at"])
    if not preview.billable_leads:
        batch_finish_if_done(batch_id=batch.pk)
    elif enqueue:
        runners_enqueue(batch_id=batch.pk, count=runner_count(batch.concurrency))
    events.batch_event_emit(batch_id=batch.pk)
    batch.refresh_from_db()
    return batch


def _fingerprint(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def batch_create_and_launch(
    *, user, idempotency_key: str = "", enqueue: bool = True, **options
) -> tuple[BatchReport, bool]:
    """Create and launch in one step (the API's POST). Returns (batch, created).

    With an idempotency key (per user): the same key and the same options return the first batch with
    created=False; the same key with other options raises IdempotencyConflict.
    """
    idempotency_key = (idempotency_key or "").strip()
    if len(idempotency_key) > 255:
        raise ServiceError(fields={"idempotency_key": ["At most 255 characters."]})
    if not idempotency_key:
        with transaction.atomic():
            batch = batch_create_draft(user=user, **options)
            return batch_launch(batch=batch, user=user, enqueue=enqueue), True
    if options.get("queryset") is not None:
        raise ServiceError("An idempotent launch needs lead_ids or filters, not a queryset.")
    fingerprint = _fingerprint({k: v for k, v in options.items() if v is not None})
    existing = _existing_for_key(user, idempotency_key, fingerprint)
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            batch = batch_create_draft(user=user, **options)
            BatchReport.objects.filter(pk=batch.pk).update(
                idempotency_key=idempotency_key, idempotency_fingerprint=fingerprint
            )
            return batch_launch(batch=batch, user=user, enqueue=enqueue), True
    except IntegrityError:
        existing = _existing_for_key(user, idempotency_key, fingerprint)
        if existing:
            return existing, False
        raise


def _existing_for_key(user, key: str, fingerprint: str) -> BatchReport | None:
    batch = BatchReport.objects.filter(created_by=user, idempotency_key=key).first()
    if batch is not None and batch.idempotency_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request body.",
            fields={"idempotency_key": ["Already used with a different request body."]},
        )
    return batch


@transaction.atomic
def batch_cancel(*, batch: BatchReport, user) -> BatchReport:
    """No lead starts after this commits; in-flight leads finish; the rest become cancelled."""
    batch = BatchReport.objects.select_for_update().get(pk=batch.pk)
    if batch.is_finished:
        raise ConflictError(f"Batch {batch.pk} is already {batch.get_status_display().lower()}.")
    if batch.status == Batch.DRAFT:
        raise ConflictError("A draft is not running; discard it instead.")
    now = timezone.now()
    if batch.status != Batch.CANCELLING:
        BatchReportLead.objects.filter(batch=batch, status=LeadStatus.PENDING).update(
            status=LeadStatus.CANCELLED, next_attempt_at=None, finished_at=now, updated_at=now
        )
        # A batch that stopped for a reason of its own (a budget, a provider) keeps it.
        reason = batch.stop_reason if batch.stop_reason not in ("", PAUSED_BY_USER) else CANCELLED_BY_USER
        BatchReport.objects.filter(pk=batch.pk).update(
            status=Batch.CANCELLING, stop_reason=reason, updated_at=now
        )
        events.batch_event_emit(batch_id=batch.pk)
    batch_finish_if_done(batch_id=batch.pk)
    batch.refresh_from_db()
    return batch


@transaction.atomic
def batch_pause(*, batch: BatchReport, user, reason: str = PAUSED_BY_USER) -> BatchReport:
    """queued or running -> paused: no lead starts after this commits; leads in flight finish.

    Nothing is held for the leads not started (a lead's reservation is made when it is claimed), and
    recovery leaves a paused batch alone until `batch_resume`.
    """
    batch = BatchReport.objects.select_for_update().get(pk=batch.pk)
    if batch.status not in BatchReport.CLAIMABLE:
        raise ConflictError(
            f"Batch {batch.pk} is {batch.get_status_display().lower()}; only a running batch pauses."
        )
    who = getattr(user, "get_username", lambda: "")() if user is not None else ""
    BatchReport.objects.filter(pk=batch.pk).update(
        status=Batch.PAUSED,
        stop_reason=reason,
        stop_detail=f"Paused by {who}." if who else "Paused.",
        updated_at=timezone.now(),
    )
    events.batch_event_emit(batch_id=batch.pk)
    batch.refresh_from_db()
    return batch


@transaction.atomic
def batch_resume(*, batch: BatchReport, user) -> BatchReport:
    """paused -> running (queued if it never started): the same leads go on, within the same budget."""
    batch = BatchReport.objects.select_for_update().get(pk=batch.pk)
    if batch.status != Batch.PAUSED:
        raise ConflictError(f"Batch {batch.pk} is {batch.get_status_display().lower()}, not paused.")
    BatchReport.objects.filter(pk=batch.pk).update(
        status=Batch.RUNNING if batch.started_at else Batch.QUEUED,
        stop_reason="",
        stop_detail="",
        updated_at=timezone.now(),
    )
    if BatchReportLead.objects.filter(batch=batch, status=LeadStatus.PENDING).exists():
        runners_enqueue(batch_id=batch.pk, count=runner_count(batch.concurrency))
    else:
        batch_finish_if_done(batch_id=batch.pk)
    events.batch_event_emit(batch_id=batch.pk)
    batch.refresh_from_db()
    return batch


@transaction.atomic
def batch_retry_failed(*, batch: BatchReport, user) -> BatchReport:
    """A new run over the failed leads of a finished batch (same batch, new attempts)."""
    batch = BatchReport.objects.select_for_update().get(pk=batch.pk)
    if not batch.is_finished:
        raise ConflictError(
            f"Batch {batch.pk} is {batch.get_status_display().lower()}; wait until it finishes."
        )
    failed = BatchReportLead.objects.filter(batch=batch, status=LeadStatus.FAILED)
    now = timezone.now()
    count = failed.update(
        status=LeadStatus.PENDING,
        run_attempts=0,
        next_attempt_at=None,
        finished_at=None,
        updated_at=now,
    )
    if not count:
        raise ConflictError(f"Batch {batch.pk} has no failed leads to retry.")
    BatchReport.objects.filter(pk=batch.pk).update(
        status=Batch.QUEUED,
        run=F("run") + 1,
        queued_at=now,
        started_at=None,
        finished_at=None,
        notified_at=None,
        stop_reason="",
        stop_detail="",
        updated_at=now,
    )
    runners_enqueue(batch_id=batch.pk, count=runner_count(batch.concurrency))
    events.batch_event_emit(batch_id=batch.pk)
    batch.refresh_from_db()
    return batch


def batch_share_links_create(*, batch: BatchReport, user, expires_in_days: int | None = None) -> int:
    """A share link for every report of the batch that has no active one; returns how many were made.

    Repeating it creates nothing new, so the batch CSV's share links stay the ones already sent.
    """
    from reports.services import share_links_ensure

    report_ids = list(
        BatchReportLead.objects.filter(batch=batch, report__isnull=False)
        .order_by("position")
        .values_list("report_id", flat=True)
    )
    return share_links_ensure(report_ids=report_ids, user=user, expires_in_days=expires_in_days)


@transaction.atomic
def batch_discard_draft(*, batch: BatchReport, user) -> None:
    batch = BatchReport.objects.select_for_update().get(pk=batch.pk)
    _require_draft(batch)
    batch.delete()


@transaction.atomic
def batch_purge_stale_drafts(*, older_than: timedelta = STALE_DRAFT_AGE) -> int:
    """Delete draft batches (and their frozen lead rows) created before `older_than` ago; returns how many."""
    stale = BatchReport.objects.filter(
        status=BatchReport.Status.DRAFT, created_at__lt=timezone.now() - older_than
    )
    return stale.delete()[1].get(BatchReport._meta.label, 0)
