"""Brand profile and share-link API routes, included at /api/ (`<str:pk>`: a malformed id gets a JSON 404)."""

from django.urls import path

from reports.api import BatchShareLinksApi, BrandProfileListApi, ReportShareLinkRevokeApi, ReportShareLinksApi

urlpatterns = [
    path("brands/", BrandProfileListApi.as_view(), name="brand-list"),
    path("reports/<str:pk>/share/", ReportShareLinksApi.as_view(), name="report-share-links"),
    path("reports/<str:pk>/share/<str:token>/", ReportShareLinkRevokeApi.as_view(), name="report-share-link"),
    path("batches/<str:pk>/share-links/", BatchShareLinksApi.as_view(), name="batch-share-links"),
]
