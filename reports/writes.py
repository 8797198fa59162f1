"""The report service's writes as few plain-SQL statements: a report's call log, cache and report row.

Building INSERTs through the ORM costs far more CPU than the database needs to run them, and a batch
runs these for every lead. Rows are dicts by field attname (no model instances for the call log and
the cache rows), and an INSERT's rows go as a single JSON parameter, encoded by orjson and read back by
PostgreSQL into the columns' types, instead of one parameter per value for psycopg to adapt.

What is stored is what the ORM would store: a value is prepared by its model field
(`get_db_prep_save`) unless it already is of the very type that preparation returns on PostgreSQL,
and a JSON field's value (without an encoder of its own) is the JSON it would be. The statements of one
write go as a single statement (data-modifying CTEs), atomic without a transaction block.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import orjson
from django.db import DEFAULT_DB_ALIAS, connections, models
from psycopg.types.json import Jsonb


def _json_default(value):
    """A column's value that JSON has no type for."""
    if isinstance(value, Decimal):
        # Exact: numeric reads the digits.
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be written as a JSON row value")


_dumps = functools.partial(orjson.dumps, default=_json_default)

# The Python types a field's `get_db_prep_save` returns unchanged on PostgreSQL, by the field's internal
# type: a value of exactly that type skips the field's preparation (its to_python and get_prep_value
# calls, for a hundred values per report). Any other value (None included) goes through the field.
_OWN_TYPES: dict[str, type] = {
    "CharField": str,
    "TextField": str,
    "BooleanField": bool,
    "IntegerField": int,
    "BigIntegerField": int,
    "PositiveIntegerField": int,
    "PositiveSmallIntegerField": int,
    "SmallIntegerField": int,
    "DecimalField": Decimal,
    # Aware ones only: the field warns about a naive one and makes it aware.
    "DateTimeField": datetime,
}


@dataclass(frozen=True)
class _Column:
    field: models.Field
    own_type: type | None
    json: bool

    def value(self, value, connection):
        """The value as the row's JSON holds it: a JSON field's value itself (nested), else what the
        field would hand to psycopg."""
        if type(value) is self.own_type and (self.own_type is not datetime or value.tzinfo is not None):
            return value
        if self.json:
            # Encoded on its own, without the Decimal default: what json.dumps cannot write is refused.
            return (
                None
                if value is None
                else orjson.Fragment(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
            )
        return self.field.get_db_prep_save(value, connection)


@functools.cache
def _columns(model: type[models.Model]) -> tuple[_Column, ...]:
    """Every concrete field of `model` but the primary key, in the model's order."""
    return tuple(
        _Column(
            field=field,
            own_type=_OWN_TYPES.get(field.get_internal_type()),
            json=isinstance(field, models.JSONField) and field.encoder is None,
        )
        for field in model._meta.concrete_fields
        if not field.primary_key
    )


@dataclass(frozen=True)
class Statement:
    """One INSERT or UPDATE: its SQL and parameters."""

    sql: str
    params: list


def model_row(obj: models.Model) -> dict:
    """A row of `obj` for `insert`: its fields' values as a save would take them (`pre_save`)."""
    return {column.field.attname: column.field.pre_save(obj, add=True) for column in _columns(type(obj))}


@functools.cache
def _insert_sql(model: type[models.Model], conflict: tuple[str, ...], update: tuple[str, ...]) -> str:
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name
    columns = _columns(model)
    names = ", ".join(quote(column.field.column) for column in columns)
    record = ", ".join(
        f"{quote(column.field.column)} {column.field.db_type(connection)}" for column in columns
    )
    # Table, column names and types from the model, quoted; the rows are the one parameter.
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({names})"  # noqa: S608
        f" SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS r ({record})"
    )
    if conflict:
        updates = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in update)
        sql += f" ON CONFLICT ({', '.join(quote(name) for name in conflict)}) DO UPDATE SET {updates}"
    return sql


def insert(
    model: type[models.Model],
    rows: list[dict],
    *,
    conflict: tuple[str, ...] = (),
    update: tuple[str, ...] = (),
) -> Statement:
    """An INSERT of `rows` (dicts by field attname) of `model`, every concrete field but the primary key;
    a field missing from a row gets its default.

    With `conflict` (the columns of a unique constraint), a row that exists gets the `update` fields
    from the new one instead (ON CONFLICT ... DO UPDATE). The rows go as one JSON array, read back into
    the columns' own types by `jsonb_to_recordset` (their typmods too: a string longer than its column
    is refused as by a plain INSERT), so the statement's text is the same for any number of rows.
    """
    # The connection itself rather than the `connection` proxy, which looks it up on every attribute.
    connection = connections[DEFAULT_DB_ALIAS]
    columns = _columns(model)
    records = [
        {
            column.field.column: column.value(
                values[column.field.attname]
                if column.field.attname in values
                else column.field.get_default(),
                connection,
            )
            for column in columns
        }
        for values in rows
    ]
    return Statement(_insert_sql(model, conflict, update), [Jsonb(records, dumps=_dumps)])


def run(inserts: list[Statement], *, returning_id: bool = False) -> int | None:
    """Run the statements atomically; with `returning_id`, the id of the (single) row the last one
    inserts."""
    if not inserts:
        return None
    connection = connections[DEFAULT_DB_ALIAS]
    last = inserts[-1]
    suffix = " RETURNING id" if returning_id else ""
    ctes = ", ".join(f"w{n} AS ({statement.sql})" for n, statement in enumerate(inserts[:-1]))
    sql = (f"WITH {ctes} " if ctes else "") + last.sql + suffix
    params = [param for statement in inserts for param in statement.params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0] if returning_id else None
