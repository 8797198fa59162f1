"""The staff pages: the dashboard, the analytics page, and the live progress page with its small
companions (cancel, retry-failed, the per-lead rows).

Each page is rendered complete on the server, so it reads without JavaScript; charts are drawn
in the browser from the same numbers, each with a table beside it. `static/batches/live.js` keeps the
live page current over the socket (or by polling the status API).
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import get_conditional_response
from django.views.decorators.http import require_GET, require_POST

from batches import selectors, services
from batches.analytics import batch_analytics
from batches.models import BatchReport, BatchReportLead
from batches.snapshots import snapshot_etag, snapshots
from leadgen.display import error_line
from leadgen.errors import ServiceError

ROWS_PER_PAGE = 100
FAILURE_GROUPS_SHOWN = 20

view_permission = permission_required("batches.view_batchreport", raise_exception=True)
run_permission = permission_required("batches.run_batch", raise_exception=True)


DASHBOARD_LATEST = 10
DASHBOARD_ACTIVE = 20
DASHBOARD_SPEND_DAYS = 14
ANALYTICS_RANGES = [7, 30, 90, 365]


def _chart(rows: list[dict], label_key: str, series_label: str, value_key: str) -> dict:
    """One series of `rows` as charts.js reads it: {"labels": [...], "series": [{"label", "values"}]}."""
    return {
        "labels": [row[label_key] for row in rows],
        "series": [{"label": series_label, "values": [row[value_key] for row in rows]}],
    }


def _page_context(request, title: str) -> dict:
    return {
        **admin.site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": BatchReport._meta,
    }


@staff_member_required
@view_permission
@require_GET
def dashboard(request):
    """What runs, what today cost against the daily budget, the latest batches and the providers."""
    launched = BatchReport.objects.exclude(status=BatchReport.Status.DRAFT).select_related("created_by")
    spend_days = batch_analytics(days=DASHBOARD_SPEND_DAYS)["by_day"]
    context = {
        **_page_context(request, "Dashboard"),
        "spend": selectors.daily_spend_overview(),
        "active": selectors.batch_rows_overview(
            batches=launched.filter(status__in=selectors.ACTIVE_STATUSES).order_by("-created_at")[
                :DASHBOARD_ACTIVE
            ]
        ),
        "latest": selectors.batch_rows_overview(batches=launched.order_by("-created_at")[:DASHBOARD_LATEST]),
        "providers": selectors.provider_overview(),
        "spend_days": spend_days,
        "spend_chart": _chart(spend_days, "date", "Spend (USD)", "spend_usd"),
    }
    return render(request, "batches/dashboard.html", context)


class AnalyticsRangeForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=365, required=False, label="Days, up to today")


@staff_member_required
@view_permission
@require_GET
def analytics(request):
    """The analytics API's numbers as a page: the same `batch_analytics` result, with charts."""
    form = AnalyticsRangeForm(request.GET)
    if not form.is_valid():
        context = {
            **_page_context(request, "Analytics"),
            "form": form,
            "ranges": ANALYTICS_RANGES,
            "days_value": request.GET.get("days", ""),
        }
        return render(request, "batches/analytics.html", context, status=400)
    days = form.cleaned_data["days"] or 30
    result = batch_analytics(days=days)
    by_day = result["by_day"]
    context = {
        **_page_context(request, "Analytics"),
        "form": form,
        "days": days,
        "days_value": days,
        "ranges": ANALYTICS_RANGES,
        "result": result,
        "api_url": f"/api/batches/analytics/?days={days}",
        "charts": {
            "spend_by_day": _chart(by_day, "date", "Spend (USD)", "spend_usd"),
            "success_by_day": _chart(by_day, "date", "Success rate (%)", "success_rate_percent"),
            "spend_by_provider": _chart(result["by_provider"], "provider", "Spend (USD)", "spend_usd"),
            "estimate_error": _chart(
                result["estimate_by_batch"], "name", "Estimate error (%)", "error_percent"
            ),
        },
    }
    return render(request, "batches/analytics.html", context)


def _memo_snapshot(pk: int) -> dict:
    """The batch's snapshot from the process's memo (the sockets and the status API share it)."""
    try:
        return snapshots.get_sync(pk)
    except BatchReport.DoesNotExist:
        raise Http404("No such batch.") from None


def _rows_page(request, batch: BatchReport):
    paginator = Paginator(selectors.batch_lead_rows(batch=batch), ROWS_PER_PAGE)
    return paginator.get_page(request.GET.get("page"))


def _failure_groups(batch: BatchReport) -> list[dict]:
    """Failed leads grouped by error code and message, largest group first."""
    groups = (
        BatchReportLead.objects.filter(batch=batch, status=BatchReportLead.Status.FAILED)
        .values("error_code", "last_error")
        .annotate(count=Count("id"))
        .order_by("-count", "error_code", "last_error")
    )
    return [
        {"error_code": g["error_code"], "error": error_line(g["last_error"]), "count": g["count"]}
        for g in groups[:FAILURE_GROUPS_SHOWN]
    ]


def _links(batch_id: int) -> dict:
    return {
        "ws": f"/ws/batches/{batch_id}/",
        "status": f"/api/batches/{batch_id}/",
        "rows": reverse("batches:rows", args=[batch_id]),
        "csv": f"/api/batches/{batch_id}/export.csv",
        "zip": f"/api/batches/{batch_id}/reports.zip",
    }


@staff_member_required
@view_permission
@require_GET
def batch_detail(request, pk: int):
    batch = get_object_or_404(BatchReport, pk=pk)
    # Read fresh, not from the memo: the page is opened once (and right after its buttons act), then
    # kept current by the socket or by polling the status API, which read the memo.
    snapshot = selectors.batch_snapshot(batch_id=batch.pk)
    page = _rows_page(request, batch)
    context = {
        **_page_context(request, f"Batch: {batch.name}"),
        "batch": batch,
        "snapshot": snapshot,
        "history": selectors.batch_progress_history(batch=batch),
        "done": snapshot["total"] - snapshot["pending"] - snapshot["processing"],
        "page": page,
        "rows": [selectors.batch_lead_row_dict(row) for row in page.object_list],
        "failures": _failure_groups(batch),
        "links": _links(batch.pk),
        "can_run": request.user.has_perm("batches.run_batch"),
        "can_cancel": snapshot["status"] in (*BatchReport.CLAIMABLE, BatchReport.Status.PAUSED),
        "can_pause": snapshot["status"] in BatchReport.CLAIMABLE,
        "can_resume": snapshot["status"] == BatchReport.Status.PAUSED,
        "can_retry": snapshot["status"] in BatchReport.FINISHED and snapshot["failed"] > 0,
        "is_sandbox": snapshot["provider_mode"] == "sandbox",
    }
    return render(request, "batches/detail.html", context)


@staff_member_required
@view_permission
@require_GET
def batch_rows(request, pk: int):
    """The per-lead rows of one table page and the failure groups, for the page to refresh in place.

    304 for a client's `If-None-Match` while the batch's snapshot ETag is the same (no row read at all):
    rows and failures change only with the snapshot's counts and recent changes.
    """
    etag = snapshot_etag(_memo_snapshot(pk))
    response = get_conditional_response(request, etag=etag)
    if response is None:
        batch = get_object_or_404(BatchReport, pk=pk)
        page = _rows_page(request, batch)
        response = JsonResponse(
            {
                "page": page.number,
                "rows": [selectors.batch_lead_row_dict(row) for row in page.object_list],
                "failures": _failure_groups(batch),
            }
        )
    response["ETag"] = etag
    response["Cache-Control"] = "private, no-cache"
    return response


def _act(request, pk: int, action, done_message: str):
    batch = get_object_or_404(BatchReport, pk=pk)
    try:
        action(batch=batch, user=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message or str(exc))
    else:
        messages.success(request, done_message)
    return redirect("batches:detail", pk=batch.pk)


@staff_member_required
@run_permission
@require_POST
def batch_cancel(request, pk: int):
    return _act(request, pk, services.batch_cancel, "Cancelling: no new leads start; leads in flight finish.")


@staff_member_required
@run_permission
@require_POST
def batch_pause(request, pk: int):
    return _act(request, pk, services.batch_pause, "Paused: no new leads start; leads in flight finish.")


@staff_member_required
@run_permission
@require_POST
def batch_resume(request, pk: int):
    return _act(request, pk, services.batch_resume, "Resumed: the remaining leads go on.")


@staff_member_required
@run_permission
@require_POST
def batch_retry_failed(request, pk: int):
    return _act(request, pk, services.batch_retry_failed, "Retrying the failed leads.")
