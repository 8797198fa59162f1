"""Query-string filter pieces shared by every API, and the bounds of a search."""

from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

# Each word of a search is one more condition over several columns: the API, batch selections and every
# admin changelist refuse more (400 with this message) rather than build a query of any size.
SEARCH_MAX_LENGTH = 200
SEARCH_MAX_WORDS = 10


def search_terms(text: str) -> list[str]:
    """The whitespace-separated words of a search; ValidationError when it is too long or has too many."""
    if len(text) > SEARCH_MAX_LENGTH:
        raise ValidationError(
            f"Search for at most {SEARCH_MAX_LENGTH} characters ({len(text)} given).", code="max_length"
        )
    terms = text.split()
    if len(terms) > SEARCH_MAX_WORDS:
        raise ValidationError(
            f"Search for at most {SEARCH_MAX_WORDS} words ({len(terms)} given).", code="max_words"
        )
    return terms


class SearchField(forms.CharField):
    """A search box: text within the bounds of `search_terms`."""

    def validate(self, value):
        super().validate(value)
        search_terms(value)


class SearchFilter(django_filters.CharFilter):
    field_class = SearchField


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601, converted to UTC: PostgreSQL refuses offsets beyond +-15:59 that the format allows."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
