import pytest

from leadgen.errors import ServiceError
from leads.selectors import lead_list

pytestmark = pytest.mark.django_db


def names(queryset):
    return {lead.company_name.removesuffix(" Company") for lead in queryset}


def test_lead_list_without_filters_is_every_lead(six_leads):
    assert names(lead_list()) == set(six_leads)
    assert names(lead_list(filters={})) == set(six_leads)


def test_lead_list_applies_json_style_filters(six_leads):
    leads = lead_list(filters={"industry": "dentist", "has_email": True, "report_age": "older_30"})
    assert names(leads) == {"Echo"}
    assert names(lead_list(filters={"has_website": False, "score_tier": "B"})) == {"Delta"}


def test_lead_list_treats_null_values_as_not_filtered(six_leads):
    assert names(lead_list(filters={"industry": None, "has_email": None})) == set(six_leads)


def test_lead_list_rejects_unknown_filter_fields(six_leads):
    with pytest.raises(ServiceError) as raised:
        lead_list(filters={"industry": "dentist", "colour": "red", "page": 2})
    assert raised.value.fields == {"colour": ["Unknown filter."], "page": ["Unknown filter."]}


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"score_tier": "Z"}, "score_tier"),
        ({"industry": "bakery"}, "industry"),
        ({"industry": ["dentist"]}, "industry"),
        ({"has_email": "perhaps"}, "has_email"),
        ({"created_before": "not a date"}, "created_before"),
    ],
)
def test_lead_list_rejects_invalid_values(six_leads, filters, field):
    with pytest.raises(ServiceError) as raised:
        lead_list(filters=filters)
    assert list(raised.value.fields) == [field]
    assert raised.value.fields[field]
