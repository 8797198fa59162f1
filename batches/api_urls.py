"""Batch API routes, included at /api/ (explicit paths: the downloads end in `.csv` and `.zip`).

`<str:pk>` rather than `<int:pk>`: the view answers a malformed id with the API's JSON 404, where the
URL resolver would answer with an HTML page.
"""

from django.urls import path

from batches.api import BatchViewSet

urlpatterns = [
    path("batches/", BatchViewSet.as_view({"get": "list", "post": "create"}), name="batch-list"),
    path("batches/preview/", BatchViewSet.as_view({"post": "preview"}), name="batch-preview"),
    path("batches/analytics/", BatchViewSet.as_view({"get": "analytics"}), name="batch-analytics"),
    path("batches/<str:pk>/", BatchViewSet.as_view({"get": "retrieve"}), name="batch-detail"),
    path("batches/<str:pk>/leads/", BatchViewSet.as_view({"get": "leads"}), name="batch-leads"),
    path("batches/<str:pk>/cancel/", BatchViewSet.as_view({"post": "cancel"}), name="batch-cancel"),
    path("batches/<str:pk>/pause/", BatchViewSet.as_view({"post": "pause"}), name="batch-pause"),
    path("batches/<str:pk>/resume/", BatchViewSet.as_view({"post": "resume"}), name="batch-resume"),
    path(
        "batches/<str:pk>/retry-failed/",
        BatchViewSet.as_view({"post": "retry_failed"}),
        name="batch-retry-failed",
    ),
    path("batches/<str:pk>/export.csv", BatchViewSet.as_view({"get": "export_csv"}), name="batch-export-csv"),
    path(
        "batches/<str:pk>/reports.zip", BatchViewSet.as_view({"get": "reports_zip"}), name="batch-reports-zip"
    ),
]
