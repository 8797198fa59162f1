from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import routers, serializers, viewsets

from leads.filters import LeadFilter
from leads.models import Lead

router = routers.DefaultRouter(trailing_slash=True)


class LeadSerializer(serializers.ModelSerializer):
    # Plain strings in the schema: a lead without a website or email has "", which is no URI or address.
    website = serializers.CharField(read_only=True, help_text="The lead's site URL, or empty.")
    email = serializers.CharField(read_only=True, help_text="Contact email, or empty.")

    class Meta:
        model = Lead
        fields = [
            "id",
            "company_name",
            "website",
            "domain",
            "email",
            "phone",
            "contact_name",
            "industry",
            "city",
            "state",
            "country",
            "employee_count",
            "score",
            "source",
            "status",
            "last_reported_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(
        summary="List leads",
        description=(
            "Leads with the admin changelist's filters. score_tier: A (>= 80), B (60-79), C (< 60); "
            "report_age: never, older_30 or last_30 (by last_reported_at); search matches company name, "
            "domain or email (every word). Needs the leads.view_lead permission."
        ),
    ),
    retrieve=extend_schema(summary="One lead"),
)
class LeadViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Lead.objects.all()
    serializer_class = LeadSerializer
    filterset_class = LeadFilter


router.register("leads", LeadViewSet, basename="lead")
