"""Reads of leads that are more than a `.get()`."""

from django.db.models import QuerySet

from leadgen.errors import ServiceError
from leads.filters import LeadFilter
from leads.models import Lead


def lead_list(*, filters: dict | None = None) -> QuerySet[Lead]:
    """Leads matching `filters`, a plain dict with `LeadFilter`'s field names (e.g. a batch selection).

    Raises ServiceError with field errors for unknown filter names and for invalid values, so a
    selection never silently widens to more leads than asked for.
    """
    filters = filters or {}
    unknown = sorted(set(filters) - set(LeadFilter.base_filters))
    if unknown:
        raise ServiceError(fields={name: ["Unknown filter."] for name in unknown})
    not_scalar = sorted(name for name, value in filters.items() if isinstance(value, dict | list))
    if not_scalar:
        message = "Give one value (a string, a number or true/false), not a list or an object."
        raise ServiceError(fields={name: [message] for name in not_scalar})
    data = {name: _as_form_value(value) for name, value in filters.items()}
    filterset = LeadFilter(data=data, queryset=Lead.objects.all())
    if not filterset.is_valid():
        raise ServiceError(fields={name: list(errors) for name, errors in filterset.errors.items()})
    return filterset.qs


def _as_form_value(value) -> str:
    # The form fields parse text, as from a query string: JSON booleans become their string forms and
    # numbers their digits, for each field to accept or refuse as it would the same query parameter.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)
