import re
from pathlib import PurePath

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from batches.admin_actions import generate_reports, has_run_batch_permission
from batches.exports import streaming_response
from leadgen.errors import ServiceError
from leads import import_files, selectors, services
from leads.admin_filters import HasEmailFilter, HasWebsiteFilter, ReportAgeFilter, ScoreTierFilter
from leads.filters import search_q
from leads.models import Lead, LeadImport
from leads.resources import SAMPLE_ROWS


class LeadImportForm(forms.Form):
    file = forms.FileField(
        label="File",
        help_text=(
            "A .csv or .xlsx file whose first row names the columns, up to "
            f"{import_files.MAX_FILE_BYTES // (1024 * 1024)} MB."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.xlsx"}),
    )


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = [
        "company_name",
        "domain",
        "email",
        "industry",
        "city",
        "state",
        "score",
        "status",
        "source",
        "last_reported_at",
        "created_at",
    ]
    list_display_links = ["company_name"]
    # state and source have no choices: their options come from one indexed DISTINCT query each.
    list_filter = [
        "industry",
        "state",
        "status",
        "source",
        ScoreTierFilter,
        HasWebsiteFilter,
        HasEmailFilter,
        ReportAgeFilter,
    ]
    search_fields = ["company_name", "domain", "email"]
    actions = [generate_reports]
    has_run_batch_permission = has_run_batch_permission
    search_help_text = "Company name, domain or email; every word must match."
    date_hierarchy = "created_at"
    list_per_page = 100
    # Counting all 100,000 rows on every page load buys nothing: the filtered count is shown anyway.
    show_full_result_count = False
    readonly_fields = ["domain", "created_at", "updated_at"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["company_name", "website", "domain", "email", "phone", "contact_name"]}),
        ("Business", {"fields": ["industry", "city", "state", "country", "employee_count"]}),
        ("Pipeline", {"fields": ["score", "status", "source", "last_reported_at"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    change_list_template = "admin/leads/lead/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="leads_lead_import"),
            path("import/<int:import_id>/", view(self.import_status_view), name="leads_lead_import_status"),
            path(
                "import/<int:import_id>/errors.csv",
                view(self.import_errors_view),
                name="leads_lead_import_errors",
            ),
            *super().get_urls(),
        ]

    def has_import_permission(self, request) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "has_import_permission": self.has_import_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def _import_context(self, request, title: str, **context) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "has_view_permission": True,
            **context,
        }

    def import_view(self, request):
        """Upload a file: it is stored and its dry run queued; the status page follows it."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = LeadImportForm(request.POST or None, request.FILES or None)
        status = 200
        if request.method == "POST":
            if form.is_valid():
                try:
                    lead_import = services.lead_import_create(
                        upload=form.cleaned_data["file"], user=request.user
                    )
                except ServiceError as error:
                    form.add_error("file", str(error))
                else:
                    return redirect("admin:leads_lead_import_status", lead_import.pk)
            status = 400
        context = self._import_context(
            request,
            "Import leads",
            form=form,
            aliases=_column_aliases(),
            recent=LeadImport.objects.select_related("created_by")[:10],
        )
        return TemplateResponse(request, "admin/leads/lead/import.html", context, status=status)

    def import_status_view(self, request, import_id: int):
        """The dry run's counts and the confirmation, then the import's progress and result."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        lead_import = get_object_or_404(LeadImport, pk=import_id)
        if request.method == "POST":
            try:
                if "_confirm" in request.POST:
                    services.lead_import_confirm(lead_import=lead_import, user=request.user)
                    messages.success(request, f"Importing {lead_import.file_name}.")
                elif "_resume" in request.POST:
                    services.lead_import_resume(lead_import=lead_import, user=request.user)
                    messages.success(request, f"Resuming {lead_import.file_name}.")
            except ServiceError as error:
                messages.error(request, str(error))
            return redirect("admin:leads_lead_import_status", lead_import.pk)
        mapped = set(lead_import.columns.values())
        context = self._import_context(
            request,
            f"Import {lead_import.file_name}",
            lead_import=lead_import,
            running=lead_import.status == LeadImport.Status.RUNNING,
            resumable=services.lead_import_resumable(lead_import),
            columns=[(header, _field_label(lead_import.columns, header)) for header in lead_import.headers],
            ignored=[header for header in lead_import.headers if header not in mapped],
            progress=_progress(lead_import),
            errors_url=reverse("admin:leads_lead_import_errors", args=[lead_import.pk]),
            invalid_rows=lead_import.row_errors.filter(phase=lead_import.phase)[:SAMPLE_ROWS],
            invalid_count=(
                lead_import.imported_invalid
                if lead_import.phase == LeadImport.Phase.IMPORT
                else lead_import.checked_invalid
            ),
        )
        return TemplateResponse(request, "admin/leads/lead/import_status.html", context)

    def import_errors_view(self, request, import_id: int):
        """The invalid rows of a phase (`?phase=dry_run|import`, the current one by default) as CSV."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        lead_import = get_object_or_404(LeadImport, pk=import_id)
        phase = request.GET.get("phase", lead_import.phase)
        if phase not in LeadImport.Phase.values:
            raise Http404("Unknown phase.")
        # The uploader's file name, reduced to characters that are safe in a header.
        stem = (
            re.sub(r"[^A-Za-z0-9._-]+", "-", PurePath(lead_import.file_name).stem).strip("-.")[:80] or "leads"
        )
        return streaming_response(
            request,
            selectors.lead_import_error_file_chunks(lead_import=lead_import, phase=phase),
            content_type="text/csv; charset=utf-8",
            filename=f"{stem}-{phase.replace('_', '-')}-errors.csv",
        )

    def get_search_results(self, request, queryset, search_term):
        """The same search as `GET /api/leads/?search=` (leads.filters.search_q)."""
        if not search_term.strip():
            return queryset, False
        return queryset.filter(search_q(search_term)), False


def _column_aliases() -> list[tuple[str, list[str]]]:
    fields: dict[str, list[str]] = {}
    for alias, field in import_files.COLUMN_ALIASES.items():
        fields.setdefault(field, []).append(alias)
    return [(Lead._meta.get_field(field).verbose_name, aliases) for field, aliases in fields.items()]


def _field_label(columns: dict[str, str], header: str) -> str:
    for field, column in columns.items():
        if column == header:
            return Lead._meta.get_field(field).verbose_name
    return ""


def _progress(lead_import: LeadImport) -> dict:
    done = (
        lead_import.rows_imported
        if lead_import.phase == LeadImport.Phase.IMPORT
        else lead_import.rows_checked
    )
    total = lead_import.rows_total
    percent = round(100 * done / total) if total else (100 if total == 0 else 0)
    return {"done": done, "total": total, "percent": percent}
