from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from leads.api import router as leads_router

admin.site.site_header = "Leadgen"
admin.site.site_title = "Leadgen"
admin.site.index_title = "Administration"

api_urlpatterns = [
    path("", include("batches.api_urls")),
    path("", include(leads_router.urls)),
    path("", include("reports.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Signed-in users only (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]); the page sends others to sign in.
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="schema")), name="swagger-ui"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api_urlpatterns)),
    path("reports/", include("reports.urls")),
    path("batches/", include("batches.urls")),
]
