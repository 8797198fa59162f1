"""reports.writes stores what the ORM would store, whatever the type of the values it is given."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from reports import writes
from reports.models import Provider, ProviderCall, ProviderResult, Report

pytestmark = pytest.mark.django_db

AWARE = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)


def _stored(model, pk) -> dict:
    row = model.objects.filter(pk=pk).values().get()
    row.pop("id")
    return row


def _insert(model, row: dict) -> int:
    statement = writes.insert(model, [row])
    return writes.run([statement], returning_id=True)


CALLS = [
    # Values of the very types the fields prepare them into: written as they are.
    {
        "provider": "pagespeed",
        "batch_lead_id": 7,
        "attempt": 2,
        "status": "succeeded",
        "http_status": 200,
        "duration_ms": 1234,
        "cost_usd": Decimal("0.004"),
        "input_tokens": 0,
        "output_tokens": 0,
        "error_code": "",
        "error": "",
        "transient": False,
        "created_at": AWARE,
    },
    # Values of other types, prepared by the fields: choices members, a Decimal as a string and one with
    # more places than the column keeps, a number as a string, a naive datetime.
    {
        "provider": Provider.LLM,
        "batch_lead_id": None,
        "attempt": "3",
        "status": ProviderCall.Status.FAILED,
        "http_status": None,
        "cost_usd": "0.0000015",
        "input_tokens": 512,
        "output_tokens": 256,
        "error_code": "rate_limited",
        "error": "Rate limit reached ✓",
        "transient": True,
        "created_at": dt.datetime(2026, 3, 4, 5, 6, 7),
    },
]


@pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive datetime")
@pytest.mark.parametrize("row", CALLS, ids=["own types", "other types"])
def test_a_call_row_is_stored_as_the_orm_stores_it(row, lead_factory):
    lead = lead_factory()
    row = {**row, "lead_id": lead.pk}

    written = _stored(ProviderCall, _insert(ProviderCall, row))
    saved = _stored(ProviderCall, ProviderCall.objects.create(**row).pk)

    assert written == saved
    assert written["cost_usd"] == Decimal(str(row["cost_usd"])).quantize(Decimal("0.000001"))


def test_a_field_missing_from_the_row_gets_its_default(lead_factory):
    lead = lead_factory()

    written = _stored(ProviderCall, _insert(ProviderCall, {"provider": "website", "lead_id": lead.pk}))

    assert written["attempt"] == 1 and written["cost_usd"] == 0 and written["transient"] is False
    assert timezone.now() - written["created_at"] < dt.timedelta(minutes=1)


def test_json_is_stored_as_the_orm_stores_it():
    data = {
        "scores": {"seo": 0.5},
        1: "a key that is not a string",
        "text": 'Zürich \u2028 "quoted"',
        "list": [1, 2.5, None, True],
    }
    row = {
        "provider": "pagespeed",
        "subject": "example.com",
        "data": data,
        "fetched_at": AWARE,
        "expires_at": AWARE + dt.timedelta(days=1),
        "cost_usd": Decimal("0"),
    }

    written = _stored(ProviderResult, _insert(ProviderResult, row))
    ProviderResult.objects.filter(subject="example.com").delete()
    saved = _stored(ProviderResult, ProviderResult.objects.create(**row).pk)

    assert written == saved
    assert written["data"]["1"] == "a key that is not a string"


def test_a_json_value_the_column_cannot_hold_is_refused_rather_than_stored_otherwise():
    row = {"provider": "llm", "subject": "lead:1", "data": {"cost": Decimal("1")}, "expires_at": AWARE}

    with pytest.raises(TypeError):
        writes.run([writes.insert(ProviderResult, [row])])
    assert not ProviderResult.objects.exists()


def test_a_model_row_is_what_a_save_would_write(lead_factory):
    report = Report(
        lead=lead_factory(), scores={"seo": 80}, data={"a": [1]}, html="<p>", cost_usd=Decimal("0.01")
    )

    pk = writes.run([writes.insert(Report, [writes.model_row(report)])], returning_id=True)
    report.save()

    assert _stored(Report, pk) == _stored(Report, report.pk)


def test_a_value_too_long_for_its_column_is_refused_as_by_the_orm(lead_factory):
    from django.db import DataError, transaction

    row = {**CALLS[0], "lead_id": lead_factory().pk, "error_code": "x" * 51}

    with pytest.raises(DataError, match="too long"), transaction.atomic():
        _insert(ProviderCall, row)
    with pytest.raises(DataError, match="too long"), transaction.atomic():
        ProviderCall.objects.create(**row)
    assert not ProviderCall.objects.exists()


def test_rows_of_any_number_share_one_statement_text(lead_factory):
    lead = lead_factory()
    one = writes.insert(ProviderCall, [{"provider": "website", "lead_id": lead.pk}])
    three = writes.insert(ProviderCall, [{"provider": "website", "lead_id": lead.pk}] * 3)

    writes.run([one, three])

    assert one.sql == three.sql and len(three.params) == 1
    assert ProviderCall.objects.filter(lead=lead).count() == 4
