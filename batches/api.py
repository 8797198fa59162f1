"""The batch REST API: translate HTTP to `batches.services` / `batches.selectors` calls and back.

Reads need `batches.view_batchreport` (the reports ZIP also `reports.view_report`); preview, launch,
cancel and retry need `batches.run_batch`.
"""

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.cache import get_conditional_response
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import permissions, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from batches import selectors, services
from batches.analytics import batch_analytics
from batches.exports import batch_csv_chunks, batch_reports_zip_chunks, streaming_response
from batches.filters import BatchFilter, BatchLeadFilter
from batches.models import BatchReport, BatchReportLead
from batches.serializers import (
    AnalyticsQuerySerializer,
    AnalyticsSerializer,
    BatchCreateSerializer,
    BatchLeadSerializer,
    BatchListSerializer,
    BatchSnapshotSerializer,
    CostPreviewSerializer,
    ErrorSerializer,
    SelectionSerializer,
)
from batches.snapshots import encoded, snapshot_etag, snapshots
from leadgen.api import ModelPermissions
from leadgen.errors import IdempotencyConflict

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
MAX_ID = 2**63 - 1


class RunBatchPermission(permissions.BasePermission):
    """Holders of `batches.run_batch` may preview, launch, cancel and retry batches."""

    message = "You do not have permission to run report batches."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("batches.run_batch"))


class ViewReportsPermission(permissions.BasePermission):
    """The reports themselves (the ZIP) need `reports.view_report`, as the report pages and PDFs do."""

    message = "You do not have permission to view reports."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("reports.view_report"))


class DownloadNegotiation(BaseContentNegotiation):
    """Downloads answer with their own content type whatever the Accept header or `?format=` says;
    errors on them still render as JSON (the first renderer)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0]


ERROR_EXAMPLE_FIELDS = OpenApiExample(
    "Field errors",
    value={
        "lead_ids": ["Unknown lead ids: 999999."],
        "concurrency": ["Ensure this value is less than or equal to 50."],
    },
    response_only=True,
    status_codes=["400"],
)
ERROR_EXAMPLE_DETAIL = OpenApiExample(
    "Not found",
    value={"detail": "Not found."},
    response_only=True,
    status_codes=["404"],
)
FIELD_ERRORS = OpenApiResponse(
    response=OpenApiTypes.OBJECT,
    description=(
        'Bad input, nothing created: `{"field": ["message", ...], ...}` (nested for list items and filters), '
        'or `{"detail": "message"}`.'
    ),
    examples=[ERROR_EXAMPLE_FIELDS],
)
UNAUTHENTICATED = OpenApiResponse(
    ErrorSerializer, description="No or invalid credentials (`Authorization: Token <key>` or a session)."
)
FORBIDDEN = OpenApiResponse(
    ErrorSerializer,
    description="Authenticated without the needed permission, or a session write without CSRF.",
)
NOT_FOUND = OpenApiResponse(
    ErrorSerializer,
    description="No such batch (or, for lists, no such page).",
    examples=[ERROR_EXAMPLE_DETAIL],
)
CONFLICT = OpenApiResponse(
    ErrorSerializer,
    description="The batch is in a state that does not allow this.",
    examples=[
        OpenApiExample(
            "Finished",
            value={"detail": "The batch has already finished."},
            response_only=True,
            status_codes=["409"],
        )
    ],
)
READ_ERRORS = {401: UNAUTHENTICATED, 403: FORBIDDEN}
PAGE_NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such page (`page` beyond the last one).")
DETAIL_ERRORS = {**READ_ERRORS, 404: NOT_FOUND}

SELECTION_EXAMPLES = [
    OpenApiExample("By lead ids", value={"lead_ids": [12, 15, 31], "budget_usd": "25.00"}, request_only=True),
    OpenApiExample(
        "By filters",
        value={
            "filters": {"industry": "dentist", "state": "TX", "has_website": True},
            "include_recent": False,
        },
        request_only=True,
    ),
]
CREATE_EXAMPLES = [
    OpenApiExample(
        "Launch by filters",
        value={
            "filters": {"score_tier": "A", "report_age": "never"},
            "name": "Tier A, never reported",
            "concurrency": 10,
            "max_retries": 3,
            "budget_usd": "50.00",
        },
        request_only=True,
    ),
    OpenApiExample(
        "Launch by ids", value={"lead_ids": [12, 15, 31], "name": "Three dentists"}, request_only=True
    ),
]
SNAPSHOT_EXAMPLE = OpenApiExample(
    "Running batch",
    value={
        "id": 7,
        "name": "Tier A, never reported",
        "status": "running",
        "provider_mode": "sandbox",
        "total": 120,
        "pending": 70,
        "processing": 10,
        "succeeded": 38,
        "failed": 2,
        "skipped": 0,
        "cancelled": 0,
        "progress_percent": 33.3,
        "estimated_cost_usd": "24.1200",
        "actual_cost_usd": "7.9810",
        "budget_usd": "50.0000",
        "created_at": "2025-05-01T10:00:00+00:00",
        "started_at": "2025-05-01T10:00:01+00:00",
        "finished_at": None,
        "eta_seconds": 95,
        "eta_low_seconds": 81,
        "eta_high_seconds": 112,
        "eta_state": "estimate",
        "eta_text": "1-2 min",
        "throughput_per_minute": 52.5,
        "stop_reason": "",
        "stop_detail": "",
        "recent": [
            {
                "lead_id": 31,
                "company_name": "Bright Smile Dental",
                "status": "succeeded",
                "attempts": 1,
                "error": "",
                "error_code": "",
                "cost_usd": "0.2031",
                "duration_ms": 1840,
                "report_url": "/reports/411/",
                "warnings": [
                    {
                        "provider": "pagespeed",
                        "code": "failed_document_request",
                        "message": "could not load the site",
                    }
                ],
            }
        ],
        "seq": 41,
        "providers": {
            "website": "ok",
            "pagespeed": "ok",
            "semrush": "ok",
            "screenshot": "ok",
            "hunter": "open",
            "llm": "ok",
        },
    },
    response_only=True,
)


SCHEMAS = {
    "list": extend_schema(
        summary="List batches",
        description=(
            "Newest first, paginated (`page`, `page_size` up to 500). Needs `batches.view_batchreport`."
        ),
        responses={
            200: BatchListSerializer(many=True),
            400: FIELD_ERRORS,
            **READ_ERRORS,
            404: PAGE_NOT_FOUND,
        },
    ),
    "retrieve": extend_schema(
        summary="Batch status (snapshot)",
        description=(
            "The live snapshot: counts by lead status, progress, cost so far against the estimate, ETA, "
            "throughput and the last lead changes. The live page's WebSocket sends the same object."
        ),
        responses={200: BatchSnapshotSerializer, **DETAIL_ERRORS},
        examples=[SNAPSHOT_EXAMPLE],
    ),
    "create": extend_schema(
        summary="Create and launch a batch",
        description=(
            "Freezes the selection, checks the estimate against the budgets and queues the batch.\n\n"
            "**Idempotency**: send an `Idempotency-Key` header (any string up to 255 characters, e.g. "
            "a UUID) to make retries safe. The first request with a key creates the batch (201); a repeat "
            "with the same key and the same body returns that batch again (200) without creating another; "
            "the same key with a different body is refused (422). Keys are kept per user on the batch "
            "itself, so they never expire while the batch exists (at least 24 hours is guaranteed)."
        ),
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Makes a repeated launch return the first batch instead of creating a second.",
            )
        ],
        request=BatchCreateSerializer,
        responses={
            201: OpenApiResponse(BatchSnapshotSerializer, description="Created and queued."),
            200: OpenApiResponse(
                BatchSnapshotSerializer, description="The batch created earlier with this Idempotency-Key."
            ),
            400: FIELD_ERRORS,
            **READ_ERRORS,
            422: OpenApiResponse(
                ErrorSerializer,
                description="The Idempotency-Key was already used with a different body.",
                examples=[
                    OpenApiExample(
                        "Key reused",
                        value={"detail": "This Idempotency-Key was used with a different request body."},
                        response_only=True,
                        status_codes=["422"],
                    )
                ],
            ),
        },
        examples=[*CREATE_EXAMPLES, SNAPSHOT_EXAMPLE],
    ),
    "preview": extend_schema(
        summary="Preview the cost of a selection",
        description=(
            "What running these leads would cost and take: per provider (cached calls at $0), skipped "
            "leads, total, per lead, worst case, expected retries, duration and the budget check. "
            "Creates nothing."
        ),
        request=SelectionSerializer,
        responses={200: CostPreviewSerializer, 400: FIELD_ERRORS, **READ_ERRORS},
        examples=SELECTION_EXAMPLES,
    ),
    "leads": extend_schema(
        summary="Per-lead rows of a batch",
        description="In batch order, paginated; filter by `status`.",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=BatchReportLead.Status.values,
                description="Only rows with this lead status.",
            )
        ],
        responses={200: BatchLeadSerializer(many=True), 400: FIELD_ERRORS, **DETAIL_ERRORS},
        filters=False,
    ),
    "cancel": extend_schema(
        summary="Cancel a batch",
        description="No new lead starts; leads in flight finish; the rest become `cancelled`.",
        request=None,
        responses={200: BatchSnapshotSerializer, **DETAIL_ERRORS, 409: CONFLICT},
    ),
    "pause": extend_schema(
        summary="Pause a batch",
        description=(
            "A queued or running batch pauses: no new lead starts; leads in flight finish; nothing stays "
            "reserved for the leads not started. `stop_reason` becomes `paused_by_user`."
        ),
        request=None,
        responses={200: BatchSnapshotSerializer, **DETAIL_ERRORS, 409: CONFLICT},
    ),
    "resume": extend_schema(
        summary="Resume a paused batch",
        description="The same leads go on within the same budget; `stop_reason` is cleared.",
        request=None,
        responses={200: BatchSnapshotSerializer, **DETAIL_ERRORS, 409: CONFLICT},
    ),
    "retry_failed": extend_schema(
        summary="Retry the failed leads",
        description="A new run of the finished batch over its failed leads only (new attempts, same batch).",
        request=None,
        responses={200: BatchSnapshotSerializer, **DETAIL_ERRORS, 409: CONFLICT},
    ),
    "export_csv": extend_schema(
        summary="Download per-lead results as CSV",
        description=(
            "Streamed UTF-8 CSV, one row per lead: position, lead_id, company_name, domain, status, "
            "attempts, error_code, error, cost_usd, duration_ms, report_url, warnings, share_url (the "
            "report's newest active share link, for a mail merge; see POST /api/batches/{id}/share-links/)."
        ),
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The CSV file."),
            **{(code, "application/json"): response for code, response in DETAIL_ERRORS.items()},
        },
    ),
    "reports_zip": extend_schema(
        summary="Download the batch's reports as a ZIP",
        description="Streamed ZIP: each report as HTML, plus its PDF where one has been rendered.",
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The ZIP file."),
            **{(code, "application/json"): response for code, response in DETAIL_ERRORS.items()},
        },
    ),
    "analytics": extend_schema(
        summary="Batch analytics",
        description=(
            "Launched batches created in the last `days` days (UTC, today included): batches, leads, success "
            "rate, spend, cost per successful lead and estimate accuracy, per day (every day of the range, "
            "oldest first) and in total. Rates are null when there is nothing to divide by."
        ),
        parameters=[
            OpenApiParameter(
                "days", OpenApiTypes.INT, OpenApiParameter.QUERY, description="1 to 365, default 30."
            )
        ],
        responses={200: AnalyticsSerializer, 400: FIELD_ERRORS, **READ_ERRORS},
    ),
}


def _cache_headers(response, etag: str):
    """Clients may keep the answer but must ask again (with `If-None-Match`) before using it."""
    response["ETag"] = etag
    response["Cache-Control"] = "private, no-cache"
    return response


@extend_schema_view(list=SCHEMAS["list"], retrieve=SCHEMAS["retrieve"], create=SCHEMAS["create"])
class BatchViewSet(GenericViewSet):
    queryset = BatchReport.objects.all()
    run_actions = frozenset({"create", "preview", "cancel", "pause", "resume", "retry_failed"})
    download_actions = frozenset({"export_csv", "reports_zip"})

    def get_permissions(self):
        if self.action in self.run_actions:
            return [RunBatchPermission()]
        if self.action == "reports_zip":
            return [ModelPermissions(), ViewReportsPermission()]
        return [ModelPermissions()]

    def get_content_negotiator(self):
        if getattr(self, "action", None) in self.download_actions:
            return DownloadNegotiation()
        return super().get_content_negotiator()

    @property
    def filterset_class(self):
        return {"list": BatchFilter, "leads": BatchLeadFilter}.get(self.action)

    def get_serializer_class(self):
        return {
            "list": BatchListSerializer,
            "leads": BatchLeadSerializer,
            "create": BatchCreateSerializer,
            "preview": SelectionSerializer,
        }.get(self.action, BatchSnapshotSerializer)

    def _batch_id(self) -> int:
        pk = self.kwargs["pk"]
        if not (pk.isascii() and pk.isdigit()) or int(pk) > MAX_ID:
            raise NotFound()
        return int(pk)

    def _get_batch(self) -> BatchReport:
        # Not get_object(): that would run the list's filters, and `leads` has filters for lead rows.
        return get_object_or_404(self.get_queryset(), pk=self._batch_id())

    def _memo_snapshot(self) -> dict:
        """The batch's snapshot from the process's memo (no query while it is fresh); 404 if unknown."""
        try:
            return snapshots.get_sync(self._batch_id())
        except BatchReport.DoesNotExist:
            raise NotFound() from None

    def _not_modified(self, request, etag: str):
        """The 304 answer when the client's `If-None-Match` has `etag`, else None."""
        response = get_conditional_response(request._request, etag=etag)
        if response is not None:
            _cache_headers(response, etag)
        return response

    def _snapshot_response(self, batch: BatchReport, *, status_code: int = status.HTTP_200_OK) -> Response:
        return Response(selectors.batch_snapshot(batch_id=batch.pk), status=status_code)

    def list(self, request):
        batches = self.filter_queryset(selectors.batch_list())
        page = self.paginate_queryset(batches)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        snapshot = self._memo_snapshot()
        etag = snapshot_etag(snapshot)
        if (not_modified := self._not_modified(request, etag)) is not None:
            return not_modified
        if request.accepted_renderer.format == "json":
            # The text every socket of this process sends too, encoded once per snapshot read.
            response = HttpResponse(encoded(snapshot), content_type="application/json")
        else:
            response = Response(snapshot)
        return _cache_headers(response, etag)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
            raise ValidationError({IDEMPOTENCY_HEADER: [f"At most {IDEMPOTENCY_KEY_MAX_LENGTH} characters."]})

        try:
            batch, created = services.batch_create_and_launch(
                user=request.user, idempotency_key=key, **serializer.validated_data
            )
        except IdempotencyConflict as exc:
            return Response({"detail": str(exc), **exc.fields}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        response = self._snapshot_response(batch, status_code=201 if created else 200)
        response["Location"] = request.build_absolute_uri(f"/api/batches/{batch.pk}/")
        return response

    @SCHEMAS["preview"]
    def preview(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        preview = services.batch_preview_selection(user=request.user, **serializer.validated_data)
        return Response(preview.as_dict())

    @SCHEMAS["leads"]
    def leads(self, request, pk=None):
        # A lead row changes only with the snapshot (its counts and recent changes), so the snapshot's
        # ETag, read before the rows, is never newer than what the rows show.
        etag = snapshot_etag(self._memo_snapshot())
        if (not_modified := self._not_modified(request, etag)) is not None:
            return not_modified
        rows = self.filter_queryset(selectors.batch_lead_rows(batch=self._get_batch()))
        page = self.paginate_queryset(rows)
        return _cache_headers(self.get_paginated_response(self.get_serializer(page, many=True).data), etag)

    @SCHEMAS["cancel"]
    def cancel(self, request, pk=None):

        return self._snapshot_response(services.batch_cancel(batch=self._get_batch(), user=request.user))

    @SCHEMAS["pause"]
    def pause(self, request, pk=None):
        return self._snapshot_response(services.batch_pause(batch=self._get_batch(), user=request.user))

    @SCHEMAS["resume"]
    def resume(self, request, pk=None):
        return self._snapshot_response(services.batch_resume(batch=self._get_batch(), user=request.user))

    @SCHEMAS["retry_failed"]
    def retry_failed(self, request, pk=None):

        return self._snapshot_response(
            services.batch_retry_failed(batch=self._get_batch(), user=request.user)
        )

    @SCHEMAS["export_csv"]
    def export_csv(self, request, pk=None):
        batch = self._get_batch()
        return streaming_response(
            request._request,
            batch_csv_chunks(batch=batch, request=request),
            content_type="text/csv; charset=utf-8",
            filename=f"batch-{batch.pk}.csv",
        )

    @SCHEMAS["reports_zip"]
    def reports_zip(self, request, pk=None):
        batch = self._get_batch()
        return streaming_response(
            request._request,
            batch_reports_zip_chunks(batch=batch),
            content_type="application/zip",
            filename=f"batch-{batch.pk}-reports.zip",
        )

    @SCHEMAS["analytics"]
    def analytics(self, request):
        query = AnalyticsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(batch_analytics(days=query.validated_data["days"]))
