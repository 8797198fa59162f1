"""The share-link API (list, create and revoke the links that open a report without login, and links
for every report of a batch in one call) and the brand profiles a batch may name. Views translate HTTP
to reports/batches services."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from batches.models import BatchReport
from batches.services import batch_share_links_create
from leadgen.api import ModelPermissions
from reports.models import BrandProfile, Report, ShareLink
from reports.selectors import share_links_of_report
from reports.services import share_link_create, share_link_revoke
from reports.sharing import MAX_EXPIRES_IN_DAYS, share_key_from_token, share_token, share_urls

MAX_ID = 2**63 - 1


def _perms_required(*perms: str) -> type[permissions.BasePermission]:
    class HasPerms(permissions.BasePermission):
        message = "You do not have permission to share reports."

        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perms(perms))

    return HasPerms


class ExpiresSerializer(serializers.Serializer):
    expires_in_days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_EXPIRES_IN_DAYS,
        required=False,
        allow_null=True,
        help_text=f"Days the link opens the report (1-{MAX_EXPIRES_IN_DAYS}, default 30).",
    )


class ShareLinkSerializer(serializers.ModelSerializer):
    token = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField(help_text="The report's HTML for the prospect (no login).")
    pdf_url = serializers.SerializerMethodField(help_text="The same report as a PDF.")
    active = serializers.SerializerMethodField(help_text="Opens the report now: not expired, not revoked.")

    class Meta:
        model = ShareLink
        fields = ["token", "url", "pdf_url", "created_at", "expires_at", "revoked_at", "active"]
        read_only_fields = fields

    def get_token(self, link: ShareLink) -> str:
        return share_token(link.key)

    def get_url(self, link: ShareLink) -> str:
        return share_urls(link.key, request=self.context.get("request"))["url"]

    def get_pdf_url(self, link: ShareLink) -> str:
        return share_urls(link.key, request=self.context.get("request"))["pdf_url"]

    def get_active(self, link: ShareLink) -> bool:
        return link.is_active()


class BatchShareLinksSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Links made now.")
    export_url = serializers.CharField(help_text="The batch CSV, whose share_url column holds the links.")


def _pk(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_ID:
        raise NotFound()
    return int(value)


ERRORS = {
    401: OpenApiResponse(description="No or invalid credentials."),
    403: OpenApiResponse(description="Without the needed permission."),
    404: OpenApiResponse(description="No such report (or link)."),
}


class ReportShareLinksApi(APIView):
    """GET: the report's links, newest first (`reports.view_sharelink`). POST: a new link
    (`reports.add_sharelink`)."""

    def get_permissions(self):
        perm = "reports.add_sharelink" if self.request.method == "POST" else "reports.view_sharelink"
        return [_perms_required(perm)()]

    @extend_schema(
        summary="Share links of a report",
        description="Every link made for the report, newest first, with whether it still opens.",
        responses={200: ShareLinkSerializer(many=True), **ERRORS},
    )
    def get(self, request, pk: str):
        report = get_object_or_404(Report.objects.only("id"), pk=_pk(pk))
        links = share_links_of_report(report_id=report.pk)
        return Response(ShareLinkSerializer(links, many=True, context={"request": request}).data)

    @extend_schema(
        summary="Share a report",
        description=(
            "A signed link that opens the report (HTML and PDF) without login until it expires "
            "(`expires_in_days`, default 30) or is revoked. The page is the report alone: no cost, batch, "
            "attempts or provider errors, `noindex`, never cached."
        ),
        request=ExpiresSerializer,
        responses={201: ShareLinkSerializer, 400: OpenApiResponse(description="Bad input."), **ERRORS},
    )
    def post(self, request, pk: str):
        report = get_object_or_404(Report.objects.only("id"), pk=_pk(pk))
        body = ExpiresSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        link = share_link_create(
            report=report, user=request.user, expires_in_days=body.validated_data.get("expires_in_days")
        )
        data = ShareLinkSerializer(link, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED)


class ReportShareLinkRevokeApi(APIView):
    """DELETE: revoke one link (`reports.change_sharelink`); it opens nothing from then on."""

    permission_classes = [_perms_required("reports.change_sharelink")]

    @extend_schema(
        summary="Revoke a share link",
        description="The link stops opening the report at once. Revoking a revoked link is a no-op (204).",
        responses={204: None, **ERRORS},
    )
    def delete(self, request, pk: str, token: str):
        key = share_key_from_token(token)
        if key is None:
            raise NotFound()
        link = get_object_or_404(ShareLink, report_id=_pk(pk), key=key)
        share_link_revoke(link=link, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BatchShareLinksApi(APIView):
    """POST: a link for every report of the batch that has none active (`reports.add_sharelink` and
    `batches.view_batchreport`)."""

    permission_classes = [_perms_required("reports.add_sharelink", "batches.view_batchreport")]

    @extend_schema(
        summary="Share every report of a batch",
        description=(
            "Makes a share link for each report of the batch that has no active one (a repeat makes none), "
            "so the batch CSV's `share_url` column is filled for a mail merge."
        ),
        request=ExpiresSerializer,
        responses={200: BatchShareLinksSerializer, 400: OpenApiResponse(description="Bad input."), **ERRORS},
    )
    def post(self, request, pk: str):
        batch = get_object_or_404(BatchReport.objects.only("id"), pk=_pk(pk))
        body = ExpiresSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        created = batch_share_links_create(
            batch=batch, user=request.user, expires_in_days=body.validated_data.get("expires_in_days")
        )
        export = request.build_absolute_uri(f"/api/batches/{batch.pk}/export.csv")
        return Response({"created": created, "export_url": export})


class BrandProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = BrandProfile
        fields = ["id", "name", "agency_name", "accent_colour", "is_default"]
        read_only_fields = fields


@extend_schema(
    summary="Brand profiles",
    description=(
        "The profiles a batch may name as `brand` on `POST /api/batches/`, the default first. Needs "
        "`reports.view_brandprofile`."
    ),
)
class BrandProfileListApi(ListAPIView):
    queryset = BrandProfile.objects.order_by("-is_default", "name")
    serializer_class = BrandProfileSerializer
    permission_classes = [ModelPermissions]
    filter_backends = []
