from django.urls import path

from reports import views

app_name = "reports"

urlpatterns = [
    path("<int:pk>/", views.report_detail, name="detail"),
    path("<int:pk>.pdf", views.report_pdf, name="pdf"),
    path("shared/<str:token>/", views.shared_report, name="shared"),
    path("shared/<str:token>.pdf", views.shared_report_pdf, name="shared-pdf"),
]
