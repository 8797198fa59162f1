from django.urls import path

from batches import views

app_name = "batches"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("analytics/", views.analytics, name="analytics"),
    path("<int:pk>/", views.batch_detail, name="detail"),
    path("<int:pk>/rows/", views.batch_rows, name="rows"),
    path("<int:pk>/cancel/", views.batch_cancel, name="cancel"),
    path("<int:pk>/pause/", views.batch_pause, name="pause"),
    path("<int:pk>/resume/", views.batch_resume, name="resume"),
    path("<int:pk>/retry-failed/", views.batch_retry_failed, name="retry_failed"),
]
