"""The report service's writes as few plain-SQL statements: a report's call log, cache and report row.

Building INSERTs through the ORM costs far more CPU than the database needs to run them, and a batch
runs these for every lead. Rows are dicts by field attname (no model instances for the call log and
the cache rows). What is stored is what the ORM would store: a value is prepared by its model field
(`get_db_prep_save`) unless it already is of the very type that preparation hands to psycopg on
PostgreSQL; JSON fields without an encoder of their own are written with orjson rather than the stdlib's
json (a report's content and its providers' results are its largest values): the same JSON values,
several times faster. The statements of one write go as a single statement (data-modifying CTEs),
atomic without a transaction block.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import orjson
from django.db import DEFAULT_DB_ALIAS, connections, models
from psycopg import _queries as psycopg_queries
from psycopg.types.json import Jsonb

# psycopg caches how it splits a statement around its placeholders only for statements of at most 50
# parameters (its MAX_CACHED_STATEMENT_PARAMS); a report's writes reach ~110 (cache rows and call log in
# one statement), for every lead of a batch. Without the cache each is parsed again every time.
if psycopg_queries.MAX_CACHED_STATEMENT_PARAMS < 200:
    psycopg_queries.MAX_CACHED_STATEMENT_PARAMS = 200


# As json.dumps: keys that are not strings are written as strings.
_json_dumps = functools.partial(orjson.dumps, option=orjson.OPT_NON_STR_KEYS)

# The Python types a field's `get_db_prep_save` hands to psycopg unchanged on PostgreSQL, by the field's
# internal type: a value of exactly that type skips the field's preparation (its to_python and
# get_prep_value calls, a good part of a report's CPU, for a hundred values per report) and is stored as
# the ORM would store it. Any other value (None included) goes through the field.
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
        if type(value) is self.own_type and (self.own_type is not datetime or value.tzinfo is not None):
            return value
        if self.json and value is not None:
            return Jsonb(value, dumps=_json_dumps)
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
    from the new one instead (ON CONFLICT ... DO UPDATE).
    """
    # The connection itself rather than the `connection` proxy, which looks it up on every attribute.
    connection = connections[DEFAULT_DB_ALIAS]
    columns = _columns(model)
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    table = quote(model._meta.db_table)
    names = ", ".join(quote(column.field.column) for column in columns)
    # Table and column names from the model, quoted; every value is a parameter.
    sql = f"INSERT INTO {table} ({names}) VALUES {', '.join([row] * len(rows))}"  # noqa: S608
    if conflict:
        updates = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in update)
        sql += f" ON CONFLICT ({', '.join(quote(name) for name in conflict)}) DO UPDATE SET {updates}"
    params = [
        column.value(
            values[column.field.attname] if column.field.attname in values else column.field.get_default(),
            connection,
        )
        for values in rows
        for column in columns
    ]
    return Statement(sql, params)


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
