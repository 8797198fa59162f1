"""Query-string filters of the batch API (django-filter)."""

import django_filters
from django import forms

from batches.models import BatchReport, BatchReportLead
from leadgen.filters import UtcIsoDateTimeFilter


class IdFilter(django_filters.NumberFilter):
    """A database id: a whole number in the range of a 64-bit key (else 400, never a database error)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=2**63 - 1, **kwargs)


class BatchFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=BatchReport.Status.choices)
    created_by = IdFilter(field_name="created_by_id", label="Id of the user who created it")
    created_after = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Created at or after (ISO 8601)"
    )
    created_before = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", label="Created before (ISO 8601)"
    )

    class Meta:
        model = BatchReport
        fields = []


class BatchLeadFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=BatchReportLead.Status.choices)

    class Meta:
        model = BatchReportLead
        fields = []
