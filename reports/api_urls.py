"""Share-link API routes, included at /api/ (`<str:pk>`: a malformed id gets the API's JSON 404)."""

from django.urls import path

from reports.api import BatchShareLinksApi, ReportShareLinkRevokeApi, ReportShareLinksApi

urlpatterns = [
    path("reports/<str:pk>/share/", ReportShareLinksApi.as_view(), name="report-share-links"),
    path("reports/<str:pk>/share/<str:token>/", ReportShareLinkRevokeApi.as_view(), name="report-share-link"),
    path("batches/<str:pk>/share-links/", BatchShareLinksApi.as_view(), name="batch-share-links"),
]
