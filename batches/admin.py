from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import models
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django_q.admin import FailAdmin, ScheduleAdmin, TaskAdmin
from django_q.models import Failure, Schedule, Success
from rest_framework.authtoken.admin import TokenAdmin as DrfTokenAdmin
from rest_framework.authtoken.models import TokenProxy

from batches import selectors, services
from batches.models import BatchReport, BatchReportLead, WebhookDelivery, WebhookEndpoint
from leadgen.display import duration_text, money_column, percent_text, usd
from leadgen.errors import ServiceError

LEADS_PER_PAGE = 50
LEADS_PAGE_PARAM = "leads_page"
FINISHED_LEAD_STATUSES = [status.value for status in BatchReportLead.FINISHED]


def _run_service_each(modeladmin, request, queryset, service, verb: str) -> None:
    """Apply a batch service to each selected batch; report what worked and why the rest did not."""
    done, refused = [], []
    for batch in queryset:
        try:
            service(batch=batch, user=request.user)
        except ServiceError as exc:
            refused.append(f"“{batch.name}”: {exc.message or exc}")
        else:
            done.append(batch)
    if done:
        modeladmin.message_user(request, f"{verb} {len(done)} batch(es).", messages.SUCCESS)
    for reason in refused:
        modeladmin.message_user(request, reason, messages.WARNING)


@admin.register(BatchReport)
class BatchReportAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
        "progress",
        "cost",
        "estimate_accuracy",
        "duration",
        "created_by",
        "provider_mode",
        "created_at",
        "live_link",
    ]
    list_filter = ["status", "provider_mode", "created_by", "stop_reason"]
    list_select_related = ["created_by"]
    search_fields = ["name"]
    date_hierarchy = "created_at"
    list_per_page = 50
    actions = [
        "pause_batches",
        "resume_batches",
        "cancel_batches",
        "retry_failed_batches",
        "share_batch_reports",
    ]
    change_form_template = "admin/batches/batchreport/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "status", "stop_reason", "live_link", "provider_mode", "created_by"]}),
        (
            "Settings",
            {"fields": ["concurrency", "max_retries", "skip_recent_days", "include_recent", "brand"]},
        ),
        ("Cost", {"fields": ["estimated_cost", "actual_cost", "reserved", "budget", "estimate"]}),
        ("Dates", {"fields": ["created_at", "queued_at", "started_at", "finished_at", "notified_at"]}),
        ("Internals", {"classes": ["collapse"], "fields": ["run", "seq", "idempotency_key"]}),
    ]

    estimated_cost = staticmethod(money_column("estimated_cost_usd", "estimated cost"))
    actual_cost = staticmethod(money_column("actual_cost_usd", "actual cost"))
    reserved = staticmethod(money_column("reserved_usd", "reserved"))
    budget = staticmethod(money_column("budget_usd", "budget"))

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                lead_total=Count("leads"),
                lead_done=Count("leads", filter=Q(leads__status__in=FINISHED_LEAD_STATUSES)),
            )
        )

    def get_readonly_fields(self, request, obj=None):
        # Batches change only through the services (launch, cancel, retry): the detail is read-only.
        return [name for fieldset in self.fieldsets for name in fieldset[1]["fields"]]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_run_batch_permission(self, request):
        return request.user.has_perm("batches.run_batch")

    def has_share_permission(self, request):
        return request.user.has_perm("reports.add_sharelink")

    @admin.display(description="progress")
    def progress(self, obj):
        total = getattr(obj, "lead_total", None)
        if total is None:
            return "—"
        percent = round(obj.lead_done * 100 / total, 1) if total else 0
        return format_html(
            '<span class="mini-progress"><progress max="100" value="{}" aria-label="{} of {} leads done">'
            "</progress> {}/{}</span>",
            percent,
            obj.lead_done,
            total,
            obj.lead_done,
            total,
        )

    @admin.display(description="cost (estimate)", ordering="actual_cost_usd")
    def cost(self, obj):
        return f"{usd(obj.actual_cost_usd)} ({usd(obj.estimated_cost_usd)})"

    @admin.display(description="actual vs estimate")
    def estimate_accuracy(self, obj):
        return percent_text(selectors.estimate_accuracy_percent(obj))

    @admin.display(description="duration")
    def duration(self, obj):
        if obj.started_at is None:
            return "—"
        return duration_text(((obj.finished_at or timezone.now()) - obj.started_at).total_seconds())

    @admin.display(description="live page")
    def live_link(self, obj):
        if obj.pk is None or obj.status == BatchReport.Status.DRAFT:
            return "—"
        return format_html('<a href="{}">Live progress</a>', reverse("batches:detail", args=[obj.pk]))

    @admin.action(permissions=["run_batch"], description="Pause selected batches")
    def pause_batches(self, request, queryset):
        _run_service_each(self, request, queryset, services.batch_pause, "Paused")

    @admin.action(permissions=["run_batch"], description="Resume selected batches")
    def resume_batches(self, request, queryset):
        _run_service_each(self, request, queryset, services.batch_resume, "Resumed")

    @admin.action(permissions=["run_batch"], description="Cancel selected batches")
    def cancel_batches(self, request, queryset):
        _run_service_each(self, request, queryset, services.batch_cancel, "Cancelling")

    @admin.action(permissions=["run_batch"], description="Retry failed leads of selected batches")
    def retry_failed_batches(self, request, queryset):
        _run_service_each(self, request, queryset, services.batch_retry_failed, "Retrying failed leads of")

    @admin.action(permissions=["share"], description="Create share links for the reports of selected batches")
    def share_batch_reports(self, request, queryset):
        created = sum(services.batch_share_links_create(batch=batch, user=request.user) for batch in queryset)
        self.message_user(
            request,
            f"Created {created} share link(s); reports that had an active link keep it. "
            "The batch CSV's share_url column holds them.",
            messages.SUCCESS,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        batch = self.get_object(request, object_id)
        if batch is not None:
            paginator = Paginator(selectors.batch_lead_rows(batch=batch), LEADS_PER_PAGE)
            page = paginator.get_page(request.GET.get(LEADS_PAGE_PARAM))
            extra_context.update(
                {
                    "leads_page": page,
                    "lead_rows": [selectors.batch_lead_row_dict(row) for row in page.object_list],
                    "leads_page_param": LEADS_PAGE_PARAM,
                    "live_url": reverse("batches:detail", args=[batch.pk]),
                }
            )
        return super().change_view(request, object_id, form_url, extra_context=extra_context)


def last_four(secret: str) -> str:
    """What the admin shows of a secret: its last four characters."""
    return f"…{secret[-4:]}" if secret else "—"


class WebhookEndpointForm(forms.ModelForm):
    """The secret is write-only: never rendered back; left empty on a change, the current one is kept."""

    secret = forms.CharField(
        max_length=200,
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: the current secret is never shown, only its last four characters. "
        "Leave empty to keep it.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "secret", "is_active"]

    def clean_secret(self) -> str:
        secret = self.cleaned_data["secret"]
        if secret:
            return secret
        if self.instance.pk:
            return self.instance.secret
        raise ValidationError("Set a secret: receivers check each delivery's signature with it.")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["name", "url", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "url"]
    readonly_fields = ["secret_ending"]

    @admin.display(description="Current secret")
    def secret_ending(self, obj: WebhookEndpoint) -> str:
        return last_four(obj.secret)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "url", "secret", "is_active"]
        if not self.has_change_permission(request, obj):
            # A read-only page shows every field's value: the secret's field is left out.
            return ["name", "url", "secret_ending", "is_active"]
        return ["name", "url", "secret_ending", "secret", "is_active"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "event",
        "endpoint",
        "batch",
        "attempt",
        "status",
        "status_code",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["status", "event", "endpoint"]
    list_select_related = ["endpoint", "batch"]
    search_fields = ["event_id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# Third-party admins, narrowed (README "Who may see and do what").


class SuperuserScheduleAdmin(ScheduleAdmin):
    """A schedule names any dotted callable for the workers to run: superusers only, whatever
    permissions a user holds on the model."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    has_add_permission = has_change_permission = has_delete_permission = has_view_permission


class SuperuserResubmitMixin:
    """django-q2's "Resubmit selected tasks to queue" runs a stored callable again: superusers only (it
    is offered to anyone who may view the tasks otherwise)."""

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("resubmit_task", None)
        return actions


class SuccessTaskAdmin(SuperuserResubmitMixin, TaskAdmin):
    pass


class FailedTaskAdmin(SuperuserResubmitMixin, FailAdmin):
    pass


class MaskedTokenAdmin(DrfTokenAdmin):
    """API tokens: the list shows the last four characters of each key; the token pages (whose title
    is the key) are for those who may change tokens, not for view-only staff."""

    list_display = ["key_ending", "user", "created"]
    list_display_links = None

    @admin.display(description="Key")
    def key_ending(self, obj: TokenProxy) -> str:
        return last_four(obj.key)

    def has_view_permission(self, request, obj=None):
        if obj is not None:
            return self.has_change_permission(request, obj)
        return super().has_view_permission(request, obj)


admin.site.unregister(Schedule)
admin.site.register(Schedule, SuperuserScheduleAdmin)
admin.site.unregister(Success)
admin.site.register(Success, SuccessTaskAdmin)
admin.site.unregister(Failure)
admin.site.register(Failure, FailedTaskAdmin)
admin.site.unregister(TokenProxy)
admin.site.register(TokenProxy, MaskedTokenAdmin)
