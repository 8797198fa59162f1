"""The leads changelist action "Generate reports…" and its confirmation page with the cost preview.

Shaped like Django's `delete_selected`: the action renders a confirmation page that posts back to the
changelist. The selection is frozen server-side as a draft batch on the first post, so the
confirmation re-posts only the draft id, never one field per lead, whatever "select all N" covered.
Drafts nobody launched or discarded are removed hourly (`batches.services.batch_purge_stale_drafts`).
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from batches import services
from batches.models import BatchReport
from leadgen.display import duration_text
from leadgen.errors import ServiceError
from reports.models import BrandProfile

DRAFT_FIELD = "batch_draft"


def has_run_batch_permission(modeladmin, request) -> bool:
    """The `run_batch` action permission; set as `LeadAdmin.has_run_batch_permission`."""
    return request.user.has_perm("batches.run_batch")


class BatchOptionsForm(forms.Form):
    """What the confirmation page lets the user change before launching."""

    name = forms.CharField(max_length=200, required=False, label="Batch name")
    concurrency = forms.IntegerField(min_value=1, max_value=50, help_text="Leads in flight at once (1-50).")
    max_retries = forms.IntegerField(
        min_value=0,
        max_value=10,
        help_text="Retries of a transiently failed lead (3 means up to 4 attempts).",
    )
    budget_usd = forms.DecimalField(
        max_digits=12,
        decimal_places=4,
        min_value=0,
        required=False,
        label="Budget (USD)",
        help_text="Optional spend cap; leave empty for no batch cap (the daily budget still applies).",
    )
    include_recent = forms.BooleanField(
        required=False,
        label="Include recently reported leads",
        help_text="Leads reported within the last days are skipped unless this is ticked.",
    )
    brand = forms.ModelChoiceField(
        queryset=BrandProfile.objects.all(),
        required=False,
        empty_label="No branding",
        label="Brand profile",
        help_text="The agency look of the reports (Reports > Brand profiles); the default is preselected.",
    )

    @classmethod
    def for_batch(cls, batch: BatchReport) -> "BatchOptionsForm":
        return cls(
            initial={
                "name": batch.name,
                "concurrency": batch.concurrency,
                "max_retries": batch.max_retries,
                "budget_usd": batch.budget_usd,
                "include_recent": batch.include_recent,
                "brand": batch.brand_id,
            }
        )


@admin.action(permissions=["run_batch"], description="Generate reports…")
def generate_reports(modeladmin, request, queryset):
    """First post: freeze the selection as a draft and show the preview. Then: update, launch or discard."""
    draft_id = request.POST.get(DRAFT_FIELD)
    if draft_id is None:
        try:
            batch = services.batch_create_draft(user=request.user, queryset=queryset)
        except ServiceError as exc:
            modeladmin.message_user(request, _error_text(exc), messages.ERROR)
            return None
        return _confirmation(modeladmin, request, batch, BatchOptionsForm.for_batch(batch))

    batch = _own_draft(request, draft_id)
    if batch is None:
        modeladmin.message_user(
            request,
            "That draft batch no longer exists or is not yours; select the leads again.",
            messages.ERROR,
        )
        return None
    if "_discard" in request.POST:
        services.batch_discard_draft(batch=batch, user=request.user)
        modeladmin.message_user(
            request, "The draft batch was discarded; nothing was launched.", messages.INFO
        )
        return None

    form = BatchOptionsForm(request.POST)
    if not form.is_valid():
        return _confirmation(modeladmin, request, batch, form)
    try:
        batch = services.batch_update_draft(batch=batch, user=request.user, **form.cleaned_data)
        if "_launch" in request.POST:
            batch = services.batch_launch(batch=batch, user=request.user)
            modeladmin.message_user(request, f"Batch “{batch.name}” launched.", messages.SUCCESS)
            return redirect(batch.get_absolute_url())
    except ServiceError as exc:
        for field, errors in exc.fields.items():
            form.add_error(field if field in form.fields else None, errors)
        if exc.message or not exc.fields:
            form.add_error(None, exc.message or str(exc))
        batch.refresh_from_db()
    return _confirmation(modeladmin, request, batch, form)


def _own_draft(request, draft_id: str) -> BatchReport | None:
    try:
        pk = int(draft_id)
    except ValueError:
        return None
    return BatchReport.objects.filter(pk=pk, created_by=request.user, status=BatchReport.Status.DRAFT).first()


def _error_text(exc: ServiceError) -> str:
    if exc.fields:
        return " ".join(" ".join(messages_) for messages_ in exc.fields.values())
    return exc.message or str(exc)


def _confirmation(modeladmin, request, batch: BatchReport, form: BatchOptionsForm) -> TemplateResponse:
    opts = modeladmin.model._meta
    preview = services.batch_preview(batch=batch).as_dict()
    for skip in preview["skipped"]:
        skip["label"] = skip_reason_label(skip["reason"], batch=batch)
    first_lead_id = batch.leads.order_by("position").values_list("lead_id", flat=True).first()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Generate reports: cost preview",
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "batch": batch,
        "preview": preview,
        "paid_calls": sum(line["calls"] for line in preview["providers"]),
        "duration": duration_text(preview["estimated_duration_seconds"]),
        "form": form,
        "draft_field": DRAFT_FIELD,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        # The changelist only routes a post to an action when one checkbox value is present;
        # the action itself reads the draft, so any one lead of the selection will do.
        "selected_lead_id": first_lead_id,
        "is_sandbox": batch.provider_mode == "sandbox",
        "media": modeladmin.media,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, "admin/batches/generate_reports_confirmation.html", context)


def skip_reason_label(reason: str, *, batch: BatchReport) -> str:
    if reason == "recent_report":
        return f"reported in the last {batch.skip_recent_days} days (tick “Include recently reported leads”)"
    return reason.replace("_", " ")
